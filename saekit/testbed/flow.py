"""Rectified flow: `x_t = (1 - t) x0 + t noise`, the model predicts `v = noise - x0`; Euler sampler
with classifier-free guidance and a per-step, per-branch edit callback (where steering plugs in)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.testbed.model import NULL_CLASS, FlowTransformer


class StepContext(NamedTuple):
    """What an edit callback knows about the current model call."""

    step: int
    """Denoising step index, 0 = first (pure noise)."""
    t: float
    """Flow time of this step (1 = noise, 0 = data)."""
    branch: str
    """"cond" or "uncond" (classifier-free guidance branch)."""


Edit = Callable[[StepContext, str, str, Tensor], Tensor]
"""`edit(ctx, block_name, stream, x [B, T, d]) -> x'`."""


def flow_loss(
    model: FlowTransformer, x0_BTP: Tensor, y_B: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Mean squared velocity error at uniformly drawn t."""
    B = x0_BTP.shape[0]
    t = torch.rand(B, generator=generator)
    noise = torch.randn(x0_BTP.shape, generator=generator)
    x_t = (1 - t)[:, None, None] * x0_BTP + t[:, None, None] * noise
    v = model(x_t, t, y_B)
    return (v - (noise - x0_BTP)).pow(2).mean()


def timesteps(n_steps: int) -> list[float]:
    """`n_steps + 1` times from 1 (noise) down to 0 (data)."""
    return [1.0 - i / n_steps for i in range(n_steps + 1)]


@torch.no_grad()
def velocity(
    model: FlowTransformer,
    x_BTP: Tensor,
    t: float,
    y_B: Tensor,
    guidance: float,
    step: int,
    edit: Edit | None = None,
) -> Tensor:
    """Guided velocity; conditional and unconditional branches run as one batch `[cond; uncond]`."""
    B = x_BTP.shape[0]
    t_B = torch.full((2 * B,), t)
    y2 = torch.cat([y_B, torch.full_like(y_B, NULL_CLASS)])
    tap = None
    if edit is not None:
        ctx_c, ctx_u = StepContext(step, t, "cond"), StepContext(step, t, "uncond")

        def tap(name: str, stream: str, x: Tensor) -> Tensor:
            return torch.cat([edit(ctx_c, name, stream, x[:B]), edit(ctx_u, name, stream, x[B:])])

    v = model(torch.cat([x_BTP, x_BTP]), t_B, y2, tap=tap)
    v_c, v_u = v[:B], v[B:]
    return v_u + guidance * (v_c - v_u)


@torch.no_grad()
def sample(
    model: FlowTransformer,
    noise_BTP: Tensor,
    y_B: Tensor,
    *,
    steps: int,
    guidance: float,
    edit: Edit | None = None,
    start_step: int = 0,
    x_start: Tensor | None = None,
    keep_trajectory: bool = False,
) -> tuple[Tensor, list[Tensor]]:
    """Euler-integrate from `noise` (or `x_start` at `start_step`) to t=0.

    Returns the final tokens and, with `keep_trajectory`, the state *before* every step (so a
    steered run whose window starts at step k can resume from the unsteered state at k).
    """
    ts = timesteps(steps)
    x = noise_BTP if x_start is None else x_start
    traj: list[Tensor] = []
    for i in range(start_step, steps):
        if keep_trajectory:
            traj.append(x.clone())
        v = velocity(model, x, ts[i], y_B, guidance, i, edit)
        x = x + (ts[i + 1] - ts[i]) * v
    return x, traj
