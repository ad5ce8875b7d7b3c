"""`HookPoint`: where in a model to read or write activations, as a short string.

Grammar: ``module.path[:in|:out][@stream]`` -- e.g. ``model.layers.15`` (the module's output),
``model.layers.15:in`` (its input), ``transformer_blocks.3@image`` (one element of a tuple output,
chosen by name) or ``single_transformer_blocks.0@1`` (chosen by index). Names rather than indices are
the point: tuple orders change between library versions, names are resolved per module class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from saekit.errors import HookPointError

_SPEC_RE = re.compile(r"^(?P<module>[A-Za-z0-9_.]*?)(?::(?P<dir>in|out))?(?:@(?P<stream>[A-Za-z0-9_]+))?$")


@dataclass(frozen=True)
class HookPoint:
    """A parsed hook point spec; `str(hp)` gives back the canonical spec."""

    module: str
    """Dotted module path as in `model.named_modules()`; "" is the model itself."""
    direction: Literal["out", "in"] = "out"
    """"out" reads/writes the module's output, "in" its input (positional or keyword)."""
    stream: str | int | None = None
    """Which element of a tuple output (or which input): an index, a name (`image`, `text`, `out`,
    or an input keyword), or None for the whole tensor / the main input."""

    def __post_init__(self) -> None:
        if self.direction not in ("out", "in"):
            raise HookPointError(
                f"hook point {self.module!r}: direction must be 'out' or 'in', found {self.direction!r}"
            )
        if isinstance(self.stream, int) and self.stream < 0:
            raise HookPointError(
                f"hook point {self.module!r}: stream index must be >= 0, found {self.stream}"
            )

    @classmethod
    def parse(cls, spec: str | HookPoint) -> HookPoint:
        """Parse `module.path[:in|:out][@stream]`; a HookPoint is returned unchanged."""
        if isinstance(spec, HookPoint):
            return spec
        if not isinstance(spec, str):
            raise HookPointError(
                f"hook point must be a string like 'model.layers.15', found {type(spec).__name__}"
            )
        text = spec.strip()
        m = _SPEC_RE.match(text)
        if m is None or (text and text.startswith(".")) or ".." in text or text.endswith("."):
            raise HookPointError(
                f"cannot parse hook point {spec!r}: expected 'module.path', 'module.path:in' or "
                f"'module.path@stream' (stream = index like 0 or a name like image/text), e.g. "
                f"'model.layers.15' or 'transformer_blocks.3@image'"
            )
        stream_text = m.group("stream")
        stream: str | int | None
        if stream_text is None:
            stream = None
        elif stream_text.isdigit():
            stream = int(stream_text)
        else:
            stream = stream_text
        return cls(module=m.group("module"), direction=m.group("dir") or "out", stream=stream)

    def __str__(self) -> str:
        text = self.module
        if self.direction == "in":
            text += ":in"
        if self.stream is not None:
            text += f"@{self.stream}"
        return text

    def module_pair(self) -> tuple[HookPoint, HookPoint]:
        """`(input, output)` of the module this hook point names: what a transcoder reads and predicts.

        `model.layers.8.mlp` -> (`model.layers.8.mlp:in`, `model.layers.8.mlp`); an output stream is kept
        (`blocks.3@image` pairs the block's main input with its image output)."""
        if self.direction == "in":
            raise HookPointError(
                f"hook point {str(self)!r}: a paired hook point names the module, whose input and output "
                f"are both recorded; drop ':in' (e.g. {self.module!r})"
            )
        return HookPoint(self.module, "in", None), self

    @property
    def layer(self) -> int | None:
        """The last integer path component (`model.layers.15` -> 15), for provenance; None if absent."""
        ints = [p for p in self.module.split(".") if p.isdigit()]
        return int(ints[-1]) if ints else None
