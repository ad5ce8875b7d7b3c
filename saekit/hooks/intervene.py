"""`intervene`: replace one stream of a module's output (or input) with `edit_fn(stream)`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from saekit.errors import ShapeError
from saekit.hooks.hookpoint import HookPoint
from saekit.hooks.resolve import resolve_module
from saekit.hooks.streams import resolve_input_stream, resolve_stream


def _checked(hp: HookPoint, edit_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    new = edit_fn(x)
    if not isinstance(new, torch.Tensor) or new.shape != x.shape:
        found = list(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
        raise ShapeError(
            f"intervene at {str(hp)!r}: edit_fn must return a tensor shaped like its input {list(x.shape)}, "
            f"found {found}"
        )
    return new


@contextlib.contextmanager
def intervene(
    model: nn.Module,
    hp: str | HookPoint,
    edit_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    text_len: int | None = None,
) -> Iterator[None]:
    """While active, every call of the hooked module sees/returns `edit_fn(x)` for the selected
    stream `x [B, T, d]`; the other tuple elements (or inputs) pass through untouched.

    dtype handling is the edit function's job: it receives the model's dtype and must return it.
    """
    hp = HookPoint.parse(hp)
    module = resolve_module(model, hp)
    if hp.direction == "out":

        def out_hook(mod: nn.Module, args: Any, output: Any) -> Any:
            sel = resolve_stream(mod, output, hp.stream, text_len=text_len)
            return sel.replace(output, _checked(hp, edit_fn, sel.select(output)))

        handle = module.register_forward_hook(out_hook)
    else:

        def in_hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            sel = resolve_input_stream(mod, args, kwargs, hp.stream)
            return sel.replace(args, kwargs, _checked(hp, edit_fn, sel.select(args, kwargs)))

        handle = module.register_forward_pre_hook(in_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
