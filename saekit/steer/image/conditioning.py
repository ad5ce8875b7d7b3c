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
bit for bit, so "unsteered" and "no-op steered" images are identical, not identical to rounding. It
uses only `encode` and `decode`, so it is right for any SAE `saekit.load` returns (per-row
normalisation, signed latents) without assuming the decoder is affine. Pure tensor math: no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from saekit.errors import ShapeError, SteeringError
from saekit.steer.methods import feature_index, per_feature

EditMode = Literal["set", "add"]
EDIT_MODES: tuple[str, ...] = ("set", "add")


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
    mode: EditMode = "set",
    keep_error: bool = True,
) -> Tensor:
    """`e' = decode(f') + (e − decode(f))` for `embeds [..., d_in]`; same dtype and device as `embeds`.

    `values` broadcasts to `[..., n_features]` (a scalar, one per feature, or per row). `mode="set"`
    sets `f_j := value` (None = the current value: no edit); `mode="add"` adds it (None = 0).
    `keep_error=False` returns `decode(f')` alone, the variant that drops what the SAE misses.
    """
    if mode not in EDIT_MODES:
        raise SteeringError(f"unknown conditioning edit {mode!r}; use one of {', '.join(EDIT_MODES)}")
    check_embedding_size(embeds, sae)
    idx = feature_index(sae, features)
    e = embeds.to(dtype=sae.dtype, device=sae.device)
    f = sae.encode(e)
    f_new = f.clone()
    if values is not None:
        v = per_feature(values, f.shape[:-1], idx.numel(), sae, "values")
        f_new[..., idx] = v if mode == "set" else f[..., idx] + v
    if not keep_error:
        out = sae.decode(f_new)
    else:
        out = e + (sae.decode(f_new) - sae.decode(f))
    return out.to(dtype=embeds.dtype, device=embeds.device)
