"""Which SAE feature tracks each class, the DiffMean directions, and the scales strengths refer to."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from saekit.sae.base import SAE
from saekit.testbed.data import N_CLASSES


class ClassFeatures(NamedTuple):
    """Per-class steering evidence for one (block, stream)."""

    feature: Tensor
    """`[10]` int64: the most class-selective SAE latent per class."""
    selectivity: Tensor
    """`[10]`: mean activation on the class minus the largest mean on any other class."""
    feature_max: Tensor
    """`[10]`: observed max latent value of each chosen feature (the `max` strength unit)."""
    diffmean: Tensor
    """`[10, d]` unit DiffMean directions (class mean minus global mean)."""
    diffmean_max: Tensor
    """`[10]`: max over rows of the centred projection on each DiffMean direction (its `max` unit)."""
    mean_norm: float
    """Mean activation norm at this hook/stream (the `norm` unit)."""
    class_means: Tensor
    """`[10, d_sae]` mean latent activation per class (for reports)."""
    directions: dict | None = None
    """Direction method -> `[10, d]` unit vectors: `decompose` (DiffMean written in <= 4 SAE decoder
    directions) and `sae_ts` (SAE-targeted vector for the class feature); see saekit.steer.concept.select."""
    directions_max: dict | None = None
    """Direction method -> `[10]` max centred projection on it (the `max` unit)."""


@torch.no_grad()
def class_features(sae: SAE, acts_ND: Tensor, label_N: Tensor, batch: int = 8192) -> ClassFeatures:
    """Mean latents per class -> most selective feature per class; DiffMean per class."""
    sums = torch.zeros(N_CLASSES, sae.d_sae)
    counts = torch.bincount(label_N, minlength=N_CLASSES).float()
    fmax = torch.zeros(sae.d_sae)
    for i in range(0, len(acts_ND), batch):
        f = sae.encode(acts_ND[i : i + batch]).float()
        sums.index_add_(0, label_N[i : i + batch], f)
        fmax = torch.maximum(fmax, f.max(0).values)
    means = sums / counts.clamp_min(1)[:, None]
    best_other = torch.stack([torch.cat([means[:c], means[c + 1 :]]).max(0).values for c in range(N_CLASSES)])
    score = means - best_other
    sel, feat = score.max(dim=1)
    mu = acts_ND.mean(0)
    cls_mu = torch.stack([acts_ND[label_N == c].mean(0) for c in range(N_CLASSES)])
    dirs = cls_mu - mu
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    proj = (acts_ND - mu) @ dirs.T
    extra = sae_directions(sae, cls_mu - mu, feat)
    extra_max = {k: ((acts_ND - mu) @ v.T).max(0).values for k, v in extra.items()}
    return ClassFeatures(
        feat, sel, fmax[feat], dirs, proj.max(0).values, float(acts_ND.norm(dim=-1).mean()), means,
        extra, extra_max,
    )  # fmt: skip


def sae_directions(sae: SAE, diffmean_CD: Tensor, feature_C: Tensor) -> dict[str, Tensor]:
    """Per class: the DiffMean decomposition and the SAE-TS vector of its feature (unit `[10, d]` each)."""
    from saekit.errors import SteeringError
    from saekit.steer.concept.select import decompose_direction, encoder_effects, sae_ts_direction

    effects = encoder_effects(sae)
    dec, ts = [], []
    for c in range(N_CLASSES):
        try:
            dec.append(decompose_direction(sae, diffmean_CD[c], k=4).direction)
        except SteeringError:  # no decoder direction overlaps: fall back to DiffMean itself
            dec.append(diffmean_CD[c] / diffmean_CD[c].norm().clamp_min(1e-12))
        ts.append(sae_ts_direction(effects, [int(feature_C[c])], lam=1.0))
    return {"decompose": torch.stack(dec).float(), "sae_ts": torch.stack(ts).float()}
