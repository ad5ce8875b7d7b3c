"""BatchTopK SAE (Bussmann et al. 2024): keep the top `k * batch` pre-activations of the whole batch.

Rows may use more or fewer than k latents while the batch average is k. Inference cannot depend on the
batch, so a single JumpReLU-style threshold is estimated during training (running mean of the smallest
kept activation per batch) and saved with the weights as the `threshold` buffer.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from saekit.sae.output import SAEOutput
from saekit.sae.registry import register
from saekit.sae.topk import TopKFamily


class BatchGroup(Protocol):
    """The collectives a global-batch selection needs over data-parallel ranks (torchrun); the trainer
    binds one (`saekit.train.distributed.RankGroup`), so this file never imports `torch.distributed`."""

    world: int
    """Number of ranks; each holds an equal share of the global batch."""

    def cat(self, t: Tensor) -> Tensor:
        """Every rank's `t` (same shape on each), concatenated along dim 0 in rank order."""
        ...

    def min(self, t: Tensor) -> Tensor:
        """The element-wise minimum of `t` over ranks."""
        ...


def batch_threshold(acts_flat: Tensor, n_keep: int, group: BatchGroup | None = None) -> Tensor:
    """The `n_keep`-th largest value of the whole batch (0-d), from this rank's part `acts_flat`.

    Exact under data parallelism: the global top `n_keep` holds at most `n_keep` values of any one
    rank, so each rank's own top `n_keep` (gathered) contains it. With one process it is the value
    `flat.topk(n_keep)` would stop at, so a run gives the same selection for any number of ranks.
    """
    local = acts_flat.topk(min(n_keep, acts_flat.numel()), sorted=False).values
    if group is not None:
        local = group.cat(local)
    return local.topk(min(n_keep, local.numel()), sorted=False).values.min()


@register
class BatchTopKSAE(TopKFamily):
    arch = "batchtopk"
    batch_dependent = True
    transcodes = True
    threshold_momentum: float = 0.99
    #: data-parallel ranks to select over (None: this process's batch is the whole batch)
    _batch_group: BatchGroup | None = None

    def _init_extra(self, device) -> None:
        # Negative = not estimated yet; inference then falls back to per-row top-k.
        self.register_buffer("threshold", torch.full((), -1.0, dtype=torch.float32, device=device))

    def bind_batch_group(self, group: BatchGroup | None) -> None:
        """Select over the global batch of a torchrun job: training rows on this rank are a share of it."""
        self._batch_group = group

    def batch_select(self, pre_BF: Tensor) -> Tensor:
        """Dense latents keeping the top k*B positive pre-activations of the (global) batch of B rows.

        Values tied with the k*B-th are all kept (a tie is measure-zero in float training; keeping all
        makes the selection the same however the batch is split over ranks)."""
        acts = pre_BF.relu()
        group = self._batch_group
        world_rows = pre_BF.shape[0] * (1 if group is None else group.world)  # equal shares per rank
        theta = batch_threshold(acts.detach().flatten(), self.k * world_rows, self._batch_group)
        return acts * (acts >= theta)

    def activation(self, pre_BF: Tensor) -> Tensor:
        theta = float(self.threshold)
        if theta < 0:
            vals, idx = pre_BF.topk(self.k, dim=-1, sorted=False)
            return torch.zeros_like(pre_BF).scatter_(-1, idx, vals.relu())
        return pre_BF * (pre_BF > theta)

    @torch.no_grad()
    def update_threshold_(self, latents_BF: Tensor) -> None:
        positive = latents_BF[latents_BF > 0]
        batch_min = positive.min().float() if positive.numel() else torch.tensor(float("inf"))
        if self._batch_group is not None:  # the smallest kept activation of the global batch
            batch_min = self._batch_group.min(batch_min.reshape(1).to(latents_BF.device))[0]
        if not torch.isfinite(batch_min):
            return
        if float(self.threshold) < 0:
            self.threshold.copy_(batch_min)
        else:
            m = self.threshold_momentum
            self.threshold.mul_(m).add_((1 - m) * batch_min)

    def forward(
        self,
        x: Tensor,
        *,
        target: Tensor | None = None,
        dead_mask: Tensor | None = None,
        sparsity_scale: float = 1.0,
    ) -> SAEOutput:
        """Training forward; a transcoder is given `target` (the module's output rows) and predicts it."""
        x_n, y_n = self._prepare_pair(x, target)
        pre = self.pre_activation(x_n)
        if self.training:
            latents = self.batch_select(pre)
            self.update_threshold_(latents)
        else:
            latents = self.activation(pre)
        return self.dense_output(x_n, pre, latents, dead_mask, y_n)
