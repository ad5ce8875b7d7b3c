"""Sweep plots: scores vs strength per method, and the concept-vs-fluency trade-off."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from saekit.atomic import atomic_path

PANELS = (
    ("overall", "overall (harmonic mean)"),
    ("concept_score", "concept score"),
    ("fluency", "fluency"),
    ("relevance", "instruction relevance"),
)
SINGLE_POINT = ("prompting", "unsteered")


def _series(summary: list[dict]):
    """(label -> [(strength, row)]) for strength grids, and single-point rows (prompting, unsteered)."""
    layers = {s["layer"] for s in summary if s["layer"] != -1}  # -1: arms that do not depend on the layer
    series: dict[str, list] = defaultdict(list)
    points: dict[str, dict] = {}
    for s in summary:
        label = s["method"] if len(layers) == 1 else f"{s['method']} L{s['layer']}"
        if s["method"] in SINGLE_POINT:
            points.setdefault(s["method"], s)  # same text for every layer
        else:
            series[label].append((s["strength"], s))
    return series, points


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_score_vs_strength(summary: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, points = _series(summary)
    labels: list[str] = []
    for rows in series.values():
        for strength, _ in rows:
            if strength not in labels:
                labels.append(strength)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    for ax, (key, title) in zip(axes.flat, PANELS):
        for name, rows in series.items():
            xs = [labels.index(st) for st, _ in rows]
            ys = [r[key] if r[key] is not None else float("nan") for _, r in rows]
            ax.plot(xs, ys, marker="o", label=name, linestyle="--" if name.startswith("diffmean") else "-")
        for name, r in points.items():
            if r[key] is not None:
                ax.axhline(
                    r[key],
                    color="gray" if name == "unsteered" else "black",
                    linestyle=":" if name == "unsteered" else "-.",
                    label=name,
                )
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xticks(range(len(labels)), labels)
        ax.grid(alpha=0.3)
    axes[1, 0].set_xlabel("strength")
    axes[1, 1].set_xlabel("strength")
    axes[0, 0].legend(fontsize=8, loc="best")
    fig.suptitle("Steering sweep: mean over concepts and prompts")
    _save(fig, path)


def plot_tradeoff(summary: list[dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, points = _series(summary)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for name, rows in series.items():
        xs = [r["fluency"] or 0.0 for _, r in rows]
        ys = [r["concept_score"] or 0.0 for _, r in rows]
        (line,) = ax.plot(
            xs, ys, marker="o", label=name, linestyle="--" if name.startswith("diffmean") else "-"
        )
        for (st, _), x, y in zip(rows, xs, ys):
            ax.annotate(
                st, (x, y), fontsize=7, color=line.get_color(), xytext=(3, 3), textcoords="offset points"
            )
    for name, r in points.items():
        ax.scatter(
            [r["fluency"] or 0.0],
            [r["concept_score"] or 0.0],
            marker="*" if name == "prompting" else "x",
            s=120,
            color="black" if name == "prompting" else "gray",
            label=name,
            zorder=5,
        )
    ax.set_xlabel("fluency (unsteered-model perplexity of the text, relative; repetition-penalised)")
    ax.set_ylabel("concept score (MiniLM, rescaled)")
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Concept vs fluency trade-off (points = strengths)")
    _save(fig, path)


def plot_test_table(protocol: dict, path: str | Path) -> None:
    """Test-split overall score per arm (at its train-chosen layer) with 95% bootstrap intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(protocol.get("best_layer", []), key=lambda r: r["overall"] or 0.0)
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(rows), 3) + 1.2))
    ys = range(len(rows))
    means = [r["overall"] or 0.0 for r in rows]
    lo = [m - (r["ci"][0] if r["ci"][0] == r["ci"][0] else m) for m, r in zip(means, rows)]
    hi = [(r["ci"][1] if r["ci"][1] == r["ci"][1] else m) - m for m, r in zip(means, rows)]
    colors = ["tab:gray" if ":" not in r["arm"] else "tab:blue" for r in rows]
    ax.barh(list(ys), means, xerr=[lo, hi], color=colors, capsize=3)
    ax.set_yticks(list(ys), [r["arm"] for r in rows])
    ax.set_xlabel("overall score on test prompts (harmonic mean of concept, fluency, relevance)")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title("Steering on held-out prompts (strength and layer chosen on train); 95% CI")
    _save(fig, path)
