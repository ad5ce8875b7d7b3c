"""Image features: what `analyze real` adds for CLIP, FLUX and testbed stores (rows without tokens).

Per feature (fields of its analysis.json entry, paths relative to the analysis folder):
* `top_images`: the feature's best distinct images, `{doc_id, activation, image, position, source,
  (step, timestep, prompt, seed, class)}`; `image` is a PNG written under `images/` (the original
  image for CLIP, the regenerated image for diffusion), `source` the documents.json reference.
* `image_grid`: one PNG with those images, their activations, and the token's patch outlined
  (patch-token sites; CLS rows are whole-image and get no outline).
* `heatmaps`: PNGs of the feature over every patch of the top images (same step for diffusion),
  where the store holds enough of that image's patch rows.
* `timestep_plot` (diffusion): the feature's activation by denoising step (from `timesteps`).

Which store is which follows the PREAMBLE metadata: `documents.json` entries, per-row `doc_id`,
`position` (CLIP: 0 = CLS, 1 + p = patch p; diffusion: image-token p), `step`/`timestep`, manifest
`patch_grid`, `height`/`width`/`num_inference_steps`/`guidance_scale`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saekit.analysis.image_render import Render, renderer_for
from saekit.errors import StoreError


@dataclass(frozen=True)
class ImageConfig:
    """What image stores get in `analyze real`."""

    n_images: int = 9
    """Distinct top images per feature in its grid."""
    n_heatmaps: int = 3
    """Top images per feature drawn as a feature heatmap over their patches."""


def image_kind(source) -> str | None:
    """`clip`, `diffusion`, or None (a text source)."""
    fields = source.meta_fields()
    if "step" in fields or "num_inference_steps" in source.manifest:
        return "diffusion"  # first: a FLUX store records its prompt's token ids too, yet is an image store
    if "token_id" in fields:
        return None
    return "clip"


def read_documents(source) -> list[dict]:
    folder = getattr(source, "folder", None)
    path = None if folder is None else Path(folder) / "documents.json"
    if path is None or not path.is_file():
        raise StoreError(
            f"image store {folder} has no documents.json (which image / prompt each doc_id is); "
            "re-harvest it with a saekit that writes one"
        )
    docs = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(docs, list):
        raise StoreError(f"{path} must be a JSON list with one entry per doc_id")
    return docs


def _distinct_top(feat: dict, n: int) -> list[dict]:
    seen, out = set(), []
    for ex in feat.get("top_examples", []):
        if ex["doc_id"] not in seen:
            seen.add(ex["doc_id"])
            out.append(ex)
        if len(out) == n:
            break
    return out


def patch_index(kind: str, position: int) -> int | None:
    """Patch number of a row's position (None: the CLS token)."""
    if kind == "clip":
        return None if position <= 0 else position - 1
    return position


def grid_shape(manifest: dict, render: Render | None, n_positions: int) -> tuple[int, int] | None:
    """Patch grid `(rows, cols)`: the manifest's, else the renderer's, else a square guess."""
    if manifest.get("patch_grid"):
        r, c = manifest["patch_grid"]
        return int(r), int(c)
    if render is not None and render.grid is not None:
        return render.grid
    side = int(round(n_positions**0.5))
    return (side, side) if side * side == n_positions and side > 1 else None


class _DocIndex:
    """Rows of each document (and step), from one read of the `doc_id`/`position`/`step` columns."""

    def __init__(self, source):
        n = len(source)
        names = [k for k in ("doc_id", "position", "step") if k in source.meta_fields()]
        cols = source.store.read_rows(np.arange(n), names=names) if hasattr(source, "store") else {}
        self.doc = cols.get("doc_id", torch.zeros(0)).long()
        self.pos = cols.get("position", torch.zeros(0)).long()
        self.step = cols.get("step")
        self.n_positions = int(self.pos.max()) + 1 if self.pos.numel() else 0

    def rows(self, doc_id: int, step: int | None) -> torch.Tensor:
        m = self.doc == doc_id
        if step is not None and self.step is not None:
            m &= self.step.long() == step
        return m.nonzero().flatten()


def _heatmap(sae, source, idx: _DocIndex, kind: str, feature: int, ex: dict, grid) -> np.ndarray | None:
    rows = idx.rows(ex["doc_id"], ex.get("step"))
    if grid is None or rows.numel() == 0:
        return None
    got = source.read(rows)
    with torch.inference_mode():
        act = sae.encode(got.acts)[:, feature].float().cpu()
    H = np.full(grid[0] * grid[1], np.nan)
    for p, a in zip(got.position.tolist(), act.tolist()):
        q = patch_index(kind, p)
        if q is not None and q < H.size:
            H[q] = a
    return None if np.isnan(H).mean() > 0.5 else H.reshape(grid)


def add_images(
    doc: dict,
    source,
    out: Path,
    cfg: ImageConfig,
    *,
    kind: str,
    sae=None,
    device=None,
    render: bool = True,
    renderer: Callable[[int, dict], Render] | None = None,
) -> None:
    """Write the image PNGs of every feature of `doc` into `out` and add their fields (see module doc)."""
    from saekit.viz import image_grid as G

    docs = read_documents(source)
    renderer = renderer or renderer_for(kind, source, docs, device=device, regenerate=render)
    idx = _DocIndex(source)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cache: dict[int, Render] = {}
    for key, feat in doc["features"].items():
        f = int(key)
        top = _distinct_top(feat, cfg.n_images)
        entries, tiles = [], []
        for ex in top:
            d = ex["doc_id"]
            if d not in cache:
                cache[d] = renderer(d, docs[d] if 0 <= d < len(docs) else {})
            r = cache[d]
            grid = grid_shape(source.manifest, r, idx.n_positions)
            rel = f"images/doc_{d}.png"
            G.save_rgb(r.pixels, out / rel)
            entries.append(_top_image(ex, docs, rel, kind))
            tiles.append(G.Tile(r.pixels, _label(ex, docs, kind), grid, patch_index(kind, ex["position"])))
        feat["top_images"] = entries
        if not tiles:
            continue
        feat["image_grid"] = G.grid_png(tiles, f"Feature {f}: top images", out / f"feature_{f}_images.png")
        if sae is not None:
            feat["heatmaps"] = _heatmaps(sae, source, idx, kind, f, top[: cfg.n_heatmaps], tiles, out)
        if kind == "diffusion" and feat.get("timesteps"):
            feat["timestep_plot"] = G.timestep_png(feat["timesteps"], f, out / f"feature_{f}_timesteps.png")
        for k in ("image_grid", "timestep_plot"):
            if k in feat:
                feat[k] = str(Path(feat[k]).relative_to(out))


def _heatmaps(sae, source, idx, kind, f, top, tiles, out: Path) -> list[str]:
    from saekit.viz import image_grid as G

    paths = []
    for i, (ex, tile) in enumerate(zip(top, tiles)):
        H = _heatmap(sae, source, idx, kind, f, ex, tile.grid)
        if H is not None:
            p = G.heatmap_png(tile, H, f"feature {f}, {tile.label}", out / f"feature_{f}_heatmap_{i}.png")
            paths.append(str(p.relative_to(out)))
    return paths


def _top_image(ex: dict, docs: list[dict], rel: str, kind: str) -> dict:
    d = ex["doc_id"]
    meta = docs[d] if 0 <= d < len(docs) else {}
    e = {"doc_id": d, "activation": ex["activation"], "image": rel, "position": ex["position"]}
    e["source"] = meta.get("image") or meta.get("prompt") or meta.get("caption")
    for k in ("step", "timestep"):
        if k in ex:
            e[k] = ex[k]
    for k in ("prompt", "seed", "class", "caption"):
        if k in meta:
            e[k] = meta[k]
    return e


def _label(ex: dict, docs: list[dict], kind: str) -> str:
    d = ex["doc_id"]
    meta = docs[d] if 0 <= d < len(docs) else {}
    name = meta.get("class", meta.get("prompt", meta.get("caption", meta.get("image", f"doc {d}"))))
    name = str(name).split("/")[-1][:28]
    where = "CLS" if kind == "clip" and ex["position"] <= 0 else f"patch {patch_index(kind, ex['position'])}"
    step = f", step {ex['step']}" if "step" in ex else ""
    return f"{name}\n{ex['activation']:.3g} ({where}{step})"
