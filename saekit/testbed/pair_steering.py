"""Source-aware steering for the class-to-class scenario: move a generation from class a to class b.

Why a second set of edits: the first sweep's DiffMean (class b mean minus the global mean) and single
class feature only *add* b; in the class-to-class scenario the conditioning still carries a (the
pooled adaLN vector and the text stream), so the result mixes two digits (success 0.60, faithful
0.12). Here each site's edit is computed from the pair (a, b):

- `dm_target`: `x + s (mu_b - mu)` — the first sweep's DiffMean at its raw length (reference);
- `dm_pair`: `x + s (mu_b - mu_a)`: DiffMean between the two classes (at the `cond` site with s = 1
  this replaces the pooled class embedding exactly, since `cond = time(t) + pooled(y)`);
- `sae_pair`: the same difference written in the SAE's latents, `W_dec^T dz` restricted to the m
  latents with the largest `|mean z_b - mean z_a|` (the decompose selection, made source-aware);
- `sae_swap`: per-row SAE surgery with the error kept: a's m most a-selective latents set to 0, b's
  m most b-selective latents clamped to `s x` their class-b mean, `x + dec(z') - dec(z)`.

Pure tensor math over class means; the sampler plugs these in through `saekit.testbed.flow.Edit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.sae.base import SAE
from saekit.testbed.data import N_CLASSES
from saekit.testbed.flow import Edit, StepContext

PAIR_METHODS = ("dm_target", "dm_pair", "sae_pair", "sae_swap")


class SiteStats(NamedTuple):
    """Class statistics of one (block, stream) the pair edits are built from."""

    sae: SAE
    mean: Tensor
    """`[d]` global mean activation."""
    class_mean: Tensor
    """`[10, d]` mean activation per conditioning class."""
    latent_mean: Tensor
    """`[10, d_sae]` mean SAE latent per class."""


@torch.no_grad()
def site_stats(sae: SAE, acts_ND: Tensor, label_N: Tensor, batch: int = 8192) -> SiteStats:
    """Means the pair edits need, from one site's harvested rows and their class labels."""
    counts = torch.bincount(label_N, minlength=N_CLASSES).float().clamp_min(1)[:, None]
    sums = torch.zeros(N_CLASSES, acts_ND.shape[1]).index_add_(0, label_N, acts_ND.float())
    lat = torch.zeros(N_CLASSES, sae.d_sae)
    for i in range(0, len(acts_ND), batch):
        lat.index_add_(0, label_N[i : i + batch], sae.encode(acts_ND[i : i + batch]).float())
    return SiteStats(sae, acts_ND.float().mean(0), sums / counts, lat / counts)


def pair_features(stats: SiteStats, a: int, b: int, m: int) -> tuple[Tensor, Tensor]:
    """(b's m most b-over-a latents, a's m most a-over-b latents), by class-mean latent difference."""
    dz = stats.latent_mean[b] - stats.latent_mean[a]
    return dz.topk(m).indices, (-dz).topk(m).indices


def pair_vector(method: str, stats: SiteStats, a: int, b: int, m: int = 4) -> Tensor:
    """`[d]` the fixed vector a direction method adds at strength 1 (raw length, no normalisation)."""
    if method == "dm_target":
        return stats.class_mean[b] - stats.mean
    if method == "dm_pair":
        return stats.class_mean[b] - stats.class_mean[a]
    if method == "sae_pair":
        dz = stats.latent_mean[b] - stats.latent_mean[a]
        keep = dz.abs().topk(m).indices
        z = torch.zeros_like(dz)
        z[keep] = dz[keep]
        sae = stats.sae
        return (z.to(sae.dtype) @ sae.W_dec / sae.input_scale.to(sae.dtype)).float()
    raise SteeringError(f"{method!r} is not a fixed-vector pair method; use one of {PAIR_METHODS[:3]}")


def swap_rows(x_BTD: Tensor, stats: SiteStats, plan: SwapPlan) -> Tensor:
    """Per-row surgery: zero `plan.off` latents, clamp `plan.on` to `plan.value`; the error term kept."""
    sae = stats.sae
    flat = x_BTD.reshape(-1, x_BTD.shape[-1]).to(sae.dtype)
    rows = torch.arange(x_BTD.shape[0]).repeat_interleave(x_BTD.shape[1])
    z = sae.encode(flat)
    z2 = z.clone()
    z2.scatter_(1, plan.off[rows], 0.0)
    z2.scatter_(1, plan.on[rows], plan.value[rows].to(z2.dtype))
    out = flat + sae.decode(z2, flat) - sae.decode(z, flat)
    return out.reshape(x_BTD.shape).to(x_BTD.dtype)


class SwapPlan(NamedTuple):
    """Per-row latents of a swap: `on [B, m]` clamped to `value [B, m]`, `off [B, m]` zeroed."""

    on: Tensor
    value: Tensor
    off: Tensor


def swap_plan(stats: SiteStats, sources: Tensor, targets: Tensor, strengths: Tensor, m: int) -> SwapPlan:
    """The swap's latents and clamp values for rows with these (source, target, strength)."""
    on, val, off = [], [], []
    for a, b, s in zip(sources.tolist(), targets.tolist(), strengths.tolist()):
        f_on, f_off = pair_features(stats, a, b, m)
        on.append(f_on)
        off.append(f_off)  # a latent in both lists ends clamped: the clamp is applied after the zeroing
        val.append(s * stats.latent_mean[b, f_on])
    return SwapPlan(torch.stack(on), torch.stack(val), torch.stack(off))


def make_pair_edit(
    sites: Mapping[tuple[str, str], SiteStats],
    method: str,
    sources: Tensor,
    targets: Tensor,
    strengths: Tensor,
    steps: set[int],
    m: int = 4,
) -> Edit:
    """Edit callback steering row i from class `sources[i]` to `targets[i]` at `strengths[i]` on every
    listed site (conditional branch only, listed steps only)."""
    if method not in PAIR_METHODS:
        raise SteeringError(f"unknown pair method {method!r}; use one of {PAIR_METHODS}")
    prepared: dict[tuple[str, str], object] = {}
    for key, st in sites.items():
        if method == "sae_swap":
            prepared[key] = swap_plan(st, sources, targets, strengths, m)
        else:
            vecs = torch.stack(
                [pair_vector(method, st, a, b, m) for a, b in zip(sources.tolist(), targets.tolist())]
            )
            prepared[key] = vecs * strengths[:, None]

    def edit(ctx: StepContext, name: str, stream: str, x: Tensor) -> Tensor:
        p = prepared.get((name, stream))
        if p is None or ctx.branch != "cond" or ctx.step not in steps:
            return x
        if method == "sae_swap":
            return swap_rows(x, sites[name, stream], p)
        return x + p[:, None, :].to(x.dtype)

    return edit
