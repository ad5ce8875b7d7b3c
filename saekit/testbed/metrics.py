"""How well a steered generation hit its target and how much it still looks like a digit."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from saekit.testbed.classifier import DigitClassifier


class RowMetrics(NamedTuple):
    """Per generated image."""

    success: Tensor
    """`[B]` bool: classifier's argmax is the target."""
    confidence: Tensor
    """`[B]` classifier probability of the target."""
    nn_dist: Tensor
    """`[B]` L2 distance (pixels in [-1, 1], 64 dims) to the nearest real training digit."""
    change: Tensor
    """`[B]` L2 distance to the unsteered image from the same noise."""


@torch.no_grad()
def nearest_real_distance(img_BHW: Tensor, real_NHW: Tensor) -> Tensor:
    return (
        torch.cdist(img_BHW.reshape(len(img_BHW), -1), real_NHW.reshape(len(real_NHW), -1)).min(dim=1).values
    )


@torch.no_grad()
def row_metrics(
    clf: DigitClassifier, img_BHW: Tensor, target_B: Tensor, real_NHW: Tensor, base_BHW: Tensor
) -> RowMetrics:
    probs = clf(img_BHW).softmax(-1)
    conf = probs.gather(1, target_B[:, None]).squeeze(1)
    return RowMetrics(
        probs.argmax(-1) == target_B,
        conf,
        nearest_real_distance(img_BHW, real_NHW),
        (img_BHW - base_BHW).reshape(len(img_BHW), -1).norm(dim=-1),
    )


def summarize(m: RowMetrics, realistic_threshold: float) -> dict[str, float]:
    """Means over rows, plus `faithful_success`: hit the target AND within the real-digit NN distance."""
    realistic = m.nn_dist <= realistic_threshold
    return {
        "success": float(m.success.float().mean()),
        "confidence": float(m.confidence.mean()),
        "nn_dist": float(m.nn_dist.mean()),
        "realistic": float(realistic.float().mean()),
        "faithful_success": float((m.success & realistic).float().mean()),
        "change": float(m.change.mean()),
    }


def bootstrap_rate_ci(hits_B: Tensor, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% interval of a rate, resampling the generations with replacement."""
    n = len(hits_B)
    if n == 0:
        return (float("nan"), float("nan"))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=g)
    means = hits_B.float()[idx].mean(1).sort().values
    return (float(means[int(0.025 * n_boot)]), float(means[min(n_boot - 1, int(0.975 * n_boot))]))


def intervals(m: RowMetrics, realistic_threshold: float, seed: int = 0) -> dict[str, list[float]]:
    """Bootstrap 95% intervals of success and faithful success over the generations."""
    faithful = m.success & (m.nn_dist <= realistic_threshold)
    return {
        "success_ci": list(bootstrap_rate_ci(m.success, seed=seed)),
        "faithful_success_ci": list(bootstrap_rate_ci(faithful, seed=seed)),
        "n": len(m.success),
    }
