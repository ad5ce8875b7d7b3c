"""Named outputs of an SAE forward pass (never positional tuples of mystery tensors)."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class LossTerms(NamedTuple):
    """Training losses, all scalars, computed in the SAE's normalised space.

    `total` is what the trainer back-propagates: recon + sparsity + aux, each already weighted.
    """

    recon: Tensor
    """Mean over rows of the squared reconstruction error summed over d_in."""
    sparsity: Tensor
    """Weighted sparsity penalty (0 for topk/batchtopk)."""
    aux: Tensor
    """Weighted auxiliary loss (aux-k for topk family, frozen-decoder loss for gated; else 0)."""
    total: Tensor


class SparseLatents(NamedTuple):
    """The k active latents of each row: `values [batch, k]`, `indices [batch, k]` (int64)."""

    values: Tensor
    indices: Tensor


class SAEOutput(NamedTuple):
    """Result of `SAE.forward(x)` for `x [batch, d_in]`."""

    recon: Tensor
    """Reconstruction in the input's (raw) units, `[batch, d_in]`."""
    latents: Tensor | None
    """Dense latent activations `[batch, d_sae]`; None on the TopK sparse fast path."""
    sparse: SparseLatents | None
    """`(values, indices)` for the TopK family; None for dense architectures."""
    losses: LossTerms
    """Training losses (see `LossTerms`)."""
    l0: Tensor
    """Mean number of non-zero latents per row (scalar)."""
    fired: Tensor
    """Boolean `[d_sae]`: which latents were non-zero on at least one row of this batch."""
