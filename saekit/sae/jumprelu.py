"""JumpReLU SAE (Rajamanoharan et al. 2024, Gemma Scope): `f = z * H(z - theta)` per latent.

The step function has zero gradient almost everywhere, so the threshold is trained with a
straight-through estimator: the derivative of the Heaviside step is replaced by a rectangle kernel of
width `bandwidth` (epsilon) around the threshold. The sparsity penalty is a (pseudo-)L0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from saekit.sae.base import SAE
from saekit.sae.output import SAEOutput
from saekit.sae.registry import register


def _rectangle(u: Tensor) -> Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class StepSTE(torch.autograd.Function):
    """H(z - theta); d/dtheta ~= -K((z - theta)/eps)/eps, no gradient to z."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = -(_rectangle((z - theta) / eps) / eps * grad_out).sum(0)
        return None, grad_theta, None


class JumpReLUSTE(torch.autograd.Function):
    """z * H(z - theta); d/dz = H(z - theta), d/dtheta ~= -(theta/eps) K((z - theta)/eps)."""

    @staticmethod
    def forward(ctx, z: Tensor, theta: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad_out * (z > theta).to(z.dtype)
        grad_theta = -(theta / eps * _rectangle((z - theta) / eps) * grad_out).sum(0)
        return grad_z, grad_theta, None


@register
class JumpReLUSAE(SAE):
    arch = "jumprelu"
    transcodes = True

    def _init_extra(self, device) -> None:
        self.log_threshold = nn.Parameter(
            torch.full(
                (self.cfg.d_sae,),
                math.log(self.cfg.jumprelu_init_threshold),
                dtype=self.cfg.torch_dtype,
                device=device,
            )
        )

    def _post_reset_(self) -> None:
        self.log_threshold.data.fill_(math.log(self.cfg.jumprelu_init_threshold))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activation(self, pre_BF: Tensor) -> Tensor:
        return pre_BF * (pre_BF > self.threshold)

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
        theta = self.threshold
        bw = self.cfg.jumprelu_bandwidth
        latents = JumpReLUSTE.apply(pre, theta, bw)
        recon_n = self.with_skip(self.decode_normalized(latents), x_n)
        l0 = StepSTE.apply(pre, theta, bw).sum(-1).mean()
        sparsity = self.cfg.sparsity_coefficient * sparsity_scale * l0
        return self._output(y_n, recon_n, latents, sparsity=sparsity)
