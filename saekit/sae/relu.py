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
    transcodes = True

    def activation(self, pre_BF: Tensor) -> Tensor:
        return pre_BF.relu()

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
        latents = self.activation(self.pre_activation(x_n))
        recon_n = self.with_skip(self.decode_normalized(latents), x_n)
        l1 = (latents * self.decoder_norms()).sum(-1).mean()
        sparsity = self.cfg.sparsity_coefficient * sparsity_scale * l1
        return self._output(y_n, recon_n, latents, sparsity=sparsity)
