"""Streams: which tensor of a module's tuple output (or of its inputs) a hook point means.

Tuple orders differ between libraries and versions, so names are resolved per module *class*
(facts checked against the installed sources):

- diffusers 0.42 `FluxTransformerBlock`, `FluxSingleTransformerBlock` return `(text, image)`
  (`encoder_hidden_states, hidden_states`).
- their `.attn` (`FluxAttention`) returns `(image, text)` when given encoder states, and one
  concatenated `[text; image]` tensor (sequence dim 1) inside single blocks; older diffusers single
  blocks also returned one concatenated tensor. Those are split by name only when the text length is
  known (`text_len=`), otherwise refused.
- transformers attention modules (CLIP `self_attn`, Llama `self_attn`, ...) return
  `(out, attn_weights_or_None)`; transformers 5.x decoder layers return a plain tensor.

Anything else: index streams always work; names that cannot be resolved are refused with a message
that lists the element shapes, so the user can pick an index.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from saekit.errors import HookPointError

TUPLE_OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "FluxTransformerBlock": ("text", "image"),
    "FluxSingleTransformerBlock": ("text", "image"),
    "FluxAttention": ("image", "text"),
}
"""Element names of tuple outputs, per module class name."""

CONCAT_TEXT_IMAGE: frozenset[str] = frozenset({"FluxSingleTransformerBlock", "FluxAttention"})
"""Classes that may return one tensor holding `[text; image]` along the sequence dim."""

INPUT_ALIASES: dict[str, dict[str, str]] = {
    "FluxTransformerBlock": {"image": "hidden_states", "text": "encoder_hidden_states"},
    "FluxSingleTransformerBlock": {"image": "hidden_states", "text": "encoder_hidden_states"},
    "FluxAttention": {"image": "hidden_states", "text": "encoder_hidden_states"},
}
"""Stream names of `:in` hook points that map to forward() keyword names, per module class."""


def describe(value: Any) -> str:
    """Short human description of a module output, e.g. `tuple(Tensor[1, 16, 32], None)`."""
    if isinstance(value, torch.Tensor):
        return f"Tensor{list(value.shape)}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}(" + ", ".join(describe(v) for v in value) + ")"
    return type(value).__name__ if value is not None else "None"


def _is_transformers_attention(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__module__.startswith("transformers") and cls.__name__.endswith("Attention")


@dataclass(frozen=True)
class StreamSel:
    """How to take one tensor out of an output value and how to put a replacement back."""

    index: int | str | None
    """Tuple index or dict key; None = the value itself."""
    seq_start: int | None = None
    """With a concatenated `[text; image]` tensor: sequence slice start (dim 1)..."""
    seq_stop: int | None = None
    """...and stop; both None means no slicing."""

    def _split(self) -> bool:
        return self.seq_start is not None or self.seq_stop is not None

    def select(self, value: Any) -> torch.Tensor:
        x = value if self.index is None else value[self.index]
        if self._split():
            x = x[:, self.seq_start : self.seq_stop]
        return x

    def replace(self, value: Any, new: torch.Tensor) -> Any:
        """Return `value` with the selected tensor swapped for `new`; other elements untouched."""
        if self._split():
            whole = value if self.index is None else value[self.index]
            start = self.seq_start or 0
            stop = whole.shape[1] if self.seq_stop is None else self.seq_stop
            new = torch.cat([whole[:, :start], new, whole[:, stop:]], dim=1)
        if self.index is None:
            return new
        if isinstance(value, dict):
            out = value.copy()
            out[self.index] = new
            return out
        items = list(value)
        items[self.index] = new
        return tuple(items) if isinstance(value, tuple) else items


def _refuse(module: nn.Module, value: Any, name: Any, why: str) -> HookPointError:
    return HookPointError(
        f"stream {name!r} of {type(module).__name__}: {why}. The module returned {describe(value)}. "
        f"Pick an element by index (e.g. @0) or a known name"
        + (
            f" ({', '.join(TUPLE_OUTPUT_NAMES[type(module).__name__])})"
            if type(module).__name__ in TUPLE_OUTPUT_NAMES
            else ""
        )
        + "."
    )


def resolve_stream(
    module: nn.Module, output: Any, name: str | int | None, *, text_len: int | None = None
) -> StreamSel:
    """Resolve stream `name` of `module`'s `output` to a StreamSel (see module docstring for the rules)."""
    if isinstance(output, torch.Tensor):
        return _tensor_stream(module, output, name, text_len)
    if isinstance(output, dict):
        if isinstance(name, str) and name in output:
            return StreamSel(name)
        if name is None and "last_hidden_state" in output:
            return StreamSel("last_hidden_state")
        raise _refuse(module, output, name, f"the output is a mapping; use one of its keys {list(output)}")
    if not isinstance(output, (tuple, list)):
        raise _refuse(module, output, name, f"the output is a {type(output).__name__}, which has no streams")
    return _tuple_stream(module, output, name)


def _tensor_stream(module: nn.Module, output: torch.Tensor, name, text_len: int | None) -> StreamSel:
    """A single tensor: the whole of it, or a text/image slice of a concatenated [text; image] tensor."""
    if name is None or name == "out":
        return StreamSel(None)
    if type(module).__name__ not in CONCAT_TEXT_IMAGE or name not in ("text", "image"):
        raise _refuse(module, output, name, "the output is a single tensor, not a tuple; drop the @stream")
    if text_len is None:
        raise _refuse(
            module,
            output,
            name,
            "this module returned one concatenated [text; image] tensor (older diffusers, or "
            "attention inside a single block), so the split point is unknown; pass text_len= "
            "(the number of text tokens) to capture/intervene, or hook the whole tensor without @stream",
        )
    if not 0 <= text_len <= output.shape[1]:
        raise _refuse(
            module, output, name, f"text_len={text_len} is outside the sequence length {output.shape[1]}"
        )
    return StreamSel(None, 0, text_len) if name == "text" else StreamSel(None, text_len, None)


def _tuple_stream(module: nn.Module, output: tuple | list, name: str | int | None) -> StreamSel:
    """An element of a tuple output: by index, the only tensor, a per-class name, or attention's `out`."""
    if isinstance(name, int):
        if name >= len(output) or not isinstance(output[name], torch.Tensor):
            raise _refuse(
                module, output, name, f"index {name} is not a tensor element of the {len(output)}-tuple"
            )
        return StreamSel(name)
    tensor_idx = [i for i, v in enumerate(output) if isinstance(v, torch.Tensor)]
    if name is None:
        if len(tensor_idx) == 1:
            return StreamSel(tensor_idx[0])
        raise _refuse(
            module, output, name, "the output is a tuple with several tensors, so @stream is required"
        )
    names = TUPLE_OUTPUT_NAMES.get(type(module).__name__)
    if names is not None:
        return _named_stream(module, output, name, names)
    is_attention = _is_transformers_attention(module)
    if name == "out" and (is_attention or len(tensor_idx) == 1) and tensor_idx and tensor_idx[0] == 0:
        return StreamSel(0)
    if name in ("attn_weights", "weights") and is_attention and len(output) > 1:
        if not isinstance(output[1], torch.Tensor):
            raise _refuse(
                module, output, name, "attention weights were not returned (enable output_attentions)"
            )
        return StreamSel(1)
    raise _refuse(module, output, name, "this name is ambiguous or unknown for this module class")


def _named_stream(module: nn.Module, output: tuple | list, name: str, names: tuple[str, ...]) -> StreamSel:
    if len(output) != len(names):
        raise _refuse(
            module,
            output,
            name,
            f"expected a {len(names)}-tuple {names} for this class; the library version may differ",
        )
    if name not in names:
        raise _refuse(module, output, name, f"unknown name; this class's outputs are named {names}")
    return StreamSel(names.index(name))


@dataclass(frozen=True)
class InputSel:
    """Which input of a forward call: a positional index or a keyword name."""

    arg_index: int | None
    kwarg: str | None

    def select(self, args: tuple, kwargs: dict) -> torch.Tensor:
        return args[self.arg_index] if self.arg_index is not None else kwargs[self.kwarg]

    def replace(self, args: tuple, kwargs: dict, new: torch.Tensor) -> tuple[tuple, dict]:
        if self.arg_index is not None:
            items = list(args)
            items[self.arg_index] = new
            return tuple(items), kwargs
        kwargs = dict(kwargs)
        kwargs[self.kwarg] = new
        return args, kwargs


def _forward_params(module: nn.Module) -> list[str]:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def resolve_input_stream(module: nn.Module, args: tuple, kwargs: dict, name: str | int | None) -> InputSel:
    """Resolve the input named by `name` (None = main input) among positional and keyword inputs.

    Keyword-only calls (diffusers blocks are called `block(hidden_states=..., ...)`) are why this
    looks at kwargs and at the forward() signature instead of assuming `args[0]`.
    """
    params = _forward_params(module)
    if name is None:
        if args and isinstance(args[0], torch.Tensor):
            return InputSel(0, None)
        for key in ("hidden_states", "x", "input", "inputs_embeds"):
            if isinstance(kwargs.get(key), torch.Tensor):
                return InputSel(None, key)
        if params and isinstance(kwargs.get(params[0]), torch.Tensor):
            return InputSel(None, params[0])
        key = name
    else:
        key = INPUT_ALIASES.get(type(module).__name__, {}).get(name, name) if isinstance(name, str) else name
    if isinstance(key, int):
        if key < len(args):
            return _check_input(module, args, kwargs, name, InputSel(key, None))
        if key < len(params) and params[key] in kwargs:
            return _check_input(module, args, kwargs, name, InputSel(None, params[key]))
    elif isinstance(key, str):
        if key in kwargs:
            return _check_input(module, args, kwargs, name, InputSel(None, key))
        if key in params and params.index(key) < len(args):
            return _check_input(module, args, kwargs, name, InputSel(params.index(key), None))
    shown = ", ".join(
        [f"#{i}: {describe(a)}" for i, a in enumerate(args)]
        + [f"{k}: {describe(v)}" for k, v in kwargs.items()]
    )
    raise HookPointError(
        f"input stream {name!r} of {type(module).__name__}: not found among the call's inputs "
        f"({shown or 'none'}). Use :in@<index> or :in@<keyword>."
    )


def _check_input(module: nn.Module, args: tuple, kwargs: dict, name: Any, sel: InputSel) -> InputSel:
    if not isinstance(sel.select(args, kwargs), torch.Tensor):
        raise HookPointError(
            f"input stream {name!r} of {type(module).__name__} is {describe(sel.select(args, kwargs))}, "
            "not a tensor"
        )
    return sel
