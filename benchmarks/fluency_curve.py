"""Fluency trade-off of the synthetic maximiser: activation (fraction of the real max) vs perplexity.

    python benchmarks/fluency_curve.py --analysis A --store S --sae P [--features 329,2800,5096]
        [--weights 0,0.01,0.03,0.1,0.3] [--steps 20] [--out docs/results/fluency]

For each feature and fluency weight w (`SyntheticConfig.fluency_weight`: the score is activation
- w * real_max * CE, CE in nats/token) the maximiser runs from the feature's best real context
(fluency 0 = pure activation). Perplexity is the model's own, exp(mean CE) over the edited tokens
given everything before them; the real context's own perplexity over the same tokens is the
reference (w -> infinity keeps the real text). Writes `fluency_curve.png`, `fluency_curve.md` and
`fluency_curve.json` into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
from pathlib import Path


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--analysis", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--features", default="329,2800,5096")
    ap.add_argument("--weights", default="0,0.01,0.03,0.1,0.3")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="docs/results/fluency")
    return ap.parse_args()


def _run(lm, sae, hp, feat, cfg, starts) -> dict:
    from maximiser import maximise_timed

    from saekit.analysis.objective import FeatureObjective

    real_max = feat["stats"]["max"]
    res, seconds = maximise_timed(lm, sae, hp, feat, cfg, starts)
    best = res.sequences[0]
    n = best.n_edited or len(best.token_ids)
    start = starts[0]
    obj = FeatureObjective(lm.model, sae, hp, _tensor(start[:-n]))  # the real text's own CE, same tokens
    real_ce = float(obj.cross_entropy(_tensor(start[-n:])[None])[0])
    return {
        "feature": feat["index"],
        "fluency_weight": cfg.fluency_weight,
        "ratio": best.activation / real_max,
        "perplexity": best.perplexity,
        "real_perplexity": math.exp(real_ce),
        "s": seconds,
        "text": lm.tokenizer.decode(best.token_ids[-n:]),
        "real_text": lm.tokenizer.decode(start[-n:]),
    }


def _tensor(ids):
    import torch

    return torch.tensor(list(ids), dtype=torch.long)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for f in sorted({r["feature"] for r in rows}):
        rs = sorted((r for r in rows if r["feature"] == f), key=lambda r: r["fluency_weight"])
        line = ax.plot([r["perplexity"] for r in rs], [r["ratio"] for r in rs], "o-", label=f"feature {f}")[0]
        for r in rs:
            ax.annotate(f"w={r['fluency_weight']:g}", (r["perplexity"], r["ratio"]), fontsize=7)
        ax.plot([rs[0]["real_perplexity"]], [1.0], "*", color=line.get_color(), markersize=12)
    ax.set_xscale("log")
    ax.set_xlabel("perplexity of the edited tokens under SmolLM2 (log)")
    ax.set_ylabel("activation / real max")
    ax.set_title("Synthetic maximiser: activation vs fluency (star: the real context)")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict], load: str) -> str:
    head = "| weight | feature | activation / real max | perplexity | real text perplexity |"
    lines = [f"Load: {load}", "", head]
    lines.append("|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["fluency_weight"], r["feature"])):
        lines.append(
            f"| {r['fluency_weight']:g} | {r['feature']} | {r['ratio']:.3f} | {r['perplexity']:.3g} "
            f"| {r['real_perplexity']:.3g} |"
        )
    lines += ["", "| weight | median activation / real max | median perplexity |", "|---|---|---|"]
    for w in sorted({r["fluency_weight"] for r in rows}):
        rs = [r for r in rows if r["fluency_weight"] == w]
        med_r = statistics.median(r["ratio"] for r in rs)
        lines.append(f"| {w:g} | {med_r:.3f} | {statistics.median(r['perplexity'] for r in rs):.3g} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from maximiser import open_setup, starts_for

    from saekit.analysis.synthetic import SyntheticConfig

    a = _args()
    doc, sae, store, lm = open_setup(a.analysis, a.sae, a.store, "float32")
    man = store.manifest
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in [float(x) for x in a.weights.split(",")]:
        cfg = dataclasses.replace(SyntheticConfig(), fluency_weight=w, n_steps=a.steps, restarts=1)
        for k in a.features.split(","):
            feat = doc["features"][k]
            starts = starts_for(feat, 1, store, lm)
            rows.append(_run(lm, sae, man["hook_point"], feat, cfg, starts))
            r = rows[-1]
            print(f"w {w:g} f {k}: {r['ratio']:.3f} ppl {r['perplexity']:.3g} {r['text']!r}", flush=True)
    load = subprocess.getoutput("uptime")
    (out / "fluency_curve.md").write_text(_table(rows, load))
    (out / "fluency_curve.json").write_text(json.dumps({"rows": rows, "load": load}, indent=1))
    _plot(rows, out / "fluency_curve.png")
    print(_table(rows, load))


if __name__ == "__main__":
    main()
