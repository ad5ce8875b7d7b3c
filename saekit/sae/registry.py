"""Architecture name -> SAE class. Adding an architecture = one file + `@register`."""

from __future__ import annotations

import torch

from saekit.errors import SAEConfigError
from saekit.sae.config import SAEConfig

_REGISTRY: dict[str, type] = {}


def register(cls):
    _REGISTRY[cls.arch] = cls
    return cls


def get_class(arch: str):
    _import_all()
    if arch not in _REGISTRY:
        raise SAEConfigError(f"unknown SAE architecture {arch!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[arch]


def build(cfg: SAEConfig, device: str | torch.device | None = None, seed: int | None = None):
    """Instantiate (and initialise) an SAE for `cfg`; `seed` makes the init reproducible."""
    cls = get_class(cfg.arch)
    if seed is None:
        return cls(cfg, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(cfg, device=device)


def architectures() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def _import_all() -> None:
    from saekit.sae import batchtopk, gated, jumprelu, relu, topk  # noqa: F401
