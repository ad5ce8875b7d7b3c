"""PNG reports of the testbed: image grids (rows = strengths, columns = methods) and trade-off plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.atomic import atomic_path

METHOD_COLORS = {
    "additive": "tab:blue",
    "surgery": "tab:red",
    "clamp": "tab:green",
    "boost_active": "tab:purple",
    "diffmean": "tab:orange",
    "decompose": "tab:brown",
    "sae_ts": "tab:cyan",
}
STREAM_MARKERS = {"image": "o", "text": "^", "cond": "s"}


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def steering_grid(
    path: str | Path,
    images: dict[str, Tensor],
    methods: Sequence[str],
    strengths: Sequence[float],
    title: str,
    unit: str,
    baseline: Tensor | None = None,
) -> Path:
    """One panel per (strength, method): the ten targets 0..9 side by side.

    `images[method]` is `[n_strengths, 10, 8, 8]` in [-1, 1]; `baseline [10, 8, 8]` (unsteered, same
    noise) is drawn as an extra first row so the change is visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (["unsteered"] if baseline is not None else []) + [f"{s:g} {unit}" for s in strengths]
    fig, axes = plt.subplots(
        len(rows), len(methods), figsize=(2.6 * len(methods), 0.55 * len(rows) + 0.8), squeeze=False
    )
    for c, method in enumerate(methods):
        for r, label in enumerate(rows):
            ax = axes[r][c]
            if baseline is not None and r == 0:
                strip = baseline
            else:
                strip = images[method][r - (1 if baseline is not None else 0)]
            ax.imshow(
                torch.cat(list(strip), dim=1).numpy(), cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(method, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(
        f"{title}\n(each strip: targets 0-9; row 'unsteered' = same noise without steering)",
        fontsize=9,
        y=1.0 + 0.25 / len(rows),
    )
    return _save(fig, Path(path))


def tradeoff_plot(
    path: str | Path,
    rows: list[dict[str, Any]],
    x_key: str,
    x_label: str,
    floor: dict[str, float],
    ceiling: dict[str, float],
) -> Path:
    """Success rate vs a fidelity measure, one panel per depth; colour = method, marker = stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = list(dict.fromkeys(r["depth"] for r in rows))
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.8), squeeze=False, sharey=True)
    for ax, depth in zip(axes[0], depths):
        for r in rows:
            if r["depth"] != depth:
                continue
            ax.scatter(
                r[x_key],
                r["success"],
                s=12,
                alpha=0.55,
                c=METHOD_COLORS.get(r["method"], "gray"),
                marker=STREAM_MARKERS.get(r["stream"], "s"),
                linewidths=0,
            )
        ax.scatter(
            ceiling[x_key], ceiling["success"], marker="*", s=160, c="black", label="conditioned on target"
        )
        ax.scatter(floor[x_key], floor["success"], marker="X", s=90, c="gray", label="unsteered")
        ax.set_title(f"{depth} block ({rows[[r['depth'] for r in rows].index(depth)]['block']})", fontsize=9)
        ax.set_xlabel(x_label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate (classifier = target)", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="", c=c, label=m) for m, c in METHOD_COLORS.items()]
    handles += [
        Line2D([], [], marker=mk, ls="", c="k", label=f"{s} stream") for s, mk in STREAM_MARKERS.items()
    ]
    handles += [
        Line2D([], [], marker="*", ls="", c="black", ms=10, label="conditioned on target"),
        Line2D([], [], marker="X", ls="", c="gray", ms=8, label="unsteered"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, bbox_to_anchor=(0.5, -0.12))
    return _save(fig, Path(path))
