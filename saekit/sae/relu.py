"""Standard ReLU SAE with an L1 penalty weighted by decoder row norms (Anthropic, April 2024 update).

Weighting by ||W_dec_j|| stops the optimiser from shrinking latents while growing decoder rows, so the
penalty is meaningful even without a unit-norm constraint.
"""

from __future__ import annotations

from torch import Tensor

from saekit.sae.base import SAE
from saekit.sae.output import SAEOutput
from saekit.sae.registry import register


@register
class ReLUSAE(SAE):
    arch = "relu"
    revival = "resample_dead"

    def activation(self, pre_BF: Tensor) -> Tensor:
        return pre_BF.relu()

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> SAEOutput:
        x_n = self._prepare_batch(x)
        latents = self.activation(self.pre_activation(x_n))
        recon_n = self.decode_normalized(latents)
        l1 = (latents * self.decoder_norms()).sum(-1).mean()
        sparsity = self.cfg.sparsity_coefficient * sparsity_scale * l1
        return self._output(x_n, recon_n, latents, sparsity=sparsity)
