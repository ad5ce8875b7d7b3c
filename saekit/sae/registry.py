"""Architecture name -> SAE class: the one list of architectures everything else reads.

Adding an architecture = one new file in `saekit/sae/` whose class carries `@register`: the registry
imports every module of the package on first use, so no list elsewhere needs editing. Configs
(`SAEConfig`, `TrainConfig`), the loaders and the CLI choices all ask `architectures()` /
`needs_k()`. Registering a second class under a taken name is refused.
"""

from __future__ import annotations

import importlib
import pkgutil

import torch

from saekit.errors import SAEConfigError

_REGISTRY: dict[str, type] = {}
_LOADED = False


def register(cls):
    """Class decorator: make `cls` buildable as `cls.arch`; a name already taken is refused."""
    name = getattr(cls, "arch", "")
    if not isinstance(name, str) or not name:
        raise SAEConfigError(f"{cls.__qualname__} needs a non-empty class attribute `arch` to be registered")
    old = _REGISTRY.get(name)
    if old is not None and _qualname(old) != _qualname(cls):
        raise SAEConfigError(
            f"architecture {name!r} is already registered by {_qualname(old)}; "
            f"pick another `arch` name for {_qualname(cls)}"
        )
    _REGISTRY[name] = cls
    return cls


def _qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_all() -> None:
    """Import every module of `saekit.sae` once, so each file's `@register` has run."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import saekit.sae as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"saekit.sae.{info.name}")


def get_class(arch: str):
    _import_all()
    if arch not in _REGISTRY:
        raise SAEConfigError(f"unknown SAE architecture {arch!r}; choose one of {', '.join(architectures())}")
    return _REGISTRY[arch]


def architectures() -> list[str]:
    """Every registered architecture name, sorted."""
    _import_all()
    return sorted(_REGISTRY)


def needs_k(arch: str) -> bool:
    """True for architectures with a `k` (active latents per row): those whose class defines a `k` "
    "property."""
    return isinstance(getattr(get_class(arch), "k", None), property)


def k_architectures() -> list[str]:
    """The architectures that need k (the TopK family)."""
    return [a for a in architectures() if needs_k(a)]


def build(cfg, device: str | torch.device | None = None, seed: int | None = None):
    """Instantiate (and initialise) an SAE for `cfg` (an `SAEConfig`); `seed` makes the init reproducible."""
    cls = get_class(cfg.arch)
    if seed is None:
        return cls(cfg, device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(cfg, device=device)
