"""Conditioning-level steering: edit an embedding *before* it enters a generator (the gytdau recipe).

For a conditioning embedding `e [..., d]` (Kandinsky 2.2's CLIP image embeds, FLUX's pooled CLIP prompt
vector) and an SAE with `f = encode(e)`:

    err = e − decode(f)          the part of e the SAE does not explain
    f'  = f with f_j := s        ("set"; or f_j += s, "add")
    e'  = decode(f') + err

Why `err` is kept: an SAE reconstructs a CLIP embedding only approximately, and `decode(f)` alone
already moves the image. Keeping the error makes the edit touch only what feature j carries.

Why it is computed as `e + (decode(f') − decode(f))`: that is `decode(f') + err` in real arithmetic,
and it makes a no-op edit (`f' = f`, e.g. setting f_j to its current value, or adding 0) return `e`
bit for bit, so "unsteered" and "no-op steered" images are identical, not identical to rounding. The
edit is `saekit.steer.methods.latent_edit`, the same one clamp and boost_active use on activations
(one implementation: per-row normalised and signed SAEs are handled there, and an SAE-like object
whose decoder is not affine gets the difference of two decodes). Pure tensor math: no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from saekit.errors import ShapeError, SteeringError
from saekit.steer.methods import feature_index, latent_edit, per_feature
from saekit.steer.registry import CONDITIONING_EDITS, ConditioningEdit


def check_embedding_size(embeds: Tensor, sae, what: str = "conditioning embedding") -> None:
    """Refuse an SAE whose `d_in` is not the embedding's size, naming both and the fix."""
    if embeds.ndim == 0 or embeds.shape[-1] != sae.d_in:
        d = "no last dimension (a scalar)" if embeds.ndim == 0 else f"size {embeds.shape[-1]}"
        raise ShapeError(
            f"the {what} has {d} but the SAE has d_in={sae.d_in}; use an SAE trained on these "
            "embeddings (for Kandinsky 2.2: CLIP ViT-bigG image embeds, 1280; FLUX pooled: CLIP-L text, 768)"
        )


@torch.no_grad()
def edit_embedding(
    embeds: Tensor,
    sae,
    features: Sequence[int],
    values: Tensor | float | Sequence[float] | None = None,
    *,
    mode: ConditioningEdit = "set",
    keep_error: bool = True,
) -> Tensor:
    """`e' = decode(f') + (e − decode(f))` for `embeds [..., d_in]`; same dtype and device as `embeds`.

    `values` broadcasts to `[..., n_features]` (a scalar, one per feature, or per row). `mode="set"`
    sets `f_j := value` (None = the current value: no edit); `mode="add"` adds it (None = 0).
    `keep_error=False` returns `decode(f')` alone, the variant that drops what the SAE misses.
    """
    if mode not in CONDITIONING_EDITS:
        raise SteeringError(f"unknown conditioning edit {mode!r}; use one of {', '.join(CONDITIONING_EDITS)}")
    check_embedding_size(embeds, sae)
    idx = feature_index(sae, features)
    e = embeds.to(dtype=sae.dtype, device=sae.device)
    f = sae.encode(e)
    f_sel = f[..., idx]
    new_sel, delta = f_sel, torch.zeros_like(f_sel)  # no values: set to the current ones / add 0
    if values is not None:
        v = per_feature(values, f.shape[:-1], idx.numel(), sae, "values")
        new_sel, delta = (v, v - f_sel) if mode == "set" else (f_sel + v, v)
    if keep_error:
        out = latent_edit(e, sae, idx, delta, f)
    else:
        f_new = f.clone()
        f_new[..., idx] = new_sel
        out = sae.decode(f_new)
    return out.to(dtype=embeds.dtype, device=embeds.device)
