"""Copy the PNGs an analysis refers to into the site, so the site opens anywhere on its own.

analysis.json image fields (see PREAMBLE convention): per feature `image_grid` (a path relative to the
analysis folder), `heatmaps` (a list of such paths), `timestep_plot` (a path) and `top_images`
(`[{doc_id, activation, image, position, ...}]`, where `image` is a file path or `skimage:NAME`).
A referenced file that is missing, or is not an image, is dropped and reported, never copied.
A `skimage:NAME` reference (scikit-image's bundled samples, as a CLIP store's documents.json names
them) is rendered to a PNG in the site, so the page shows the picture, not its name.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp"}


class ImageCopier:
    """Copies images into `site/img/` once each, under names derived from their content path."""

    def __init__(self, analysis_dir: Path, site_dir: Path) -> None:
        self.analysis_dir = Path(analysis_dir)
        self.img_dir = Path(site_dir) / "img"
        self.done: dict[Path, str] = {}
        self.missing: list[str] = []

    def copy(self, ref: str | None) -> str | None:
        """Site-relative path of the copied image, or None when `ref` names no image file."""
        if not ref or not isinstance(ref, str):
            return None
        if ref.startswith("skimage:"):
            return self._skimage(ref)
        src = Path(ref)
        if not src.is_absolute():
            src = self.analysis_dir / src
        src = src.resolve()
        if src.suffix.lower() not in IMAGE_SUFFIXES or not src.is_file():
            self.missing.append(ref)
            return None
        if src not in self.done:
            tag = hashlib.sha1(str(src).encode()).hexdigest()[:10]
            name = f"{tag}{src.suffix.lower()}"
            self.img_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, self.img_dir / name)
            self.done[src] = f"img/{name}"
        return self.done[src]

    def _skimage(self, ref: str) -> str | None:
        """Render scikit-image sample `skimage:NAME` into `img/skimage_NAME.png` (once)."""
        name = ref.split(":", 1)[1]
        key = Path(f"skimage_{name}.png")
        if key in self.done:
            return self.done[key]
        if not name.isidentifier() or name.startswith("_"):
            self.missing.append(ref)
            return None
        try:
            from PIL import Image

            from saekit.analysis.image_render import load_clip_image

            pixels = load_clip_image(ref)
        except (ImportError, AttributeError, TypeError, ValueError, OSError):
            self.missing.append(ref)
            return None
        self.img_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(self.img_dir / key)
        self.done[key] = f"img/{key}"
        return self.done[key]

    def feature_images(self, feature: dict) -> dict:
        """The feature's image fields with every path replaced by its copy in the site."""
        out: dict = {}
        if feature.get("image_grid"):
            out["image_grid"] = self.copy(feature["image_grid"])
        if feature.get("heatmaps"):
            out["heatmaps"] = [p for p in (self.copy(h) for h in feature["heatmaps"]) if p]
        if feature.get("timestep_plot"):
            out["timestep_plot"] = self.copy(feature["timestep_plot"])
        if feature.get("top_images"):
            out["top_images"] = [
                {**im, "image_src": self.copy(im.get("image")), "image": str(im.get("image", ""))}
                for im in feature["top_images"]
            ]
        return out
