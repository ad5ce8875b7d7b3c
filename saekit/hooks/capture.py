"""`capture`: record activations at hook points, optionally aborting the forward pass early.

Stopping after the last hooked module is what makes harvesting a mid-depth layer cheap: the layers
after it, and the 49k-vocabulary output projection, are never run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from saekit.hooks.hookpoint import HookPoint
from saekit.hooks.resolve import resolve_module
from saekit.hooks.streams import resolve_input_stream, resolve_stream


class StopForward(Exception):
    """Raised inside a hook to abort the forward pass once every hook point has been recorded."""


@dataclass
class Capture:
    """What `capture` yields; filled during the forward pass."""

    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    """str(hook point) -> tensor from the latest call of that module (detached unless detach=False)."""
    history: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    """str(hook point) -> every recorded call in order (only with keep_all=True, e.g. diffusion steps)."""
    stopped: bool = False
    """True when the forward pass was aborted by stop_after_last."""


def as_hook_points(hook_points: str | HookPoint | Iterable[str | HookPoint]) -> list[HookPoint]:
    """Accept one spec or many; return parsed HookPoints without duplicates, in order."""
    items = [hook_points] if isinstance(hook_points, (str, HookPoint)) else list(hook_points)
    out: list[HookPoint] = []
    for item in items:
        hp = HookPoint.parse(item)
        if hp not in out:
            out.append(hp)
    return out


@contextlib.contextmanager
def _returns_none_on_stop(model: nn.Module) -> Iterator[None]:
    """Make `model(...)` return None when a hook raises StopForward (documented capture behaviour)."""
    had_own = "forward" in model.__dict__
    original = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except StopForward:
            return None

    model.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        if had_own:
            model.forward = original  # type: ignore[method-assign]
        else:
            del model.forward


@contextlib.contextmanager
def capture(
    model: nn.Module,
    hook_points: str | HookPoint | Iterable[str | HookPoint],
    *,
    stop_after_last: bool = False,
    text_len: int | None = None,
    keep_all: bool = False,
    detach: bool = True,
) -> Iterator[Capture]:
    """Record the selected tensors of `hook_points` while the body runs the model.

    With `stop_after_last=True` the forward pass is aborted (StopForward, caught here) as soon as
    every hook point has fired once; `model(...)` then returns None. `text_len` splits concatenated
    `[text; image]` outputs by name (see streams.py). `detach=False` keeps the autograd graph of
    the recorded tensors, so a gradient can flow from them back to the inputs (feature maximisation
    differentiates the hooked activation and needs no later layer: use it with stop_after_last).
    """
    hps = as_hook_points(hook_points)
    cap = Capture()
    pending = {str(hp) for hp in hps}
    handles = []

    def record(key: str, x: torch.Tensor) -> None:
        if detach:
            x = x.detach()
        cap.activations[key] = x
        if keep_all:
            cap.history.setdefault(key, []).append(x)
        pending.discard(key)
        if stop_after_last and not pending:
            cap.stopped = True
            raise StopForward

    for hp in hps:
        module = resolve_module(model, hp)
        key = str(hp)
        if hp.direction == "out":

            def out_hook(
                mod: nn.Module, args: Any, output: Any, _key: str = key, _hp: HookPoint = hp
            ) -> None:
                record(_key, resolve_stream(mod, output, _hp.stream, text_len=text_len).select(output))

            handles.append(module.register_forward_hook(out_hook))
        else:

            def in_hook(
                mod: nn.Module, args: tuple, kwargs: dict, _key: str = key, _hp: HookPoint = hp
            ) -> None:
                record(_key, resolve_input_stream(mod, args, kwargs, _hp.stream).select(args, kwargs))

            handles.append(module.register_forward_pre_hook(in_hook, with_kwargs=True))
    try:
        with _returns_none_on_stop(model) if stop_after_last else contextlib.nullcontext():
            try:
                yield cap
            except StopForward:  # the body called a submodule directly, bypassing the wrapper
                cap.stopped = True
    finally:
        for handle in handles:
            handle.remove()
