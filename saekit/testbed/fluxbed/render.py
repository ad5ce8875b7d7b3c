"""Captioned renders with known factors, from the handwritten digits that ship with scikit-learn.

Every image is one sklearn digit (8x8 grey) drawn on a black `[3, S, S]` canvas with five known factors:

- content: the digit (0-9);
- style: the colour (a small palette) and the stroke thickness (thin / thick);
- composition: the position (a quadrant) and the size (small / large).

The caption names all five ("a small red 3 at the top left, thin strokes"); `parse_caption` reads them
back. Splits: the sklearn images are split into train and test *images* (`digit_split`), and a fixed
fraction of factor combinations is held out of training altogether (`is_heldout_combo`), so a test
prompt can ask for a combination the generator never saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.15, 0.15),
    "green": (0.15, 0.9, 0.15),
    "blue": (0.25, 0.35, 1.0),
    "yellow": (1.0, 0.95, 0.1),
    "magenta": (1.0, 0.15, 1.0),
    "cyan": (0.1, 0.95, 1.0),
}
"""The palette: name -> RGB in [0, 1], on a black background."""
THICKNESSES = ("thin", "thick")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
"""Quadrants, in (row, column) order: top left is row 0, column 0."""
SIZES = ("small", "large")
SIZE_PX = {"small": 12, "large": 18}
"""Side of the square the 8x8 digit is scaled to, in pixels of a 32-pixel canvas."""
FACTORS = ("digit", "colour", "thickness", "position", "size")
"""The five factor names, in caption order of importance (content, style, composition)."""
N_VALUES = {"digit": 10, "colour": len(COLOURS), "thickness": 2, "position": 4, "size": 2}
"""How many values each factor takes (chance accuracy is 1 / n)."""
CANVAS = 32


def factor_values(factor: str) -> list[str]:
    """The names of a factor's values in index order, as captions spell them (digits as "0".."9")."""
    names = {"digit": [str(d) for d in range(10)], "colour": list(COLOURS), "thickness": list(THICKNESSES),
             "position": list(POSITIONS), "size": list(SIZES)}  # fmt: skip
    if factor not in names:
        raise ValueError(f"unknown factor {factor!r}; factors: {', '.join(FACTORS)}")
    return names[factor]


class Factors(NamedTuple):
    """One image's factors, each an index: `digit` 0-9, `colour` into COLOURS, `thickness` into
    THICKNESSES, `position` into POSITIONS, `size` into SIZES."""

    digit: int
    colour: int
    thickness: int
    position: int
    size: int


@dataclass(frozen=True)
class Render:
    """A batch of renders: `images [N, 3, S, S]` in [0, 1], their `factors [N, 5]` (FACTORS order),
    the sklearn image index each came from `source [N]`, and their `captions`."""

    images: torch.Tensor
    factors: torch.Tensor
    source: torch.Tensor
    captions: list[str]


def caption(f: Factors) -> str:
    """ "a small red 3 at the top left, thin strokes"."""
    return (
        f"a {SIZES[f.size]} {list(COLOURS)[f.colour]} {f.digit} at the {POSITIONS[f.position]}, "
        f"{THICKNESSES[f.thickness]} strokes"
    )


_CAPTION_RE = re.compile(
    r"^a (?P<size>\w+) (?P<colour>\w+) (?P<digit>\d) at the (?P<position>\w+ \w+), "
    r"(?P<thickness>\w+) strokes$"
)


def parse_caption(text: str) -> Factors:
    """The factors a caption names (the inverse of `caption`); ValueError for any other text."""
    m = _CAPTION_RE.match(text.strip())
    if m is None:
        raise ValueError(
            f"not a testbed caption: {text!r} (expected e.g. {caption(Factors(3, 0, 0, 0, 0))!r})"
        )
    try:
        return Factors(
            digit=int(m["digit"]),
            colour=list(COLOURS).index(m["colour"]),
            thickness=THICKNESSES.index(m["thickness"]),
            position=POSITIONS.index(m["position"]),
            size=SIZES.index(m["size"]),
        )
    except ValueError as exc:
        raise ValueError(f"not a testbed caption: {text!r} ({exc})") from exc


def vocabulary() -> list[str]:
    """Every word a caption can hold, in a fixed order (the tokenizer's vocabulary after its specials)."""
    words = ["a", "at", "the", ",", "strokes", "top", "bottom", "left", "right"]
    words += list(SIZES) + list(COLOURS) + [str(d) for d in range(10)] + list(THICKNESSES)
    return words


def all_combos() -> np.ndarray:
    """Every factor combination `[n_combos, 4]` as (colour, thickness, position, size), digit excluded."""
    grids = np.meshgrid(*(np.arange(N_VALUES[k]) for k in FACTORS[1:]), indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def is_heldout_combo(f: np.ndarray) -> np.ndarray:
    """Whether each factor row `[..., 5]` is a held-out combination (never in training): one in eight
    of the (digit, colour, position, size) combinations, chosen by a fixed arithmetic rule so every
    digit, colour, position and size value is seen in training, just not in every combination."""
    f = np.asarray(f)
    return (f[..., 0] * 3 + f[..., 1] * 5 + f[..., 3] * 2 + f[..., 4] * 7) % 8 == 0


def digit_split(seed: int, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices into sklearn's 1,797 digit images: a seeded, per-digit stratified split."""
    _, y = load_digit_images()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(y == d))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


_DIGITS: tuple[np.ndarray, np.ndarray] | None = None


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits: `images [1797, 8, 8]` in [0, 1] and labels `[1797]` (bundled, no download)."""
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        _DIGITS = (d.images.astype(np.float32) / 16.0, d.target.astype(np.int64))
    return _DIGITS


def _glyph(img8: torch.Tensor, side: int, thick: bool) -> torch.Tensor:
    """The alpha mask `[side, side]` of one 8x8 digit scaled to `side` pixels, thin or thick strokes."""
    up = F.interpolate(img8[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    if thick:
        a = ((up - 0.2) * 5).clamp(0, 1)
    else:
        a = ((up - 0.55) * 5).clamp(0, 1)
    return a


def render(sources: np.ndarray, factors: np.ndarray, rng: np.random.Generator, jitter: int = 2) -> Render:
    """Render sklearn digit images `sources [N]` with `factors [N, 5]` (their digit column must match
    the images' labels); each glyph is placed at its quadrant's centre moved by up to `jitter` pixels."""
    images8, labels = load_digit_images()
    factors = np.asarray(factors, dtype=np.int64)
    sources = np.asarray(sources, dtype=np.int64)
    if not np.array_equal(labels[sources], factors[:, 0]):
        raise ValueError("render: the digit factor must be the label of the source image")
    n = len(sources)
    out = torch.zeros(n, 3, CANVAS, CANVAS)
    palette = torch.tensor(list(COLOURS.values()))
    shifts = rng.integers(-jitter, jitter + 1, size=(n, 2)) if jitter else np.zeros((n, 2), np.int64)
    for i in range(n):
        _, colour, thick, pos, size = (int(v) for v in factors[i])
        side = SIZE_PX[SIZES[size]]
        alpha = _glyph(torch.from_numpy(images8[sources[i]]), side, bool(thick))
        cy = (CANVAS // 4) * (1 + 2 * (pos // 2)) + int(shifts[i, 0])
        cx = (CANVAS // 4) * (1 + 2 * (pos % 2)) + int(shifts[i, 1])
        y0 = min(max(cy - side // 2, 0), CANVAS - side)
        x0 = min(max(cx - side // 2, 0), CANVAS - side)
        out[i, :, y0 : y0 + side, x0 : x0 + side] = alpha[None] * palette[colour][:, None, None]
    caps = [caption(Factors(*(int(v) for v in row))) for row in factors]
    return Render(
        images=out, factors=torch.from_numpy(factors), source=torch.from_numpy(sources), captions=caps
    )


def sample_factors(
    sources: np.ndarray, n: int, rng: np.random.Generator, *, heldout: bool | None
) -> tuple[np.ndarray, np.ndarray]:
    """`n` random (source image, factors) pairs drawn from `sources`; `heldout=False` keeps only training
    combinations, True only held-out ones, None any."""
    _, labels = load_digit_images()
    srcs, rows = [], []
    while sum(len(r) for r in rows) < n:
        s = rng.choice(sources, size=2 * n)
        f = np.stack([labels[s]] + [rng.integers(0, N_VALUES[k], size=2 * n) for k in FACTORS[1:]], axis=1)
        if heldout is not None:
            keep = is_heldout_combo(f) == heldout
            s, f = s[keep], f[keep]
        srcs.append(s)
        rows.append(f)
    return np.concatenate(srcs)[:n], np.concatenate(rows)[:n]
