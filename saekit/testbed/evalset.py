"""The fixed evaluation generations of the testbed sweep and the keys its results are filed under.

Rows are target-major: every target class with `eval_per_target` noises, conditioned on the null class
or on another digit (never the target); `expand_rows` repeats them over a strength grid.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from saekit.testbed.config import TestbedConfig
from saekit.testbed.data import N_CLASSES, unpatchify
from saekit.testbed.model import NULL_CLASS


class EvalSet(NamedTuple):
    """Fixed noise and conditioning for the sweep; rows are target-major."""

    noise: Tensor
    """`[10 * P, T_img, patch^2]`."""
    source: Tensor
    """`[10 * P]` conditioning class: the null class, or another digit (never the target)."""
    target: Tensor
    """`[10 * P]` target class."""


def make_eval_set(cfg: TestbedConfig) -> EvalSet:
    g = torch.Generator().manual_seed(cfg.seed + 1000)
    P = cfg.eval_per_target
    target = torch.arange(N_CLASSES).repeat_interleave(P)
    if cfg.source == "null":
        source = torch.full_like(target, NULL_CLASS)
    else:
        offset = 1 + torch.arange(P).repeat(N_CLASSES) % (N_CLASSES - 1)
        source = (target + offset) % N_CLASSES
    noise = torch.randn(N_CLASSES * P, cfg.n_image_tokens, cfg.patch**2, generator=g)
    return EvalSet(noise, source, target)


def sae_cache_key(cfg: TestbedConfig) -> str:
    """Folder name for the SAEs: changes whenever the generator, the harvest or the SAE recipe does."""
    import hashlib
    import json

    fields = {
        **cfg.model_key(),
        **{
            k: getattr(cfg, k)
            for k in (
                "sample_steps",
                "guidance",
                "harvest_images",
                "tokens_per_step",
                "sae_expansion",
                "sae_k",
                "sae_steps",
                "sae_batch",
            )
        },
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def strengths_for(cfg: TestbedConfig, unit: str) -> tuple[float, ...]:
    return cfg.abs_strengths if unit == "abs" else cfg.rel_strengths


def config_key(depth: str, stream: str, method: str, unit: str, window: str) -> str:
    return f"{depth}/{stream}/{method}/{unit}/{window}"


def to_images(tokens: Tensor, cfg: TestbedConfig) -> Tensor:
    return unpatchify(tokens, cfg.patch).clamp(-1, 1)


def expand_rows(x: Tensor, S: int, P: int) -> Tensor:
    """`[10P, ...] -> [10*S*P, ...]`, ordered target-major, then strength, then sample."""
    v = x.reshape(N_CLASSES, 1, P, *x.shape[1:]).expand(N_CLASSES, S, P, *x.shape[1:])
    return v.reshape(N_CLASSES * S * P, *x.shape[1:])
