"""Whole-analysis plots: the summary of every analysed feature, the frequency/max statistics, and the
real-vs-synthetic comparison. Per-feature plots and the shared drawing helpers are in analysis_plots."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt

from saekit.viz.analysis_plots import _highlight_row, _save


def summary_real_png(doc: dict, out_dir: str | Path) -> Path:
    """`summary_real.png`: the selected features side by side (frequency, activation ranges)."""
    feats = [doc["features"][k] for k in doc["features"]]
    names = [str(f["index"]) for f in feats]
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 0.6 * len(feats) + 6), 5.5))
    fig.suptitle(f"{len(feats)} selected features — real activations", fontsize=14, fontweight="bold")
    axes[0].bar(names, [f["stats"]["frequency"] * 100 for f in feats], color="tab:blue")
    axes[0].set_ylabel("firing frequency (% of tokens)")
    axes[0].set_xlabel("feature")
    axes[0].set_title("how often")
    ax = axes[1]
    for i, f in enumerate(feats):
        q = f["stats"]["quantiles"]
        lo, med, hi = q.get("0.1"), q.get("0.5"), q.get("0.9")
        if med is None:
            continue
        ax.plot([i, i], [lo, hi], color="tab:orange", lw=6, solid_capstyle="butt")
        ax.plot(i, med, "o", color="black")
        ax.plot(i, f["stats"]["max"], "^", color="tab:red")
    ax.set_xticks(range(len(feats)))
    ax.set_xticklabels(names)
    ax.set_xlabel("feature")
    ax.set_ylabel("activation when active")
    ax.set_title("how strongly (bar p10–p90, ● median, ▲ max)")
    for a in axes:
        a.grid(alpha=0.3, axis="y")
        if len(feats) > 20:
            a.tick_params(axis="x", labelrotation=90)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "summary_real.png")


def statistics_real_png(doc: dict, out_dir: str | Path) -> Path:
    """`statistics_real.png`: density (firing frequency) distribution over all features."""
    af, summ = doc["all_features"], doc["summary"]
    freq = af["frequency"]
    alive = [(f, m) for f, m in zip(freq, af["mean_when_active"]) if f > 0 and m is not None]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    fig.suptitle(
        f"All {summ['n_features']:,} features over {summ['n_rows']:,} tokens — "
        f"{summ['n_dead']:,} never fired",
        fontsize=14,
        fontweight="bold",
    )
    ax = axes[0]
    if alive:
        logs = [math.log10(f) for f, _ in alive]
        ax.hist(logs, bins=40, color="tab:blue", edgecolor="black", lw=0.3)
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("features")
    ax.set_title("feature density distribution")
    ax = axes[1]
    if alive:
        ax.scatter([f for f, _ in alive], [m for _, m in alive], s=6, alpha=0.5, color="tab:purple")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("firing frequency")
    ax.set_ylabel("mean activation when active")
    ax.set_title("frequency vs strength")
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "statistics_real.png")


def comparison_png(doc: dict, out_dir: str | Path) -> Path:
    """`real_vs_synthetic_comparison.png`: activations side by side + top real vs best synthetic text."""
    feats = [f for f in doc["features"].values() if "comparison" in f]
    names = [str(f["index"]) for f in feats]
    n = len(feats)
    fig = plt.figure(figsize=(14, 4.5 + 0.55 * n))
    gs = fig.add_gridspec(
        2, 1, height_ratios=[4.0, 0.55 * n + 0.6], hspace=0.3, left=0.07, right=0.98, top=0.93, bottom=0.03
    )
    fig.suptitle("Real vs synthetic: how far can each feature be pushed?", fontsize=14, fontweight="bold")
    ax = fig.add_subplot(gs[0])
    w = 0.27
    xs = range(n)
    ax.bar(
        [x - w for x in xs],
        [f["comparison"]["real_max"] for f in feats],
        w,
        label="real max",
        color="tab:blue",
    )
    ax.bar(
        list(xs),
        [f["comparison"]["synthetic_best"] for f in feats],
        w,
        label="synthetic best",
        color="tab:orange",
    )
    ax.bar(
        [x + w for x in xs],
        [f["comparison"]["random_max"] or 0 for f in feats],
        w,
        label="random-input max",
        color="tab:gray",
    )
    for x, f in zip(xs, feats):
        r = f["comparison"]["ratio_to_real_max"]
        if r is not None:
            ax.text(x, f["comparison"]["synthetic_best"], f"{r:.2f}×", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names)
    ax.set_xlabel("feature")
    ax.set_ylabel("activation")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    ax = fig.add_subplot(gs[1])
    ax.set_axis_off()
    ax.text(0.0, 1.0, "feature", transform=ax.transAxes, fontweight="bold", va="bottom")
    ax.text(0.07, 1.0, "top real context", transform=ax.transAxes, fontweight="bold", va="bottom")
    ax.text(0.54, 1.0, "best synthetic sequence", transform=ax.transAxes, fontweight="bold", va="bottom")
    for i, f in enumerate(feats):
        y = 1.0 - (i + 0.5) / max(n, 1)
        ax.text(0.0, y, names[i], transform=ax.transAxes, va="center", fontsize=10)
        if f["top_examples"]:
            e = f["top_examples"][0]["context"]
            focus = e["focus"]
            toks, acts = e["tokens"][: focus + 1][-9:], e["activations"][: focus + 1][-9:]
            _highlight_row(
                ax, toks, acts, max(acts + [1e-9]), y, len(toks) - 1, x0=0.07, x_max=0.52, fontsize=9
            )
        s = f["synthetic"]["sequences"][0]
        acts = [0.0] * (len(s["tokens"]) - 1) + [max(s["activation"], 0.0)]
        _highlight_row(
            ax, s["tokens"], acts, max(acts + [1e-9]), y, len(acts) - 1, x0=0.54, x_max=0.99, fontsize=9
        )
    return _save(fig, Path(out_dir) / "real_vs_synthetic_comparison.png")
