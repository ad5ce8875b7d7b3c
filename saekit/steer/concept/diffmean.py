"""DiffMean baseline and contrastive feature choice, from activations on concept vs other texts.

DiffMean (AxBench's strongest representation baseline): `u = mean(acts | concept) − mean(acts | other)`,
added along its unit direction with the same strength grid as the SAE methods. The SAE feature for a
concept is chosen by the same contrast in latent space: `argmax_j mean f_j(concept) − mean f_j(other)`,
so SAE methods and DiffMean start from the same evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.steer.corpus_acts import iter_window_acts, token_windows


class FeatureChoice(NamedTuple):
    """The picked feature and the evidence for it."""

    feature: int
    contrast: float
    """Mean activation on concept texts minus on other texts."""
    freq_concept: float
    """Fraction of concept tokens where the feature fires."""


@torch.no_grad()
def text_activations(
    model, tokenizer, hook_point: str, texts: Sequence[str], *, context_len: int = 64, batch_size: int = 16
) -> Tensor:
    """All (non-first) token activations `[n, d]` float32 of `texts` at `hook_point`."""
    chunks = list(
        iter_window_acts(
            model, hook_point, token_windows(tokenizer, texts, context_len), batch_size=batch_size
        )
    )
    if not chunks:
        raise SteeringError("no token activations: the texts are empty")
    return torch.cat(chunks)


def diffmean_direction(acts_pos_ND: Tensor, acts_neg_ND: Tensor) -> Tensor:
    """`mean(pos) − mean(neg)` `[d]` (unnormalised; steering normalises)."""
    if acts_pos_ND.shape[-1] != acts_neg_ND.shape[-1]:
        raise SteeringError(f"DiffMean: d mismatch {acts_pos_ND.shape[-1]} vs {acts_neg_ND.shape[-1]}")
    return acts_pos_ND.float().mean(0) - acts_neg_ND.float().mean(0)


@torch.no_grad()
def pick_feature(sae, acts_pos_ND: Tensor, acts_neg_ND: Tensor, exclude: Sequence[int] = ()) -> FeatureChoice:
    """The feature with the largest mean-activation contrast between concept and other tokens."""
    f_pos = sae.encode(acts_pos_ND.to(sae.dtype)).float()
    f_neg = sae.encode(acts_neg_ND.to(sae.dtype)).float()
    contrast = f_pos.mean(0) - f_neg.mean(0)
    if exclude:
        contrast[list(exclude)] = float("-inf")
    j = int(contrast.argmax())
    return FeatureChoice(j, float(contrast[j]), float((f_pos[:, j] != 0).float().mean()))
