"""Matryoshka SAEs (Bussmann et al. 2025; Nabeshima 2024): nested dictionaries whose prefixes each
reconstruct.

The latents are ordered: for every prefix size m in `cfg.matryoshka` (d_sae last), the first m latents
alone, decoded, must reconstruct the input, and the training loss sums the squared errors of all those
nested reconstructions. Early latents are pushed to carry broad, general directions and later ones the
refinements, which is what counters feature absorption and splitting in a flat SAE. The selection is
the usual one (BatchTopK over the batch, or TopK per row); inference is identical to the flat
architecture, so a Matryoshka SAE loads, evaluates, analyses and steers like any other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saekit.sae.batchtopk import BatchTopKSAE
from saekit.sae.output import SAEOutput
from saekit.sae.registry import register
from saekit.sae.topk import TopKFamily, aux_k_loss


def prefix_sizes(matryoshka: tuple[int, ...] | None, d_sae: int) -> list[int]:
    """The nested sizes, ending at d_sae (None: d_sae/8, /4, /2, d_sae, without repeats or zeros)."""
    sizes = list(matryoshka) if matryoshka else [d_sae // 8, d_sae // 4, d_sae // 2]
    sizes = [m for m in sizes if 0 < m < d_sae] + [d_sae]
    return sorted(set(sizes))


def nested_recon_losses(
    latents_BF: Tensor, W_dec_FD: Tensor, b_dec_D: Tensor, x_BD: Tensor, sizes: list[int]
) -> tuple[Tensor, Tensor]:
    """`(per-prefix losses [len(sizes)], full reconstruction [B, D])`: prefix i decodes latents[:, :m_i].

    One pass over the decoder: each group's partial decode is added to the running reconstruction, so
    the cost is that of a single full decode."""
    recon = b_dec_D.expand_as(x_BD)
    losses = []
    start = 0
    for m in sizes:
        recon = recon + latents_BF[:, start:m] @ W_dec_FD[start:m]
        losses.append((recon - x_BD).pow(2).sum(-1).mean())
        start = m
    return torch.stack(losses), recon


class _Matryoshka:
    """The nested loss, shared by the BatchTopK and TopK selections."""

    nested = True
    transcodes = False  # the nested prefix losses compare with the input (BatchTopK's own flag says True)

    def prefix_sizes(self) -> list[int]:
        return prefix_sizes(self.cfg.matryoshka, self.d_sae)

    def nested_output(self, x_n: Tensor, pre_BF: Tensor, latents_BF: Tensor, dead_mask: Tensor | None):
        """Training output: the summed prefix losses as the reconstruction term, aux-k on the full
        reconstruction's residual (dead latents model what the whole dictionary misses)."""
        losses, recon_n = nested_recon_losses(latents_BF, self.W_dec, self.b_dec, x_n, self.prefix_sizes())
        aux = None
        if dead_mask is not None and self.training:
            residual = x_n - recon_n
            aux = aux_k_loss(pre_BF, residual, dead_mask, self.W_dec, self.k_aux, self.cfg.aux_k_coefficient)
        out = self._output(x_n, recon_n, latents_BF, aux=aux)
        # the recon term is the sum over prefixes (the full one included); total follows it
        total = losses.sum() + out.losses.sparsity + out.losses.aux
        return out._replace(losses=out.losses._replace(recon=losses.sum(), total=total))


@register
class MatryoshkaBatchTopKSAE(_Matryoshka, BatchTopKSAE):
    """BatchTopK selection (k per row on average over the global batch), nested losses."""

    arch = "matryoshka_batchtopk"

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
        return self.nested_output(x_n, pre, latents, dead_mask)


@register
class MatryoshkaTopKSAE(_Matryoshka, TopKFamily):
    """TopK selection (exactly k per row), nested losses. Trains on the dense path (not the sparse kernels:
    every prefix needs its own partial decode)."""

    arch = "matryoshka_topk"

    def activation(self, pre_BF: Tensor) -> Tensor:
        vals, idx = pre_BF.topk(self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre_BF).scatter_(-1, idx, vals.relu())

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> SAEOutput:
        x_n = self._prepare_batch(x)
        pre = self.pre_activation(x_n)
        return self.nested_output(x_n, pre, self.activation(pre), dead_mask)
