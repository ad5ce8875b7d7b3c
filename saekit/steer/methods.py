"""Steering methods as pure tensor functions (no hooks, no model): `x [..., d_in]` in, edited `x` out.

Notation (DESIGN.md "Steering, precisely"): `f = encode(x)`, `x̂ = decode(f)`, `e = x − x̂`, features
`j` with strengths `s_j`.

- additive      `x + Σ s_j d_j`                 d_j = unit decoder direction; s in activation units
- surgery       `decode(f + Σ s_j 1_j)`          drops e (the seed behaviour, kept for comparison)
- clamp         `decode(f with f_j := s_j) + e`  error-preserving
- boost_active  where f_j != 0: f_j += s_j (decode, + e if keep_error); elsewhere x + s_j W_dec_j
- ablate        clamp with s_j = 0

Why error-preserving methods are computed as `x + (decode(f') − decode(f))`: every saekit decoder is
affine (`f W_dec / input_scale + b_dec / input_scale`), so this equals `decode(f') + e` exactly in
real arithmetic, and it makes a no-op edit (`f' = f`) return `x` bit for bit instead of to rounding.

Units: additive strengths are activation-space lengths; latent methods' strengths are latent values.
A latent value `s` moves the activation by `s · g_j` with `g_j = |W_dec_j| / input_scale`
(`feature_gain`); `saekit.steer.strength` converts between the two so `0.5norm` or `4max` mean the
same push for every method. Consequence of linearity worth knowing: boost_active with keep_error is
*identical* to additive with strength `s · g_j`; only without the error term does it differ.

TopK / BatchTopK: `encode` already returns the SAE's own sparse latents (k non-zeros per row). We edit
that vector and decode it *without* re-running the top-k selection, so clamping a feature that is
not among the row's top k sets it anyway (the row then has k+1 active latents). Re-selecting would
silently undo the edit for weak features, which is never what a user steering a feature wants.

Several features at once: `features` is a sequence of ids, `strengths` broadcasts to
`x.shape[:-1] + (n_features,)` — a scalar, one value per feature, or per row (e.g. `[B, 1, n]` to
run several strengths in one batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from saekit.errors import ShapeError, SteeringError
from saekit.steer.registry import _REGISTRY, get_method, register_method


def feature_gain(sae, features: Sequence[int] | Tensor) -> Tensor:
    """`g_j = |W_dec_j| / input_scale`: activation-space length moved by one unit of latent j."""
    idx = feature_index(sae, features)
    return (sae.W_dec[idx].norm(dim=-1) / sae.input_scale.to(sae.dtype)).detach()


def feature_index(sae, features: Sequence[int] | Tensor) -> Tensor:
    """Feature ids as a long tensor on the SAE's device; refuses empty, out-of-range and repeated ids."""
    idx = torch.as_tensor(features, dtype=torch.long, device=sae.device).reshape(-1)
    if idx.numel() == 0:
        raise SteeringError("no features given; pass at least one feature id (e.g. --feature 123)")
    bad = (idx < 0) | (idx >= sae.d_sae)
    if bad.any():
        raise SteeringError(
            f"feature id(s) {idx[bad].tolist()} out of range for this SAE with d_sae={sae.d_sae}; "
            f"valid ids are 0..{sae.d_sae - 1}"
        )
    if idx.unique().numel() != idx.numel():
        raise SteeringError(f"feature ids {idx.tolist()} contain duplicates; give each feature once")
    return idx


def _prepare(x: Tensor, sae, features, strengths) -> tuple[Tensor, Tensor, Tensor]:
    """Cast `x` to the SAE dtype/device, validate ids, broadcast strengths to `[..., n]`."""
    if x.ndim == 0 or x.shape[-1] != sae.d_in:
        raise ShapeError(
            f"steering input has shape {tuple(x.shape)} but the SAE expects [..., d_in={sae.d_in}]; "
            f"is this the SAE's hook point (SAE provenance: {sae.cfg.provenance.hook_point!r})?"
        )
    idx = feature_index(sae, features)
    x_sae = x.to(dtype=sae.dtype, device=sae.device)
    s = per_feature(strengths, x.shape[:-1], idx.numel(), sae, "strengths")
    return x_sae, idx, s


def per_feature(values, lead: torch.Size, n: int, sae, what: str) -> Tensor:
    """`values` (a scalar, one per feature, or any broadcastable shape) as `[*lead, n]` in the SAE's
    dtype and device, or a SteeringError naming the shapes."""
    v = torch.as_tensor(values, dtype=sae.dtype, device=sae.device)
    target = tuple(lead) + (n,)
    try:
        return torch.broadcast_to(v if v.ndim else v.reshape(1), target)
    except RuntimeError as exc:
        raise SteeringError(
            f"{what} of shape {tuple(v.shape)} do not broadcast to {target} "
            f"(rows {tuple(lead)} x {n} feature(s)); give one value, or one per feature"
        ) from exc


def latent_delta(x: Tensor, sae, idx: Tensor, delta_N: Tensor, f: Tensor | None = None) -> Tensor:
    """`decode(f + Σ δ_j 1_j) − decode(f)` for rows `x [..., d_in]` (exactly 0 when every δ_j is 0).

    A saekit SAE's decoder is affine in the latents, so this is `Σ δ_j W_dec_j` in raw units
    (`SAE.delta_to_raw`: over the input scale, or times each row's std for a per-row layer-norm SAE):
    one `[n, d]` product. An SAE-like object without `delta_to_raw` (a decoder that is not affine)
    gets the difference of two decodes of `f` (`encode(x)` unless given) instead.
    """
    if hasattr(sae, "delta_to_raw"):
        return sae.delta_to_raw(delta_N @ sae.W_dec[idx], x)
    f = sae.encode(x) if f is None else f
    f_new = f.clone()
    f_new[..., idx] = f[..., idx] + delta_N
    return sae.decode(f_new) - sae.decode(f)


def latent_edit(x: Tensor, sae, idx: Tensor, delta_N: Tensor, f: Tensor | None = None) -> Tensor:
    """`x + (decode(f') − decode(f))` with `f' = f + Σ δ_j 1_j`: the one error-preserving edit.

    It equals `decode(f') + e` in real arithmetic and returns `x` bit for bit for a no-op edit. Clamp,
    ablate, boost_active with the error kept and the conditioning-embedding edits
    (`saekit.steer.image.conditioning`) all go through it.
    """
    return x + latent_delta(x, sae, idx, delta_N, f)


@register_method("additive", space="activation", error_preserving=True)
@torch.no_grad()
def additive(x: Tensor, sae, features, strengths) -> Tensor:
    """`x + Σ s_j d_j` with unit decoder directions; result in the SAE dtype."""
    x_sae, idx, s = _prepare(x, sae, features, strengths)
    return x_sae + s @ sae.decoder_directions()[idx]


@torch.no_grad()
def add_directions(x: Tensor, directions_ND: Tensor, strengths) -> Tensor:
    """`x + Σ s_n u_n` for arbitrary directions (normalised here), e.g. DiffMean; no SAE involved."""
    if directions_ND.ndim == 1:
        directions_ND = directions_ND[None]
    if x.shape[-1] != directions_ND.shape[-1]:
        raise ShapeError(f"directions have d={directions_ND.shape[-1]} but activations have d={x.shape[-1]}")
    u = directions_ND / directions_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    s = torch.as_tensor(strengths, dtype=u.dtype, device=u.device)
    s = torch.broadcast_to(s if s.ndim else s.reshape(1), x.shape[:-1] + (u.shape[0],))
    return x.to(u.dtype) + s @ u


@register_method("surgery", space="latent", error_preserving=False)
@torch.no_grad()
def surgery(x: Tensor, sae, features, strengths) -> Tensor:
    """`decode(f + Σ s_j 1_j)`: the error term is dropped, so even s = 0 returns x̂, not x."""
    x_sae, idx, s = _prepare(x, sae, features, strengths)
    f = sae.encode(x_sae)
    f[..., idx] = f[..., idx] + s
    return sae.decode(f, x_sae)


@register_method("clamp", space="latent", error_preserving=True, conditioning="set")
@torch.no_grad()
def clamp(x: Tensor, sae, features, strengths) -> Tensor:
    """`decode(f with f_j := s_j) + e`, computed as `x + (s_j − f_j) W_dec_j / input_scale`."""
    x_sae, idx, s = _prepare(x, sae, features, strengths)
    f = sae.encode(x_sae)
    return latent_edit(x_sae, sae, idx, s - f[..., idx], f)


@register_method("ablate", space="latent", error_preserving=True, takes_strength=False, conditioning="set")
@torch.no_grad()
def ablate(x: Tensor, sae, features, strengths=None) -> Tensor:
    """Clamp the features to 0 (strengths are ignored; accepted so every method has one signature)."""
    return clamp(x, sae, features, 0.0)


@register_method(
    "boost_active", space="latent", error_preserving=False, takes_keep_error=True, conditioning="add"
)
@torch.no_grad()
def boost_active(x: Tensor, sae, features, strengths, *, keep_error: bool = False) -> Tensor:
    """Add `s_j` to `f_j` where the feature is active; add the same decoded vector to `x` elsewhere.

    Where any steered feature is active and `keep_error` is False the row is rebuilt from the SAE
    (`decode(f') `, dropping e, the seed's surgery behaviour); otherwise the error is kept. With
    keep_error=True this is exactly additive with strength `s_j · g_j` (see the module docstring).
    """
    x_sae, idx, s = _prepare(x, sae, features, strengths)
    f = sae.encode(x_sae)
    shift = latent_delta(x_sae, sae, idx, s, f)
    if keep_error:
        return x_sae + shift
    active_row = (f[..., idx] != 0).any(-1, keepdim=True)  # signed SAEs: a negative latent is active
    rebuilt = sae.decode(f, x_sae) + shift
    return torch.where(active_row, rebuilt, x_sae + shift)


METHODS: tuple[str, ...] = tuple(_REGISTRY)
"""Registered method names (from `saekit.steer.registry`; do not list them anywhere else)."""
MethodName = Literal[METHODS]  # type: ignore[valid-type]
"""The registered names as a type: config fields annotated with it get them as CLI choices."""
METHOD_SPACE: dict[str, str] = {n: m.space for n, m in _REGISTRY.items()}
"""Native unit of each method's strength: an activation-space length or a latent value."""
ERROR_PRESERVING: frozenset[str] = frozenset(n for n, m in _REGISTRY.items() if m.error_preserving)
"""Methods that keep the SAE error term (boost_active too when keep_error=True)."""


def check_method(name: str) -> str:
    """Return `name` if it is a registered method, else raise SteeringError listing the choices."""
    return get_method(name).name


def apply_method(name: str, x: Tensor, sae, features, strengths, *, keep_error: bool = False) -> Tensor:
    """Dispatch by name; `keep_error` only reaches methods that take it. Returns the SAE dtype."""
    spec = get_method(name)
    if spec.takes_keep_error:
        return spec.fn(x, sae, features, strengths, keep_error=keep_error)
    return spec.fn(x, sae, features, strengths)
