"""Image corpora (folders, scikit-image's bundled samples) and caption files (JSONL / CSV) for CLIP.

Specs: `skimage` (the sample images that ship inside scikit-image, no download), a folder (recursively,
common image suffixes, sorted so ids are stable), or a single image file. Captions: `.jsonl` with a
`caption` (or `text`) field per line, `.csv` with a `caption` (or `text`) column.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from saekit.errors import CorpusError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SKIMAGE_SAMPLES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "checkerboard",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
    "chelsea",
    "microaneurysms",
)
"""scikit-image sample images stored inside the package (others need a download and are skipped)."""


class ImageItem(NamedTuple):
    """One image: `pixels` is `[H, W, 3]` uint8 RGB."""

    id: int
    pixels: np.ndarray
    source: str


def to_rgb_uint8(img: np.ndarray, source: str = "") -> np.ndarray:
    """Grey, RGBA, bool or float images -> `[H, W, 3]` uint8 (CLIP processors expect RGB)."""
    a = np.asarray(img)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = a.astype(np.float64)
        hi = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        a = np.clip(a / hi * 255.0, 0, 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise CorpusError(f"image {source!r} has shape {a.shape}; expected [H, W], [H, W, 3] or [H, W, 4]")
    return np.ascontiguousarray(a[..., :3])


def skimage_samples() -> list[ImageItem]:
    """The bundled scikit-image samples, in a fixed order."""
    import skimage.data

    items = []
    for name in SKIMAGE_SAMPLES:
        try:
            img = getattr(skimage.data, name)()
        except Exception:  # a sample that needs a download (or a missing optional dep): skip it
            continue
        items.append(ImageItem(len(items), to_rgb_uint8(img, name), f"skimage:{name}"))
    if not items:
        raise CorpusError("no scikit-image sample images could be loaded; is scikit-image installed?")
    return items


def load_images(spec: str | Path, *, limit: int | None = None) -> list[ImageItem]:
    """`skimage`, a folder of images (recursive) or one image file -> list of ImageItem."""
    if str(spec) == "skimage":
        items = skimage_samples()
        return items[:limit] if limit else items
    path = Path(spec)
    if not path.exists():
        raise CorpusError(
            f"image corpus {str(spec)!r} does not exist; give 'skimage', a folder of images or an image file"
        )
    files = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    )
    if not files:
        raise CorpusError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {path}")
    from PIL import Image

    items = []
    for f in files[:limit] if limit else files:
        try:
            with Image.open(f) as im:
                items.append(
                    ImageItem(len(items), to_rgb_uint8(np.asarray(im.convert("RGB")), str(f)), str(f))
                )
        except OSError as exc:
            raise CorpusError(f"cannot read image {f}: {exc}; remove or fix the file") from exc
    return items


def load_captions(path: str | Path, *, field: str | None = None) -> list[str]:
    """Captions from `.jsonl` (field `caption` or `text`) or `.csv` (column `caption` or `text`)."""
    p = Path(path)
    if not p.is_file():
        raise CorpusError(f"caption file {p} does not exist")
    fields = (field,) if field else ("caption", "text")
    out: list[str] = []
    if p.suffix.lower() == ".jsonl":
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"{p}:{i}: not valid JSON ({exc.msg}); each line must be an object"
                ) from exc
            key = next((f for f in fields if isinstance(row, dict) and f in row), None)
            if key is None:
                raise CorpusError(
                    f"{p}:{i}: no {' or '.join(fields)} field; found "
                    f"{list(row) if isinstance(row, dict) else type(row).__name__}"
                )
            out.append(str(row[key]))
    elif p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            key = next((f for f in fields if f in (reader.fieldnames or [])), None)
            if key is None:
                raise CorpusError(f"{p}: no {' or '.join(fields)} column; found columns {reader.fieldnames}")
            out = [row[key] for row in reader]
    else:
        raise CorpusError(f"caption file {p} must be .jsonl or .csv, found {p.suffix!r}")
    if not out:
        raise CorpusError(f"caption file {p} holds no captions")
    return out
