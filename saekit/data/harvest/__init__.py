"""`harvest(cfg)`: run a model over its inputs and store activations, one small driver per model kind.

- `LMHarvestConfig` -> `harvest_lm`: language models / encoders over a text corpus, one or many hook
  points per forward pass.
- `ClipHarvestConfig` -> `harvest_clip`: CLIP embeddings at a site over images or captions.
- `DiffusionHarvestConfig` -> `harvest_diffusion`: FLUX-style diffusers transformers, sampled over
  the denoising loop.

All three share `StoreOptions` (the store flags), the one drive loop (`drive.py`: resume, exact row
cut, torchrun ranks, host copies) and the one manifest builder (`common.py`).
"""

from __future__ import annotations

from saekit.data.harvest.clip import ClipHarvestConfig, harvest_clip, parse_clip_site
from saekit.data.harvest.common import StoreOptions
from saekit.data.harvest.diffusion import DiffusionHarvestConfig, harvest_diffusion
from saekit.data.harvest.lm import LMHarvestConfig, harvest_lm

HarvestConfig = LMHarvestConfig | ClipHarvestConfig | DiffusionHarvestConfig
KINDS = {"lm": LMHarvestConfig, "clip": ClipHarvestConfig, "diffusion": DiffusionHarvestConfig}
"""Subcommand name -> config class (`saekit harvest lm|clip|diffusion`)."""


def kind_of_model(model: str) -> str:
    """The harvest kind for a `--model` value: lm, clip or diffusion (reads only small JSON files)."""
    from saekit.models.load import model_kind

    return {"lm": "lm", "clip": "clip", "diffusers": "diffusion"}[model_kind(model)]


def harvest_stores(cfg: HarvestConfig, *, loaded=None) -> list:
    """Run the driver of `cfg`'s kind; one opened ActivationStore per hook point."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if isinstance(cfg, LMHarvestConfig):
        return harvest_lm(cfg, loaded=loaded)
    if isinstance(cfg, ClipHarvestConfig):
        return [harvest_clip(cfg, loaded=loaded)]
    return [harvest_diffusion(cfg, loaded=loaded)]


def harvest(cfg: HarvestConfig, *, loaded=None):
    """Harvest as configured: the opened ActivationStore (a list of them for several hook points).

    `loaded` (a LoadedModel, LoadedClip or diffusers pipeline) skips loading `cfg.model`.
    """
    stores = harvest_stores(cfg, loaded=loaded)
    return stores[0] if len(stores) == 1 else stores


__all__ = [
    "KINDS",
    "ClipHarvestConfig",
    "DiffusionHarvestConfig",
    "HarvestConfig",
    "LMHarvestConfig",
    "StoreOptions",
    "harvest",
    "harvest_clip",
    "harvest_diffusion",
    "harvest_lm",
    "harvest_stores",
    "kind_of_model",
    "parse_clip_site",
]
