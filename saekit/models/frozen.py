"""Run with a model's parameters frozen, and give them back as they were.

Optimising something other than the model (a steering vector, a synthetic input) through it must not
accumulate gradients in its weights, and must not leave a caller's model frozen afterwards either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """`model` with every parameter's `requires_grad` off inside; each flag restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
