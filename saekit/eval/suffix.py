"""Run only the part of a layer-stack model that follows a hook point.

The original, SAE-spliced and ablated evaluation passes are identical up to the hook point, so the
prefix is computed once and each variant replays it: layers up to and including the hooked one are
temporarily replaced by stubs (pass-through, then "return the cached activation"), so the model's own
forward still builds its masks, rotary embeddings and head. This works for a hook point that is the
whole output of element `i` of an `nn.ModuleList` called in order (every transformers decoder stack);
anything else is reported as not replayable and evaluated with full passes instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn

from saekit.hooks import HookPoint, resolve_module


def layer_slot(model: nn.Module, hp: HookPoint) -> tuple[nn.ModuleList, int] | None:
    """(stack, index) when `hp` is the plain output of `stack[index]`, else None."""
    if hp.direction != "out" or hp.stream is not None or "." not in hp.module:
        return None
    parent_path, _, last = hp.module.rpartition(".")
    if not last.isdigit():
        return None
    parent = resolve_module(model, parent_path)
    if not isinstance(parent, nn.ModuleList):
        return None
    return parent, int(last)


class _PassThrough(nn.Module):
    """Stands in for a layer before the hook: returns its hidden-state input in the layer's own form."""

    def __init__(self, slot: int, calls: list[int], tuple_out: bool):
        super().__init__()
        self.slot, self.calls, self.tuple_out = slot, calls, tuple_out

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(self.slot)
        return (hidden_states,) if self.tuple_out else hidden_states


class _Replay(_PassThrough):
    """Stands in for the hooked layer: returns the cached (edited) activation."""

    def __init__(self, slot: int, calls: list[int], tuple_out: bool, cached: Tensor):
        super().__init__(slot, calls, tuple_out)
        self.cached = cached

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(self.slot)
        if hidden_states.shape != self.cached.shape:
            got, want = tuple(hidden_states.shape), tuple(self.cached.shape)
            raise RuntimeError(f"suffix replay: layer input {got} != cached {want}")
        out = self.cached.to(hidden_states.dtype)
        return (out,) if self.tuple_out else out


@contextlib.contextmanager
def replay_prefix(stack: nn.ModuleList, index: int, cached: Tensor, tuple_out: bool) -> Iterator[list[int]]:
    """Within the block, a forward of the model skips `stack[:index+1]` and starts from `cached`.

    Yields the list of stub calls, so the caller can check the stack was walked in order once.
    """
    calls: list[int] = []
    originals = [stack[j] for j in range(index + 1)]
    try:
        for j in range(index):
            stack[j] = _PassThrough(j, calls, tuple_out)
        stack[index] = _Replay(index, calls, tuple_out, cached)
        yield calls
    finally:
        for j, mod in enumerate(originals):
            stack[j] = mod


def returns_tuple(stack: nn.ModuleList, index: int) -> tuple[dict[str, bool], Any]:
    """Register a hook that records whether `stack[index]` returns a tuple (older transformers) or a
    tensor; returns (record, handle) — call handle.remove() after the forward."""
    seen: dict[str, bool] = {}

    def hook(mod: nn.Module, args: Any, output: Any) -> None:
        seen["tuple"] = isinstance(output, tuple)

    return seen, stack[index].register_forward_hook(hook)
