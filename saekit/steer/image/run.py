"""Steer an image generator with SAE features: the same seed, unsteered and steered, side by side.

One config (`ImageSteerConfig`), one entry (`steer_image`), three ways to steer:
- FLUX in the denoising loop (default): any steering method at a hook point and stream, on a window
  of denoising steps, on the conditional CFG branch (`--branch` for true CFG); see
  `saekit.steer.image.flux` and `saekit.steer.image.diffusion`.
- FLUX conditioning (`--conditioning pooled|text|both`): edit the pooled CLIP prompt vector and/or the
  per-token text embeddings before the loop, with a CLIP-text SAE (the gytdau recipe,
  `saekit.steer.image.conditioning`).
- Kandinsky 2.2 (`--model <decoder> --prior <prior>`): edit the CLIP image embedding the prior emits
  before the decoder renders it; `saekit.steer.image.kandinsky`.
Which generator runs follows from the pipeline (model_index.json's class, or the name), and `--model`
defaults to the SAE's provenance. `steer_target` is how `saekit steer` decides between this path and
the language-model path, from values, never from argv.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from saekit.errors import SteeringError
from saekit.steer.image.config import ImageSteerConfig, ImageSteerResult


def is_image_model(name_or_path: str | None) -> bool:
    """True for diffusers pipelines (a folder with model_index.json, a FLUX or Kandinsky name): models
    that generate images. CLIP alone generates nothing."""
    if not name_or_path:
        return False
    from saekit.models.load import model_kind

    return model_kind(name_or_path) == "diffusers"


def sae_provenance_model(sae: str | Path | None) -> str | None:
    """The model recorded in a native SAE folder's config.json (`config.provenance.model`), read
    without loading weights; None for other formats or when absent."""
    if not sae:
        return None
    path = Path(sae) / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    cfg = data.get("config") if isinstance(data.get("config"), dict) else data
    prov = cfg.get("provenance")
    return prov.get("model") if isinstance(prov, dict) else None


def steer_target(model: str | None, sae: str | None, prior: str | None = None) -> Literal["image", "lm"]:
    """Which `saekit steer` path serves these values: a Kandinsky prior or a diffusers `model` (given,
    or else the SAE's provenance model) -> "image"; anything else -> "lm"."""
    if prior:
        return "image"
    return "image" if is_image_model(model or sae_provenance_model(sae)) else "lm"


def _pipeline_family(cfg: ImageSteerConfig, pipe) -> str:
    from saekit.models.kandinsky import Kandinsky
    from saekit.models.load import pipeline_family

    if pipe is not None:
        return "kandinsky_decoder" if isinstance(pipe, Kandinsky) else "flux"
    if cfg.model is None:
        raise SteeringError(
            f"no --model given and the SAE {cfg.sae} records no provenance model; pass --model "
            "(a FLUX pipeline, or the Kandinsky 2.2 decoder with --prior)"
        )
    family = "kandinsky_decoder" if cfg.prior is not None else pipeline_family(cfg.model)
    if family == "kandinsky_prior":
        raise SteeringError(
            f"--model {cfg.model} is the Kandinsky 2.2 prior; pass the decoder as --model and the prior "
            "as --prior"
        )
    return family


def steer_image(cfg: ImageSteerConfig, *, pipe=None) -> ImageSteerResult:
    """Generate unsteered and steered images from the same seed and save them side by side.

    `pipe` (optional, for reuse and tests): an already loaded FluxPipeline, or a
    `saekit.models.kandinsky.Kandinsky` (prior, decoder) pair.
    """
    import dataclasses

    import saekit
    from saekit.device import resolve_device

    if not cfg.feature and not cfg.concept:
        raise SteeringError("give --feature (one or more SAE feature ids) or --concept WORDS")
    if cfg.feature and cfg.concept:
        raise SteeringError("give --feature or --concept, not both")
    if cfg.model is None and pipe is None:
        cfg = dataclasses.replace(cfg, model=sae_provenance_model(cfg.sae))
    family = _pipeline_family(cfg, pipe)
    dev = resolve_device(cfg.device)
    sae = saekit.load(cfg.sae, device=dev).eval()
    if family.startswith("kandinsky"):
        from saekit.steer.image.kandinsky import steer_kandinsky

        if cfg.concept:
            raise SteeringError("--concept is FLUX-only for now; give Kandinsky --feature ids")

        return steer_kandinsky(cfg, sae, dev, pipes=pipe)
    from saekit.steer.image.flux import steer_flux

    return steer_flux(cfg, sae, dev, pipe=pipe)
