"""PNGs of image features: a feature's top images in a grid, a heatmap of the feature over one image's
patches, and the feature's activation by denoising step. Headless (Agg), atomic writes.

Labels come from documents (file names, prompts, captions) and are drawn with `parse_math=False`, so
a `$` in a caption is literal text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from saekit.atomic import atomic_path

DPI = 110


class Tile(NamedTuple):
    """One image of a grid."""

    pixels: np.ndarray
    """`[H, W, 3]` uint8."""
    label: str
    grid: tuple[int, int] | None
    """Patch grid (rows, cols) of the image tokens, if known."""
    patch: int | None
    """The patch (row-major index) of the top example, outlined; None = whole image (CLS)."""


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return path


def save_rgb(pixels: np.ndarray, path: Path) -> Path:
    """Write one uint8 RGB image as PNG (atomic)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG")
    return path


def patch_rect(
    shape_hw: tuple[int, int], grid: tuple[int, int], patch: int
) -> tuple[float, float, float, float]:
    """(x, y, width, height) in pixels of patch `patch` (row-major) of a `grid` over an image."""
    rows, cols = grid
    ph, pw = shape_hw[0] / rows, shape_hw[1] / cols
    r, c = divmod(patch, cols)
    return c * pw, r * ph, pw, ph


def _outline(ax, tile: Tile) -> None:
    if tile.grid is None or tile.patch is None or tile.patch >= tile.grid[0] * tile.grid[1]:
        return
    x, y, w, h = patch_rect(tile.pixels.shape[:2], tile.grid, tile.patch)
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="#e8112d", linewidth=2.5))


def grid_png(tiles: list[Tile], title: str, path: Path) -> Path:
    """Top images in a near-square grid, each with its label and the top patch outlined."""
    n = len(tiles)
    cols = min(n, max(1, math.ceil(math.sqrt(n))))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles):
        ax.imshow(tile.pixels, interpolation="nearest")
        _outline(ax, tile)
        ax.set_title(tile.label, fontsize=9, parse_math=False)
    fig.suptitle(title, fontsize=12, fontweight="bold", parse_math=False)
    fig.tight_layout()
    return _save(fig, path)


def heatmap_png(tile: Tile, heat: np.ndarray, title: str, path: Path) -> Path:
    """The image, and the feature's activation per patch laid over it (NaN = patch not stored)."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.8))
    h, w = tile.pixels.shape[:2]
    for ax in axes:
        ax.imshow(tile.pixels, interpolation="nearest")
        ax.axis("off")
    masked = np.ma.masked_invalid(heat)
    im = axes[1].imshow(
        masked, cmap="magma", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest"
    )
    _outline(axes[0], tile)
    axes[0].set_title("image (top patch outlined)", fontsize=9)
    axes[1].set_title("feature activation per patch", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    fig.suptitle(title.replace("\n", " "), fontsize=11, fontweight="bold", parse_math=False)
    fig.tight_layout()
    return _save(fig, path)


def timestep_png(series: dict, feature: int, path: Path) -> Path:
    """Mean activation, firing frequency and max of one feature at each denoising step."""
    steps = series["steps"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(steps, series["mean"], "o-", color="#1f5fa8", label="mean activation (all rows)")
    ax.plot(steps, series["max"], "s--", color="#e8112d", alpha=0.7, label="max activation")
    ax.set_xlabel("denoising step (0 = first, pure noise)")
    ax.set_ylabel("activation")
    ax2 = ax.twinx()
    ax2.bar(steps, series["frequency"], color="#999999", alpha=0.3, label="firing frequency")
    ax2.set_ylabel("firing frequency")
    ax2.set_ylim(0, max(1e-9, max(series["frequency"])) * 1.15)
    lines = ax.get_legend_handles_labels()
    bars = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + bars[0], lines[1] + bars[1], fontsize=8, loc="upper left")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_title(f"Feature {feature}: activation by denoising step")
    fig.tight_layout()
    return _save(fig, path)
