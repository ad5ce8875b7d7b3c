"""Tolerances scaled to the magnitudes and the reduction length, so a comparison holds on every CPU.

Which BLAS / oneDNN kernels run differs between CPUs (AMX, AVX-512 with or without bf16, AVX2), and
with them the order in which a dot product is summed. Two float32 results of the same math can then
differ by a few ulps of the magnitudes involved, growing with the number of summed terms: a fixed
`atol=1e-5` passes at magnitude ~1 and fails at ~128, where one float32 ulp is already 7.6e-6.
The tolerance here is `ulps * eps(dtype) * scale * sqrt(terms)`, with `scale` the largest magnitude of
the reference (or of the summands, when the caller knows them to be larger): loose enough for any
summation order, still 1e-5-relative tight, so a wrong formula (an error of the order of the values)
fails at once.
"""

from __future__ import annotations

import math

import torch

#: ulps of headroom: kernels may differ by a few ulps per partial sum, plus the final cast
DEFAULT_ULPS = 16.0


def scaled_atol(
    ref: torch.Tensor,
    *,
    terms: int = 1,
    ulps: float = DEFAULT_ULPS,
    scale: float | None = None,
    dtype: torch.dtype | None = None,
) -> float:
    """The absolute tolerance for values of `ref`'s magnitude summed over `terms` products."""
    dt = dtype or (ref.dtype if ref.is_floating_point() else torch.float32)
    eps = torch.finfo(dt).eps
    if scale is None:
        scale = float(ref.detach().abs().max()) if ref.numel() else 0.0
    return ulps * eps * max(scale, 1.0e-30) * math.sqrt(max(terms, 1))


def assert_close_scaled(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    terms: int = 1,
    ulps: float = DEFAULT_ULPS,
    scale: float | None = None,
    dtype: torch.dtype | None = None,
    msg: str = "",
) -> None:
    """`actual` equals `expected` up to summation-order rounding (see the module docstring)."""
    assert actual.shape == expected.shape, f"{msg}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    a, e = actual.detach().double(), expected.detach().double()
    if scale is None:
        scale = max(float(a.abs().max()), float(e.abs().max())) if e.numel() else 0.0
    tol = scaled_atol(expected, terms=terms, ulps=ulps, scale=scale, dtype=dtype or expected.dtype)
    err = float((a - e).abs().max()) if e.numel() else 0.0
    assert err <= tol, f"{msg}: max abs error {err:.3g} > {tol:.3g} (scale {scale:.3g}, {terms} terms)"
