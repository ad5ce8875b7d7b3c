"""Token-dependent (spatial) in-loop edits: a different push for every image token, and every step.

Adding one vector to every image token of a FLUX image stream cannot move an object: each token gets the
same push, wherever the object is. A composition factor (where the digit sits) needs a map. These are
the pure pieces of the two spatial edits `saekit sweep --methods spatial spatial_clamp` measures:

- spatial DiffMean: `delta[s, t] = mean_p x_on[p, s, t] - mean_p x_off[p, s, t]`, the per-step,
  per-token mean difference of the image-stream activation between prompts asking for the target and
  prompts asking for something else; the edit is `x[b, t] + strength * delta[s, t]` on step s;
- spatial SAE: the same per-token mean shift of chosen SAE latents (`[S, T, k]`, one map per feature),
  decoded through their decoder rows with the SAE error kept (`saekit.steer.methods.latent_edit`):
  `x + decode(f + strength * shift[s]) - decode(f)`; the clamp variant sets the features to
  `strength *` their per-token mean on target prompts instead (`f_j[t] := strength * on[s, t, j]`).

Everything here is tensor math: no hooks, models or files. A map is `[T, k]` (one for every step) or
`[S, T, k]` (one per denoising step, picked by `step`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from saekit.errors import SteeringError

SPATIAL_METHODS = ("spatial", "spatial_clamp")
"""The sweep's token-dependent SAE methods (`spatial`: add the map; `spatial_clamp`: set to the map)."""


def map_mean_shift(on: Tensor, off: Tensor) -> Tensor:
    """`mean_p on[p] - mean_p off[p]` for per-prompt maps `[P, ..., T, d]` (P may differ between the two);
    the result keeps every axis after the first (`[..., T, d]`)."""
    if on.ndim < 2 or on.shape[1:] != off.shape[1:]:
        raise SteeringError(
            f"spatial shift: target and other maps must be [prompts, ..., tokens, d] with the same "
            f"trailing shape; got {tuple(on.shape)} and {tuple(off.shape)}"
        )
    if on.shape[0] == 0 or off.shape[0] == 0:
        raise SteeringError("spatial shift: no prompts on one side; give at least one of each")
    return on.float().mean(0) - off.float().mean(0)


def map_at(map_: Tensor, x: Tensor, step: int | None, what: str = "map") -> Tensor:
    """The `[T, k]` slice of a `[T, k]` or `[S, T, k]` map for activations `x [B, T, d]` on `step`,
    with a SteeringError naming the shapes when the tokens or the steps do not match."""
    if x.ndim != 3:
        raise SteeringError(f"a spatial edit needs activations [batch, tokens, d]; got {tuple(x.shape)}")
    if map_.ndim == 3:
        if step is None or not 0 <= step < map_.shape[0]:
            raise SteeringError(
                f"the {what} has one slice per denoising step ({map_.shape[0]} steps) but step {step} was "
                "asked for; run as many steps as the map was measured on"
            )
        map_ = map_[step]
    if map_.ndim != 2 or map_.shape[0] != x.shape[1]:
        raise SteeringError(
            f"the {what} of shape {tuple(map_.shape)} needs [tokens, k] (or [steps, tokens, k]) with "
            f"{x.shape[1]} tokens, the image tokens at this site; measure it at the same image size"
        )
    return map_


def spatial_add(x: Tensor, delta: Tensor, strength: float, step: int | None = None) -> Tensor:
    """Spatial DiffMean: `x [B, T, d] + strength * delta[step] [T, d]` (the same map for every row), in
    x's dtype."""
    d = map_at(delta, x, step, "spatial direction")
    if d.shape[-1] != x.shape[-1]:
        raise SteeringError(f"the spatial direction has d={d.shape[-1]} but the activations d={x.shape[-1]}")
    return (x.float() + strength * d.to(x.device).float()).to(x.dtype)


def spatial_sae_edit(
    x: Tensor,
    sae,
    features: Sequence[int],
    latent_map: Tensor,
    strength: float,
    *,
    mode: str = "add",
    step: int | None = None,
) -> Tensor:
    """Spatial SAE edit of `x [B, T, d]`, the SAE error kept: per token t, feature j (the k `features`)
    changes by `strength * latent_map[step][t, j]` (`mode="add"`) or is set to it (`mode="set"`); the
    change is decoded through the features' decoder rows (`latent_edit`). In x's dtype."""
    from saekit.steer.methods import feature_index, latent_edit

    if mode not in ("add", "set"):
        raise SteeringError(f"spatial SAE edit mode {mode!r}: use add or set")
    if x.ndim != 3 or x.shape[-1] != sae.d_in:
        raise SteeringError(f"activations of shape {tuple(x.shape)} do not fit an SAE with d_in={sae.d_in}")
    idx = feature_index(sae, features)
    m = map_at(latent_map, x, step, "feature map")
    if m.shape[-1] != idx.numel():
        raise SteeringError(f"the feature map has {m.shape[-1]} columns for {idx.numel()} feature(s)")
    xs = x.to(dtype=sae.dtype, device=sae.device)
    target = strength * m.to(dtype=sae.dtype, device=sae.device).expand(x.shape[0], *m.shape)
    f = None
    if mode == "set":
        f = sae.encode(xs)
        delta = target - f[..., idx]
    else:
        delta = target
    return latent_edit(xs, sae, idx, delta, f).to(x.dtype)


def spatial_features(map_on: Tensor, map_off: Tensor, n: int) -> tuple[list[int], list[float]]:
    """The `n` latents whose mean map moves most between other and target prompts: the largest root mean
    square over steps and tokens of `map_on - map_off` (`[..., T, F]`, means over prompts). A latent
    that only moves (more on some tokens, less on others) scores here though its mean over tokens does
    not rise, which is what a position feature does. (feature ids, their scores), best first."""
    if map_on.shape != map_off.shape:
        raise SteeringError(f"feature maps differ in shape: {tuple(map_on.shape)} vs {tuple(map_off.shape)}")
    if not 1 <= n <= map_on.shape[-1]:
        raise SteeringError(f"asked for {n} feature(s) of {map_on.shape[-1]}")
    diff = (map_on.float() - map_off.float()).reshape(-1, map_on.shape[-1])
    score = diff.pow(2).mean(0).sqrt()
    top = torch.topk(score, n)
    return top.indices.tolist(), top.values.tolist()
