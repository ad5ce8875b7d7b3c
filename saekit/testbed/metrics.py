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
