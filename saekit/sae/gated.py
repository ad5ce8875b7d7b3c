"""Gated SAE (Rajamanoharan et al. 2024): separate *which* latents fire from *how strongly*.

gate:       pi_gate = (x - b_dec) W_enc + b_enc            -> f fires where pi_gate > 0
magnitude:  pi_mag  = (x - b_dec) (W_enc * exp(r_mag)) + b_mag
latents:    f = 1[pi_gate > 0] * relu(pi_mag)
The L1 penalty acts on relu(pi_gate) only (so magnitudes do not shrink), and an auxiliary loss
reconstructs x from relu(pi_gate) through a frozen copy of the decoder so the gate path gets gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from saekit.sae.base import SAE
from saekit.sae.output import SAEOutput
from saekit.sae.registry import register


@register
class GatedSAE(SAE):
    arch = "gated"

    def _init_extra(self, device) -> None:
        dt = self.cfg.torch_dtype
        self.r_mag = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=dt, device=device))
        self.b_mag = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=dt, device=device))

    def _post_reset_(self) -> None:
        self.r_mag.data.zero_()
        self.b_mag.data.zero_()

    def _paths(self, x_n_BD: Tensor) -> tuple[Tensor, Tensor]:
        centered = x_n_BD - self.b_dec
        pi_gate = centered @ self.W_enc + self.b_enc
        pi_mag = centered @ (self.W_enc * self.r_mag.exp()) + self.b_mag
        return pi_gate, pi_mag

    def pre_activation(
        self, x_BD: Tensor, features: Tensor | list[int] | None = None, *, raw: bool = False
    ) -> Tensor:
        """The magnitude path `pi_mag`: the value a latent takes where its gate is open."""
        if raw:
            self.check_input(x_BD)
            x_BD = self.normalize_input(x_BD)
        W, b = self.W_enc * self.r_mag.exp(), self.b_mag
        if features is not None:
            f = torch.as_tensor(features, dtype=torch.long, device=W.device).reshape(-1)
            W, b = W[:, f], b[f]
        return (x_BD - self.b_dec) @ W + b

    def encode_normalized(self, x_n_BD: Tensor) -> Tensor:
        pi_gate, pi_mag = self._paths(x_n_BD)
        return (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()

    def activation(self, pre_BF: Tensor) -> Tensor:  # pragma: no cover - encode_normalized is used
        raise NotImplementedError("GatedSAE latents need the magnitude path; use encode()")

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> SAEOutput:
        x_n = self._prepare_batch(x)
        pi_gate, pi_mag = self._paths(x_n)
        latents = (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()
        recon_n = self.decode_normalized(latents)
        gate_acts = pi_gate.relu()
        l1 = (gate_acts * self.decoder_norms()).sum(-1).mean()
        sparsity = self.cfg.sparsity_coefficient * sparsity_scale * l1
        via_gate = gate_acts @ self.W_dec.detach() + self.b_dec.detach()
        aux = (via_gate - x_n).pow(2).sum(-1).mean()
        return self._output(x_n, recon_n, latents, sparsity=sparsity, aux=aux)
