"""The `saekit bench` leaderboard on the embedded default: which architecture at L0 ~ 32?

    python benchmarks/bench_leaderboard.py --runs runs/bench --out docs/results/bench [--seeds 3]

1. Store: `/tmp/demo1/runs/acts` when it holds the demo's complete 200k-row store, else
   `saekit harvest --model smollm2 --hook-point model.layers.15 --corpus default --tokens 200000`.
2. Sparsity search for the L1 / L0-penalised architectures (relu and gated: the sparsity coefficient;
   jumprelu: its initial threshold, see `SEARCHED`): runs on
   `--search-tokens` rows (default: the full training budget), secant steps on log L0 vs log coefficient
   inside a bracket, until the training sample's L0 is within `--tolerance` of the target; the run
   nearest the target is the leaderboard's SAE (`saes/<name>` links to it). Searching on a fraction of
   the tokens was tried first and mis-predicts: an L1 SAE's L0 keeps falling long after 100k rows
   (ReLU at coefficient 3.8: L0 31 after 100k rows, 10 after 400k).
3. Training: TopK at 8x and 16x, BatchTopK, Matryoshka BatchTopK (k=32) and the three searched ones, all
   with `--total-tokens 600000 --batch-size 1024 --lr 1e-3`; with `--seeds N`, TopK 16x again with seeds
   1..N-1 (the spread across seeds).
4. `saekit bench` on all of them (`--group-seeds`, firing counts on the store).

Every command is printed, and written with the searched coefficients to OUT/commands.md; finished
training runs are reused, so an interrupted leaderboard reruns only what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

DEMO_STORE = Path("/tmp/demo1/runs/acts")
TRAIN = ["--batch-size", "1024", "--lr", "1e-3", "--quiet"]
FIXED = {  # name -> flags (all at k = 32, the demo's)
    "topk_16x": "--arch topk --k 32 --expansion 16".split(),
    "topk_8x": "--arch topk --k 32 --expansion 8".split(),
    "batchtopk_16x": "--arch batchtopk --k 32 --expansion 16".split(),
    "matryoshka_batchtopk_16x": (
        "--arch matryoshka_batchtopk --k 32 --expansion 16 --matryoshka 1152 2304 4608 9216".split()
    ),
}
COEF = "--sparsity-coefficient"
SEARCHED = {
    "relu_16x": ("relu", COEF, 1.6, 2.6, []),
    "jumprelu_16x": (
        "jumprelu",
        "--jumprelu-init-threshold",
        0.8,
        1.4,
        [COEF, "1", "--jumprelu-bandwidth", "0.05"],
    ),
    "gated_16x": ("gated", COEF, 3.0, 6.0, []),
}
"""name -> (arch, the flag searched, its low and high starting values, fixed flags). Brackets from 100k-row
probes, shifted for the full budget (an L1 SAE's L0 keeps falling: ReLU's 31 at 100k rows was 10 at 400k).
JumpReLU's knob is its initial threshold, not its L0 coefficient: with the default threshold and kernel
(0.001, 0.001) its L0 stayed at 2,555 after 100k rows at coefficients 0.01 and 0.1 alike (identical runs),
and from threshold 0.5 with a 0.05 kernel the coefficient moved it only from 147 (0.1) to 138 (1): Adam
moves log(threshold) by about the learning rate per step, so 585 steps cannot carry the threshold far and
where it starts decides the L0."""


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def record(self, argv: list[str], note: str = "") -> None:
        line = " ".join(shlex.quote(a) for a in argv)
        self.lines.append(f"{line}{'  # ' + note if note else ''}")

    def run(self, argv: list[str], note: str = "") -> None:
        print(f"$ {' '.join(shlex.quote(a) for a in argv)}", flush=True)
        self.record(argv, note)
        t = time.time()
        subprocess.run(argv, check=True)
        print(f"  ({time.time() - t:.0f} s)", flush=True)


def store(runs: Path, log: Log) -> Path:
    manifest = DEMO_STORE / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if m.get("complete") and m.get("count") == 200000 and m.get("hook_point") == "model.layers.15":
            log.lines.append(f"# store: reused {DEMO_STORE} (the demo's complete 200k-row store)")
            return DEMO_STORE
    out = runs / "acts"
    log.run(
        [
            "saekit",
            "harvest",
            "--model",
            "smollm2",
            "--hook-point",
            "model.layers.15",
            "--corpus",
            "default",
            "--tokens",
            "200000",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    return out


def final_l0(folder: Path) -> float:
    return float(
        json.loads((folder / "train_summary.json").read_text())["final_metrics_on_train_sample"]["l0"]
    )


def train(acts: Path, out: Path, flags: list[str], tokens: int, log: Log, note: str = "") -> Path:
    """`saekit train` into `out`, or nothing when `out` already holds a finished run of this command."""
    argv = ["saekit", "train", "--acts", str(acts), *flags, "--total-tokens", str(tokens), *TRAIN]
    argv += ["--out", str(out)]
    if (out / "train_summary.json").is_file():
        print(f"reusing {out}", flush=True)
        log.record(argv, ", ".join(filter(None, [note, "finished in an earlier run of this script"])))
        return out
    log.run(argv, note)
    return out


def search(acts: Path, runs: Path, name: str, spec: tuple, a, log: Log) -> tuple[float, list]:
    """The value of the searched flag whose run lands nearest the target L0 (L0 falls as it grows), and
    every (value, L0) tried; folders are named after the flag's last word and the value."""
    arch, knob, lo, hi, extra = spec
    trials: list[tuple[float, float]] = []

    def l0_at(c: float) -> float:
        folder = runs / "search" / f"{name}_{knob.strip('-').split('-')[-1]}{c:.5g}_t{a.search_tokens}"
        flags = ["--arch", arch, "--expansion", "16", knob, f"{c:.5g}", *extra]
        l0 = final_l0(train(acts, folder, flags, a.search_tokens, log, note=f"search {name}"))
        trials.append((c, l0))
        print(f"  {name}: {knob} {c:.5g} -> L0 {l0:.1f}", flush=True)
        return l0

    def done() -> bool:
        near = min(abs(v - a.target) for _, v in trials) <= a.tolerance * a.target
        return near or len(trials) >= a.search_steps

    l_lo = l0_at(lo)
    l_hi = l_lo if done() else l0_at(hi)
    while l_hi > a.target and not done():  # not sparse enough yet: widen upwards
        lo, l_lo, hi = hi, l_hi, hi * 10
        l_hi = l0_at(hi)
    while l_lo < a.target and not done():  # too sparse at the low end: widen downwards
        hi, l_hi, lo = lo, l_lo, lo / 10
        l_lo = l0_at(lo)
    while not done():
        # secant on log L0 vs log value, kept inside the bracket
        x0, x1 = math.log(lo), math.log(hi)
        y0, y1 = math.log(max(l_lo, 1e-3)), math.log(max(l_hi, 1e-3))
        x = x0 + (math.log(a.target) - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else (x0 + x1) / 2
        x = min(max(x, x0 + 0.1 * (x1 - x0)), x1 - 0.1 * (x1 - x0))
        c = math.exp(x)
        lc = l0_at(c)
        if lc > a.target:
            lo, l_lo = c, lc
        else:
            hi, l_hi = c, lc
    best = min(trials, key=lambda t: abs(math.log(max(t[1], 1e-3) / a.target)))
    return best[0], trials


def link(target: Path, name: Path) -> Path:
    """`name` -> `target` (a relative symlink), replacing an older link."""
    name.parent.mkdir(parents=True, exist_ok=True)
    if name.is_symlink():
        name.unlink()
    name.symlink_to(Path("..") / "search" / target.name)
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/bench", help="where the store copy and the SAEs go")
    ap.add_argument("--out", default="docs/results/bench", help="the bench report and commands.md")
    ap.add_argument("--tokens", type=int, default=600000, help="training rows per SAE")
    ap.add_argument("--search-tokens", type=int, default=None, help="rows per search run (default --tokens)")
    ap.add_argument("--search-steps", type=int, default=4, help="most search runs per architecture")
    ap.add_argument("--target", type=float, default=32.0, help="target L0")
    ap.add_argument("--tolerance", type=float, default=0.2, help="relative L0 tolerance ending a search")
    ap.add_argument("--seeds", type=int, default=1, help="TopK 16x trained with this many seeds")
    ap.add_argument("--only", nargs="*", default=None, help="train/bench only these names")
    a = ap.parse_args()
    a.search_tokens = a.search_tokens or a.tokens
    runs, out = Path(a.runs), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log()
    t0 = time.time()
    acts = store(runs, log)
    chosen, searches, saes = {}, {}, []
    names = list(FIXED) + list(SEARCHED)
    for name in names if a.only is None else [n for n in names if n in a.only]:
        if name in FIXED:
            flags = FIXED[name]
        else:
            chosen[name], searches[name] = search(acts, runs, name, SEARCHED[name], a, log)
            arch, knob, _, _, extra = SEARCHED[name]
            flags = ["--arch", arch, "--expansion", "16", knob, f"{chosen[name]:.5g}", *extra]
            if a.search_tokens == a.tokens:  # the nearest search run is the SAE
                found = (
                    runs / "search" / f"{name}_{knob.strip('-').split('-')[-1]}{chosen[name]:.5g}_t{a.tokens}"
                )
                saes.append(link(found, runs / "saes" / name))
                continue
        saes.append(train(acts, runs / "saes" / name, flags, a.tokens, log))
        if name == "topk_16x":
            for seed in range(1, a.seeds):
                folder = runs / "saes" / f"topk_16x_seed{seed}"
                saes.append(train(acts, folder, [*flags, "--seed", str(seed)], a.tokens, log))
    record = {"chosen": chosen, "trials": searches, "target_l0": a.target, "search_tokens": a.search_tokens}
    (out / "search.json").write_text(json.dumps(record, indent=2) + "\n")
    log.run(
        [
            "saekit",
            "bench",
            "--sae",
            *map(str, saes),
            "--out",
            str(out),
            "--core.acts",
            str(acts),
            "--group-seeds",
        ]
    )
    text = [
        "# Commands that made this leaderboard",
        "",
        f"Wall time {time.time() - t0:.0f} s.",
        "",
        "Values chosen by the sparsity search (training-sample L0 at the end of each run):",
        "",
    ]
    for name, c in chosen.items():
        trials = ", ".join(f"{tc:.4g} -> L0 {tl:.1f}" for tc, tl in searches[name])
        text.append(f"- {name}: {SEARCHED[name][1]} **{c:.4g}** (tried, at {a.search_tokens} rows: {trials})")
    text += ["", "```bash", *log.lines, "```", ""]
    (out / "commands.md").write_text("\n".join(text))
    print(f"wrote {out}/bench.md, {out}/commands.md", file=sys.stderr)


if __name__ == "__main__":
    main()
