"""Signed TopK SAEs: latents may be negative, a non-zero latent is active.

- `topk_abs` (VSAETopK, a dictionary_learning fork): keep the k pre-activations largest in absolute
  value, with their sign.
- `topk_signed` (OSU-NLP-Group/saev `TopK`, OpenAI TopK with an `Identity` post-activation): keep the
  k largest pre-activations as they are, without a ReLU, so a kept value can be negative.

Both decode through the dense path (`latents @ W_dec + b_dec`); they are mainly imported for inference,
and their training pass is the plain dense one with the aux-k loss on dead latents.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saekit.sae.output import SAEOutput
from saekit.sae.registry import register
from saekit.sae.topk import TopKFamily


class _SignedTopK(TopKFamily):
    signed_latents = True

    def _indices(self, pre_BF: Tensor) -> Tensor:
        raise NotImplementedError

    def activation(self, pre_BF: Tensor) -> Tensor:
        idx = self._indices(pre_BF)
        return torch.zeros_like(pre_BF).scatter_(-1, idx, pre_BF.gather(-1, idx))

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> SAEOutput:
        x_n = self._prepare_batch(x)
        pre = self.pre_activation(x_n)
        return self.dense_output(x_n, pre, self.activation(pre), dead_mask)


@register
class TopKAbsSAE(_SignedTopK):
    """Top-k by |pre-activation|, sign kept (VSAETopK inference with the mean latent)."""

    arch = "topk_abs"

    def _indices(self, pre_BF: Tensor) -> Tensor:
        return pre_BF.abs().topk(self.k, dim=-1, sorted=False).indices


@register
class TopKSignedSAE(_SignedTopK):
    """Top-k by value, no ReLU (saev TopK): a kept pre-activation may be negative."""

    arch = "topk_signed"

    def _indices(self, pre_BF: Tensor) -> Tensor:
        return pre_BF.topk(self.k, dim=-1, sorted=False).indices
