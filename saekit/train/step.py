"""One optimiser step of SAE training, phase by phase, and the optimiser it uses.

Forward (with the dead mask for aux-k and the sparsity warm-up scale), backward, average the gradients
over ranks, project the decoder gradient, Adam, renormalise the decoder (the decoder's three in one pass
where the C kernel can: train/fused_decoder.py), update the dead-latent counters.
Each phase runs under a `torch.profiler.record_function` label (`saekit.<phase>`), so a profile of the
trainer's own step (`benchmarks/train_profile.py`) splits it without a second copy of the loop; with no
profiler running a label costs about a microsecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.profiler import record_function

from saekit.device import autocast
from saekit.errors import NonFiniteError
from saekit.train import distributed as dd
from saekit.train.dead import DeadLatentTracker
from saekit.train.dense_adam import DenseLayoutAdam
from saekit.train.fused_decoder import decoder_step_

#: the labels of the phases, in step order (the profile benchmark reads them)
PHASES = ("forward", "backward", "gradient sync", "decoder step (fused)", "decoder projection", "optimiser",
          "decoder renorm", "dead tracking")  # fmt: skip


@dataclass
class RunState:
    """The mutable state of one run: what the checkpoint saves, plus the step."""

    sae: Any
    opt: torch.optim.Optimizer
    tracker: DeadLatentTracker
    gen: torch.Generator
    step: int


def make_optimizer(params, lr: float, betas: tuple[float, float], eps: float) -> torch.optim.Optimizer:
    """Adam, fused where this torch build offers it for the parameters' device (one kernel per step
    instead of a handful per tensor), else the default implementation; the update rule is the same.
    `DenseLayoutAdam` gives the kernels the latent-major encoder in memory order (train/dense_adam.py)."""
    params = list(params)
    try:
        return DenseLayoutAdam(params, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return DenseLayoutAdam(params, lr=lr, betas=betas, eps=eps)


@dataclass(frozen=True)
class StepSettings:
    """What a step needs besides the state: fixed for a run, or recomputed per step by the trainer."""

    lr: float
    sparsity_scale: float
    use_dead_mask: bool
    normalize_decoder: bool
    autocast_dtype: torch.dtype | None
    batch_size: int
    """Global rows per step (the dead counters count the whole batch on every rank)."""


def check_finite_loss(loss: Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteError(
            f"training loss became {float(loss)} at step {step}; lower --lr, check the activations "
            "for NaN/inf, or use --normalization expected_norm"
        )


def train_step(run: RunState, forward, x: Tensor, s: StepSettings, dist: dd.DistContext, device):
    """One optimiser step on this rank's share `x` of the global batch; returns the SAE output."""
    for group in run.opt.param_groups:
        group["lr"] = s.lr * group.get("lr_scale", 1.0)
    sae = run.sae
    with record_function("saekit.forward"), autocast(device, s.autocast_dtype):
        dead = run.tracker.dead_mask if s.use_dead_mask else None
        out = forward(x, dead_mask=dead, sparsity_scale=s.sparsity_scale)
    loss = out.losses.total
    check_finite_loss(loss, run.step)
    with record_function("saekit.backward"):
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
    with record_function("saekit.gradient sync"):
        dd.average_gradients_(list(sae.parameters()), dist)
    fused = False
    if s.normalize_decoder:
        with record_function("saekit.decoder step (fused)"):  # projection, Adam, renorm in one pass
            fused = decoder_step_(sae.W_dec, run.opt)
        if not fused:
            with record_function("saekit.decoder projection"):
                sae.remove_gradient_parallel_to_decoder_(unit_rows=True)  # renormalised every step
    with record_function("saekit.optimiser"):
        run.opt.step()
    if s.normalize_decoder and not fused:
        with record_function("saekit.decoder renorm"):
            sae.set_decoder_norm_to_unit_()
    with record_function("saekit.dead tracking"):
        dd.broadcast_buffers_(sae, dist)  # buffers a forward updates stay bitwise equal on every rank
        run.tracker.update(dd.any_rank(out.fired, dist), s.batch_size)
    run.step += 1
    return out
