"""What a checkpoint holds and how it is put back: weights, Adam moments, dead counters, RNG.

Tensors are written from host copies (`save_checkpoint` moves them) and restored with `copy_`, which
moves them onto whatever device the resuming run uses, so a run may resume on another device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from saekit.errors import CheckpointError, SAEConfigError
from saekit.train.config import TrainConfig
from saekit.train.dead import DeadLatentTracker


def state_tensors(sae, opt, tracker: DeadLatentTracker, gen: torch.Generator) -> dict[str, Tensor]:
    """Everything the next step depends on, as named tensors."""
    t: dict[str, Tensor] = {f"sae.{k}": v for k, v in sae.state_dict().items()}
    names = {id(p): n for n, p in sae.named_parameters()}
    for p, st in opt.state.items():
        for key, val in st.items():
            if isinstance(val, Tensor):
                t[f"opt.{names[id(p)]}.{key}"] = val
    t["dead.since_fired"] = tracker.since_fired
    # The host RNG is the only global generator training draws from (init, and nothing per step on any
    # device); the resampling generator is a host generator too, so both are host state.
    t["rng.torch"] = torch.get_rng_state()
    t["rng.resample"] = gen.get_state()
    if getattr(sae, "screen", None) is not None:  # the screened encoder's adaptive margin
        t["screen.state"] = sae.screen.state_tensor()
    return t


def restore_state(sae, opt, tracker: DeadLatentTracker, gen: torch.Generator, tensors: dict[str, Tensor]):
    """Inverse of `state_tensors` into freshly built objects (on any device)."""
    with torch.no_grad():
        for k, v in sae.state_dict().items():
            v.copy_(tensors[f"sae.{k}"])
    state = {}
    for i, (name, _p) in enumerate(sae.named_parameters()):
        st = {key.split(".", 2)[2]: val for key, val in tensors.items() if key.startswith(f"opt.{name}.")}
        if st:
            state[i] = st
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)  # moves the moments onto each parameter's device
    tracker.since_fired.copy_(tensors["dead.since_fired"])
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.resample"])
    if getattr(sae, "screen", None) is not None and "screen.state" in tensors:
        sae.screen.load_state_tensor(tensors["screen.state"])


def resume_differences(saved: dict[str, Any], now: TrainConfig) -> list[str]:
    """`field: checkpoint=.. now=..` for every non-cosmetic setting that changed.

    The saved config is read through `TrainConfig.from_dict`, which also accepts checkpoints written
    before the SAE fields were nested, filling fields they did not have with the defaults those runs used.
    """
    try:
        then = TrainConfig.from_dict(saved).flat_dict()
    except (SAEConfigError, TypeError) as exc:
        raise CheckpointError(
            f"the checkpoint's train config cannot be read ({exc}); "
            "choose a new --out or delete the checkpoint"
        ) from None
    cur = now.flat_dict()
    return [
        f"{k}: checkpoint={then.get(k)!r} now={cur[k]!r}"
        for k in cur
        if k not in TrainConfig.COSMETIC and then.get(k) != cur[k]
    ]
