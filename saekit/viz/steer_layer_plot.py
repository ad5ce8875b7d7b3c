"""Test overall score per arm across layers (strengths chosen on train), with 95% bootstrap intervals."""

from __future__ import annotations

from pathlib import Path


def plot_layer_grid(grid: dict, path: str | Path) -> None:
    """One line per arm over the swept layers; DiffMean drawn thick and black, prompting as a band-free
    horizontal reference when the grid has it (`grid["prompting"]`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saekit.viz.steer_plots import _save

    layers = grid["layers"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, arm in enumerate(grid["arms"]):
        pts = [(lay, grid["cells"][arm, lay]) for lay in layers if (arm, lay) in grid["cells"]]
        xs = [lay + 0.15 * (i - len(grid["arms"]) / 2) for lay, _ in pts]
        ys = [c["overall"] for _, c in pts]
        err = [[y - c["ci"][0] for y, (_, c) in zip(ys, pts)], [c["ci"][1] - y for y, (_, c) in zip(ys, pts)]]
        style = {"color": "black", "lw": 2.5} if arm == "diffmean" else {"lw": 1.2}
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=2, label=arm, **style)
    if grid.get("prompting") is not None:
        ax.axhline(grid["prompting"], color="grey", ls="--", label="prompting")
    ax.set_xticks(layers)
    ax.set_xlabel("SmolLM2 layer")
    ax.set_ylabel("test overall (harmonic mean)")
    ax.set_title("steering arms x layers (test prompts, 95% bootstrap CI)")
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)
