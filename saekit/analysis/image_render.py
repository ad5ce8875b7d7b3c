"""The picture behind an image-store document: the CLIP input image, or the diffusion output
regenerated from the stored prompt and seed with the manifest's diffusers pipeline (FLUX.1, or the
`saekit testbed build` FluxPipeline).

A renderer is `render(doc_id, documents_json_entry) -> Render`. Regeneration repeats the harvest's
sampling exactly when the harvest seeded each image with `torch.Generator().manual_seed(seed)` and
used the manifest's `height`, `width`, `num_inference_steps`, `guidance_scale` (the PREAMBLE
convention); without the model (`--no-model`) diffusion documents get a neutral placeholder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from saekit.errors import StoreError


class Render(NamedTuple):
    pixels: np.ndarray
    """`[H, W, 3]` uint8 RGB."""
    grid: tuple[int, int] | None = None
    """Patch grid of the image tokens, when the renderer knows it."""


def placeholder(h: int = 64, w: int = 64, grid: tuple[int, int] | None = None) -> Render:
    return Render(np.full((max(h, 8), max(w, 8), 3), 200, dtype=np.uint8), grid)


def load_clip_image(ref: str) -> np.ndarray:
    """`skimage:NAME` or an image path -> `[H, W, 3]` uint8."""
    from saekit.data.images import to_rgb_uint8

    if ref.startswith("skimage:"):
        import skimage.data

        return to_rgb_uint8(getattr(skimage.data, ref.split(":", 1)[1])(), ref)
    from PIL import Image

    with Image.open(Path(ref)) as im:
        return to_rgb_uint8(np.asarray(im.convert("RGB")), ref)


def center_square(img: np.ndarray) -> np.ndarray:
    """The centre square of an image: what a CLIP processor (resize shortest side, centre crop) sees,
    so the patch grid lies over the right pixels."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[top : top + s, left : left + s]


def clip_renderer(doc_id: int, meta: dict) -> Render:
    ref = meta.get("image")
    if not ref:
        return placeholder()
    try:
        return Render(center_square(load_clip_image(str(ref))))
    except (OSError, AttributeError) as exc:
        raise StoreError(f"documents.json entry {doc_id}: cannot open image {ref!r} ({exc})") from exc


def diffusers_renderer(pipe, manifest: dict, prompt_kwargs=None) -> Callable[[int, dict], Render]:
    """Regenerate with a diffusers pipeline; `prompt_kwargs(meta)` -> the prompt arguments
    (default `{"prompt": meta["prompt"]}`; tests pass prompt embeddings instead)."""
    h, w = int(manifest.get("height", 512)), int(manifest.get("width", 512))
    f = 2 * int(getattr(pipe, "vae_scale_factor", 8))

    def render(doc_id: int, meta: dict) -> Render:
        kw = prompt_kwargs(meta) if prompt_kwargs else {"prompt": meta["prompt"]}
        out = pipe(
            **kw,
            height=h,
            width=w,
            num_inference_steps=int(manifest.get("num_inference_steps", 28)),
            guidance_scale=float(manifest.get("guidance_scale", 3.5)),
            generator=torch.Generator().manual_seed(int(meta.get("seed", 0))),
            output_type="np",
        )
        img = np.clip(np.asarray(out.images[0]) * 255, 0, 255).round().astype(np.uint8)
        return Render(img, (h // f, w // f))

    return render


def renderer_for(kind: str, source, docs: list[dict], *, device=None, regenerate: bool = True):
    """The renderer a store needs (see module docstring)."""
    if kind == "clip":
        return clip_renderer
    man = source.manifest
    model = str(man.get("model") or "")
    if not regenerate:
        return lambda d, meta: placeholder(int(man.get("height", 64)), int(man.get("width", 64)))
    from saekit.models import load_model

    pipe = load_model(model, dtype="float32", device=None if device is None else str(device))
    return diffusers_renderer(pipe, man)
