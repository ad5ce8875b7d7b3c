"""Shared fixtures for the SAE tests: tiny configs and synthetic sparse data with a known dictionary."""

from __future__ import annotations

import pytest
import torch

from saekit.sae import SAEConfig, build
from saekit.sae.registry import architectures, get_class, needs_k

# one thread: the CI box is shared, and two OpenMP threads stall on every tiny op when a core is busy
torch.set_num_threads(1)

#: every registered architecture: a new one is covered by the property tests without editing them
ARCHS = tuple(architectures())


def make_cfg(arch: str, d_in: int = 8, d_sae: int = 16, k: int = 3, **kw) -> SAEConfig:
    """A small config for `arch`; `k` is only passed to the TopK family."""
    if needs_k(arch):
        kw.setdefault("k", k)
    return SAEConfig(d_in=d_in, d_sae=d_sae, arch=arch, **kw)


def capability(arch: str, name: str):
    """A class-level capability of a registered architecture (e.g. `signed_latents`)."""
    return getattr(get_class(arch), name)


def make_sae(arch: str, seed: int = 0, **kw):
    return build(make_cfg(arch, **kw), seed=seed)


def sparse_data(n: int, d_in: int, n_feat: int, active: int, seed: int = 0, dict_seed: int = 0):
    """`x = codes @ D` with unit dictionary rows D `[n_feat, d_in]` (fixed by `dict_seed`) and `active`
    non-zeros per row with magnitudes in [1, 2) (drawn from `seed`)."""
    D = torch.randn(n_feat, d_in, generator=torch.Generator().manual_seed(10_000 + dict_seed))
    D = D / D.norm(dim=-1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(n, n_feat, generator=g).argsort(-1)[:, :active]
    mags = 1.0 + torch.rand(n, active, generator=g)
    codes = torch.zeros(n, n_feat).scatter_(1, idx, mags)
    return codes @ D, D, codes


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param
