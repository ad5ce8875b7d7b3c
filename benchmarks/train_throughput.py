"""Training throughput and quality of TopK SAEs: saekit (exact and screened encoder) vs sparsify vs dense.

One command prints the whole table: tokens/s, x sparsify, x dense PyTorch, % of the fp32 floor (the bare
`[batch, d_in] x [d_in, d_sae]` matmul measured in the same run), FVU on held-out rows after the same
tokens, latents that never fire on them, peak RSS. d_sae=9216, k=32, fp32, Adam, unit-norm decoder, the
same rows in the same order and the same LR schedule for every method.

    # real data (SmolLM2 layer 15, 190k train rows + 10k held out, batch 1024, 3 epochs): ~15 min quiet
    python benchmarks/train_throughput.py --data /work/data/demo/acts --batch 1024 --epochs 3
    # synthetic, short: throughput at batch 4096
    python benchmarks/train_throughput.py --batch 4096 --epochs 0.2 --schedule constant --lr 2e-3

Each (method, repeat) runs in its own subprocess so peak RSS is per method; repeats are interleaved across
methods so load from other users hits all of them alike; medians are reported. The dense reference is
only timed for `--dense-steps` steps (a full run takes ~10x longer than the others). sparsify 1.3.3 is
measured when importable by `--sparsify-python` (a venv made with `--system-site-packages` and
`pip install --no-deps eai-sparsify==1.3.3 einops natsort simple-parsing accelerate`); its package `__init__`
(which pulls in `datasets`) is bypassed and only `sparse_coder` is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_methods as tm  # noqa: E402

#: saekit-auto is what a user gets without flags (`--encoder auto`: timed here, see encoder_choice);
#: the forced paths beside it show what it chose between
METHODS = ("floor", "dense", "sparsify", "saekit-auto", "saekit-exact", "saekit-screened-bf16",
           "saekit-screened-int8")  # fmt: skip


def child(method: str, setup: tm.Setup, threads: int, dense_steps: int) -> None:
    import torch

    torch.set_num_threads(threads)
    train, heldout = tm.load_rows(setup)
    if method == "floor":
        rec = tm.run_floor(setup, train)
    elif method == "dense":
        rec = tm.run_dense(dataclasses.replace(setup, max_steps=dense_steps), train, heldout)
    elif method == "sparsify":
        rec = tm.run_sparsify(setup, train, heldout)
    elif method.startswith("saekit-"):
        rec = tm.run_saekit(setup, train, heldout, method.split("-", 1)[1])
    else:
        raise SystemExit(f"unknown method {method}")
    rec["method"] = method
    rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(rec))


def _sparsify_ok(py: str) -> bool:
    if not os.path.exists(py):
        return False
    probe = "import importlib.util,sys; sys.exit(importlib.util.find_spec('sparsify') is None)"
    return subprocess.run([py, "-c", probe], capture_output=True).returncode == 0


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _label(method: str, rec: dict) -> str:
    """The row's name; for saekit-auto with the path it resolved to, e.g. `saekit-auto (screened-int8)`."""
    enc = rec.get("encoder")
    return f"{method} ({enc})" if method == "saekit-auto" and isinstance(enc, str) else method


def print_table(med: dict[str, dict], setup: tm.Setup, args, notes: list[str]) -> None:
    dense = med.get("dense", {}).get("tokens_per_s")
    spars = med.get("sparsify", {}).get("tokens_per_s")
    floor = med.get("floor", {}).get("tokens_per_s")
    n_train = "synthetic 200k" if setup.data == "synthetic" else setup.data
    print(
        f"\nTopK SAE training, d_sae={tm.D_SAE} k={tm.K} batch={setup.batch} fp32, {args.threads} threads, "
        f"{setup.epochs} epochs of {n_train}, schedule {setup.schedule}; median of {args.repeats}; "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )
    head = f"{'method':28s} {'tokens/s':>9s} {'x sparsify':>10s} {'x dense':>8s} {'% floor':>8s}"
    print(head + f" {'FVU':>7s} {'never fired':>11s} {'peak RSS MB':>11s} {'miss %':>7s} {'margin':>6s}")
    for m, r in med.items():
        tps = r["tokens_per_s"]
        miss = r.get("miss_rate")
        print(
            f"{_label(m, r):28s} {tps:9.0f} {_fmt(spars and tps / spars, '10.2f'):>10s} "
            f"{_fmt(dense and tps / dense, '8.2f'):>8s} {_fmt(floor and 100 * tps / floor, '7.0f'):>7s}% "
            f"{_fmt(r.get('fvu'), '7.4f'):>7s} {_fmt(r.get('never_fired'), '11.0f'):>11s} "
            f"{r['peak_rss_mb']:11.0f} {_fmt(miss and 100 * miss, '7.3f'):>7s} "
            f"{_fmt(r.get('margin'), '6.0f'):>6s}"
        )
    for n in notes:
        print(f"note: {n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synthetic", help="`synthetic` or an activation store folder")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=None, help="peak LR (default 2e-4/sqrt(d_sae/2**14))")
    ap.add_argument("--schedule", choices=["saekit", "constant"], default="saekit")
    ap.add_argument("--warmup", type=int, default=5, help="steps not timed")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dense-steps", type=int, default=20)
    ap.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS)
    )
    ap.add_argument("--sparsify-python", default="/work/venvs/sparsify/bin/python")
    ap.add_argument(
        "--profile-batches", default="1024,4096", help="per-phase profile at these batch sizes ('' = none)"
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    setup = tm.Setup(args.data, args.batch, args.epochs, args.warmup, args.lr, args.schedule)
    if args.child:
        child(args.child, setup, args.threads, args.dense_steps)
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    methods = {m: sys.executable for m in args.methods.split(",")}
    notes = []
    if "sparsify" in methods:
        if _sparsify_ok(args.sparsify_python):
            methods["sparsify"] = args.sparsify_python
        else:
            del methods["sparsify"]
            notes.append(f"sparsify not measured: not importable by {args.sparsify_python}")
    notes.append(f"dense is timed over {args.dense_steps} steps only (no FVU)")
    results: dict[str, list[dict]] = {m: [] for m in methods}
    passthrough = sys.argv[1:]
    for rep in range(args.repeats):
        for method, py in methods.items():
            cmd = [py, os.path.abspath(__file__), *passthrough, "--child", method]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{method} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            results[method].append(rec)
            print(f"  repeat {rep}: {json.dumps(rec)}", flush=True)
    med = {}
    for m, rs in results.items():
        if rs:
            med[m] = {
                k: (statistics.median(r[k] for r in rs) if isinstance(rs[0][k], (int, float)) else rs[0][k])
                for k in rs[0]
                if k != "method"
            }
    print_table(med, setup, args, notes)
    print_auto_choice()
    if args.profile_batches:
        profile = [
            sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_profile.py"),
            "--data", args.data, "--batch", args.profile_batches,
            "--encoder", "exact,screened-int8,screened-bf16",
            "--threads", str(args.threads),
        ]  # fmt: skip
        print("\nper-phase profile of the trainer's step (benchmarks/train_profile.py):", flush=True)
        subprocess.run(profile, env=env, check=False)


def print_auto_choice() -> None:
    """What `--encoder auto` chooses here at the table's shapes, with the probe's timings."""
    from saekit.sae import SAEConfig, build
    from saekit.sae.encoder_choice import resolve

    sae = build(SAEConfig(d_in=576, d_sae=tm.D_SAE, arch="topk", k=tm.K))
    for batch in (1024, 4096):
        print(f"batch {batch}: {resolve('auto', sae, batch).describe()}")


if __name__ == "__main__":
    main()
