"""Apply a steering edit to a running model at a hook point, on chosen token positions.

`steering(model, hook_point, edit_fn, positions=..., prompt_len=..., compute_dtype=...)` wraps
`saekit.hooks.intervene`: the hooked stream `x [B, T, d]` (model dtype) is cast to `compute_dtype`
(the SAE's), edited, cast back, and written only at the selected positions; other positions pass
through bit for bit.

Positions during generation with a KV cache: the first call sees the prompt (`T = prompt_len`), later
calls one new token each. The tracker derives absolute positions from that: a call with `T > 1` (or
the first call) starts at position 0 — a prefill or a full re-read without cache — and a `T == 1`
call continues after the tokens seen so far. Chunked prefill is not supported (say so if you need it).
A position is "generated" when its *input* token was generated, so with `positions="generated"` the
first new token (predicted at the last prompt position) is still unsteered; `all` steers it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.hooks import HookPoint, intervene
from saekit.steer.methods import add_directions, apply_method, check_method

Positions = Literal["all", "prompt", "generated"]
POSITIONS = ("all", "prompt", "generated")


@dataclass
class PositionTracker:
    """Which absolute token positions the current forward call covers."""

    positions: str = "all"
    """`all`, `prompt` (positions < prompt_len) or `generated` (positions >= prompt_len)."""
    prompt_len: int | None = None
    """Number of prompt tokens (padded length when batched); required unless positions == all."""
    seen: int = 0
    """Tokens processed so far in the current sequence."""

    def __post_init__(self) -> None:
        if self.positions not in POSITIONS:
            raise SteeringError(f"positions must be one of {', '.join(POSITIONS)}, found {self.positions!r}")
        if self.positions != "all" and self.prompt_len is None:
            raise SteeringError(
                f"positions={self.positions!r} needs prompt_len (the number of prompt tokens)"
            )

    def reset(self, prompt_len: int | None = None) -> None:
        """Start a new sequence (call before each generate)."""
        self.seen = 0
        if prompt_len is not None:
            self.prompt_len = prompt_len

    def mask(self, T: int, device) -> Tensor | None:
        """Bool `[T]` of positions to edit in this call, or None for all of them."""
        start = 0 if (self.seen == 0 or T > 1) else self.seen
        self.seen = start + T
        if self.positions == "all":
            return None
        pos = torch.arange(start, start + T, device=device)
        return pos < self.prompt_len if self.positions == "prompt" else pos >= self.prompt_len


def cast_edit(
    edit_fn: Callable[[Tensor], Tensor],
    compute_dtype: torch.dtype,
    device=None,
    tracker: PositionTracker | None = None,
) -> Callable[[Tensor], Tensor]:
    """Wrap an edit on compute-dtype tensors into one on model-dtype `[B, T, d]` tensors."""

    def wrapped(x_BTD: Tensor) -> Tensor:
        mask_T = (
            tracker.mask(x_BTD.shape[1], x_BTD.device) if tracker is not None and x_BTD.ndim == 3 else None
        )
        if mask_T is not None and not bool(mask_T.any()):
            return x_BTD
        x_c = x_BTD.to(dtype=compute_dtype, device=device or x_BTD.device)
        new = edit_fn(x_c).to(dtype=x_BTD.dtype, device=x_BTD.device)
        if mask_T is None:
            return new
        return torch.where(mask_T[None, :, None], new, x_BTD)

    return wrapped


@contextlib.contextmanager
def steering(
    model,
    hook_point: str | HookPoint,
    edit_fn: Callable[[Tensor], Tensor],
    *,
    compute_dtype: torch.dtype = torch.float32,
    device=None,
    positions: str = "all",
    prompt_len: int | None = None,
) -> Iterator[PositionTracker]:
    """Context manager: edit the hooked stream with `edit_fn` (on `compute_dtype` tensors).

    Yields the PositionTracker; call `tracker.reset(prompt_len)` between sequences.
    """
    tracker = PositionTracker(positions=positions, prompt_len=prompt_len)
    with intervene(model, hook_point, cast_edit(edit_fn, compute_dtype, device, tracker)):
        yield tracker


def sae_edit(
    sae, method: str, features, strengths, *, keep_error: bool = False
) -> Callable[[Tensor], Tensor]:
    """`x -> method(x)` for an SAE method with absolute strengths (per feature, or `[B, 1, n]` per row)."""
    check_method(method)
    if sae.cfg.transcode:  # its latents read a module's input, its decoder writes the module's output
        raise SteeringError(
            "steering with a transcoder is not supported: its latents are read from the module's input and "
            "its decoder writes the module's output, so none of the steering methods (all defined on one "
            "activation x) applies; steer with an SAE at that hook point instead"
        )
    s = torch.as_tensor(strengths, dtype=sae.dtype, device=sae.device)
    return lambda x: apply_method(method, x, sae, features, s, keep_error=keep_error)


def direction_edit(direction_D: Tensor, strengths) -> Callable[[Tensor], Tensor]:
    """`x -> x + s · u` for a fixed direction (DiffMean), strengths scalar or `[B, 1, 1]`."""
    u = direction_D.float()
    s = torch.as_tensor(strengths, dtype=torch.float32)
    return lambda x: add_directions(x, u.to(x.device), s.to(x.device))


@contextlib.contextmanager
def steer_sae(
    model,
    sae,
    method: str,
    features,
    strengths,
    *,
    hook_point: str | HookPoint | None = None,
    positions: str = "all",
    prompt_len: int | None = None,
    keep_error: bool = False,
) -> Iterator[PositionTracker]:
    """Steer `model` with an SAE method at the SAE's own hook point (from its provenance) by default."""
    hp = hook_point or sae.cfg.provenance.hook_point
    if not hp:
        raise SteeringError(
            "the SAE's config has no provenance.hook_point; pass hook_point= (e.g. 'model.layers.15')"
        )
    with steering(
        model,
        hp,
        sae_edit(sae, method, features, strengths, keep_error=keep_error),
        compute_dtype=sae.dtype,
        device=sae.device,
        positions=positions,
        prompt_len=prompt_len,
    ) as tr:
        yield tr
