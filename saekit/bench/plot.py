"""The bench figure: a few headline figures per SAE, each with its 95% interval."""

from __future__ import annotations

from pathlib import Path

from saekit.bench.bootstrap import Interval

PANELS = (
    ("fvu", "FVU (lower is better)"),
    ("ce_recovered", "CE recovered vs zero ablation"),
    ("kl", "KL(orig || spliced), nats"),
    ("probe_k1", "sparse probing, k=1 (mean acc.)"),
    ("probe_k5", "sparse probing, k=5 (mean acc.)"),
    ("absorption_rate", "absorption rate (first letter)"),
)
BASELINES = {"probe_k1": "raw_k1", "probe_k5": "raw_k5"}
"""Panel -> raw-activation baseline figure drawn as a dashed line."""


def bench_png(path: str | Path, report: dict) -> Path:
    """A 2 x 3 grid of point-and-interval plots, one point per SAE; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saekit.atomic import atomic_path

    saes = report["saes"]
    names = [s["name"] for s in saes]
    raw = (report["baselines"].get("raw_activations") or {}).get("figures", {})
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    for ax, (key, title) in zip(axes.flat, PANELS):
        ivs = [s["figures"].get(key) for s in saes]
        xs = [i for i, iv in enumerate(ivs) if isinstance(iv, Interval)]
        if xs:
            vals = [ivs[i].value for i in xs]
            err = [[ivs[i].value - ivs[i].lo for i in xs], [ivs[i].hi - ivs[i].value for i in xs]]
            err = [[max(0.0, e) if e == e else 0.0 for e in side] for side in err]  # NaN -> no bar
            ax.errorbar(xs, vals, yerr=err, fmt="o", capsize=4, color="tab:blue")
        base = raw.get(BASELINES.get(key, ""))
        if isinstance(base, Interval):
            ax.axhline(base.value, ls="--", color="tab:gray", label=f"raw activations {base.value:.3f}")
            ax.legend(fontsize=8)
        if not xs:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"saekit bench: {report['model']} @ {report['hook_point']} (95% bootstrap intervals)")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
