"""BatchTopK SAE (Bussmann et al. 2024): keep the top `k * batch` pre-activations of the whole batch.

Rows may use more or fewer than k latents while the batch average is k. Inference cannot depend on the
batch, so a single JumpReLU-style threshold is estimated during training (running mean of the smallest
kept activation per batch) and saved with the weights as the `threshold` buffer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saekit.sae.output import SAEOutput
from saekit.sae.registry import register
from saekit.sae.topk import TopKFamily


@register
class BatchTopKSAE(TopKFamily):
    arch = "batchtopk"
    threshold_momentum: float = 0.99

    def _init_extra(self, device) -> None:
        # Negative = not estimated yet; inference then falls back to per-row top-k.
        self.register_buffer("threshold", torch.full((), -1.0, dtype=torch.float32, device=device))

    def batch_select(self, pre_BF: Tensor) -> Tensor:
        """Dense latents keeping the top k*B positive pre-activations of the batch."""
        acts = pre_BF.relu()
        flat = acts.flatten()
        n_keep = min(self.k * pre_BF.shape[0], flat.numel())
        vals, idx = flat.topk(n_keep, sorted=False)
        return torch.zeros_like(flat).scatter_(0, idx, vals).reshape(pre_BF.shape)

    def activation(self, pre_BF: Tensor) -> Tensor:
        theta = float(self.threshold)
        if theta < 0:
            vals, idx = pre_BF.topk(self.k, dim=-1, sorted=False)
            return torch.zeros_like(pre_BF).scatter_(-1, idx, vals.relu())
        return pre_BF * (pre_BF > theta)

    @torch.no_grad()
    def update_threshold_(self, latents_BF: Tensor) -> None:
        positive = latents_BF[latents_BF > 0]
        if positive.numel() == 0:
            return
        batch_min = positive.min().float()
        if float(self.threshold) < 0:
            self.threshold.copy_(batch_min)
        else:
            m = self.threshold_momentum
            self.threshold.mul_(m).add_((1 - m) * batch_min)

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> SAEOutput:
        x_n = self._prepare_batch(x)
        pre = self.pre_activation(x_n)
        if self.training:
            latents = self.batch_select(pre)
            self.update_threshold_(latents)
        else:
            latents = self.activation(pre)
        return self.dense_output(x_n, pre, latents, dead_mask)
