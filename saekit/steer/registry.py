"""The one registry of steering methods: name -> function, strength space, error preservation.

Everything that lists method names (the `steer` and `sweep` flags, the image generators'
conditioning edits, the testbed, the strength conversions, the docs tables) reads this registry, so
adding a method is one `@register_method` in `saekit.steer.methods` and nothing else. Registering a
name twice is refused: two functions silently answering to one name is the kind of drift this
registry exists to prevent.

This module imports nothing of saekit.steer: the built-in methods register themselves when
`saekit.steer.methods` is imported, and the `saekit.steer` package imports it on its first import, so
every importer of this module sees them (no lazy import back, hence no methods <-> registry cycle).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from torch import Tensor

from saekit.errors import SteeringError

SPACES = ("activation", "latent")
ConditioningEdit = Literal["set", "add"]
"""What a method does to the chosen latents of a conditioning embedding (error kept): f_j := s, f_j += s."""
CONDITIONING_EDITS: tuple[str, ...] = get_args(ConditioningEdit)


@dataclass(frozen=True)
class MethodSpec:
    """One registered steering method."""

    name: str
    """Name used on the command line and in result files."""
    fn: Callable[..., Tensor]
    """`fn(x, sae, features, strengths, **kw) -> x'` (pure tensor math)."""
    space: str
    """Native unit of its strength: an `activation`-space length or a `latent` value."""
    error_preserving: bool
    """Whether the SAE error term survives the edit (a no-op edit returns x exactly)."""
    takes_keep_error: bool = False
    """Whether `fn` accepts `keep_error=` (boost_active)."""
    takes_strength: bool = True
    """False when the method ignores its strengths (ablate: always 0); callers then pass zeros."""
    conditioning: ConditioningEdit | None = None
    """As an error-preserving latent edit of a conditioning embedding (FLUX pooled/text, Kandinsky):
    `set` f_j := s, `add` f_j += s; None when the method has no such meaning (it is refused there)."""


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    space: str,
    error_preserving: bool,
    takes_keep_error: bool = False,
    takes_strength: bool = True,
    conditioning: ConditioningEdit | None = None,
) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator: add `fn` under `name`; a second registration of the same name raises."""
    if space not in SPACES:
        raise SteeringError(f"method {name!r}: space must be one of {SPACES}, found {space!r}")
    if conditioning is not None and conditioning not in CONDITIONING_EDITS:
        raise SteeringError(
            f"method {name!r}: conditioning must be one of {CONDITIONING_EDITS} or None, "
            f"found {conditioning!r}"
        )

    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if name in _REGISTRY:
            raise SteeringError(
                f"steering method {name!r} is already registered (by {_REGISTRY[name].fn.__qualname__}); "
                "pick another name"
            )
        _REGISTRY[name] = MethodSpec(
            name, fn, space, error_preserving, takes_keep_error, takes_strength, conditioning
        )
        return fn

    return deco


def method_names() -> tuple[str, ...]:
    """Registered names in registration order."""
    return tuple(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The spec for `name`, or a SteeringError that lists the choices (and the closest one)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SteeringError(f"unknown steering method {name!r}{hint}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def conditioning_methods() -> tuple[str, ...]:
    """Methods that mean something on a conditioning embedding (`MethodSpec.conditioning`), in order."""
    return tuple(n for n, m in _REGISTRY.items() if m.conditioning is not None)
