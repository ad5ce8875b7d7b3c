"""The testbed's ground truth: one judge per factor, fitted on real renders, accuracy known.

Each judge reads a factor from an image `[3, S, S]` in [0, 1] through pixel measurements, with a small
scikit-learn decision rule fitted on renders of the *training* digit images and scored on renders of
the *test* digit images:

- digit: the ink (max over channels) cropped to its bounding square, resized to 12x12, into an RBF SVM;
- colour: the ink-weighted mean RGB, brightness-normalised, into a logistic regression;
- thickness: the fraction of ink surviving a 3x3 erosion, the ink's fill of its box and its area;
- position: the ink's centre of mass;
- size: the ink's spread (weighted standard deviations) and its bounding-box side.

`FactorJudges.predict` returns every factor's prediction and confidence (the fitted rule's probability
of its answer, the digit SVM's softmaxed decision margins).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from saekit.testbed.fluxbed.render import FACTORS

INK = 0.3
"""Ink threshold on the max-over-channels brightness."""
CROP = 12


def _clean_mask(ink: torch.Tensor) -> torch.Tensor:
    """`[N, S, S]` bool ink mask without isolated pixels (fewer than 2 inked 3x3 neighbours)."""
    m = (ink > INK).float()
    neighbours = F.avg_pool2d(m[:, None], 3, stride=1, padding=1)[:, 0] * 9 - m
    return (m > 0) & (neighbours >= 2)


@dataclass
class PixelFeatures:
    """Per-image measurements `[N, ...]` the judges decide from (numpy, float32)."""

    crop: np.ndarray
    colour: np.ndarray
    thickness: np.ndarray
    position: np.ndarray
    size: np.ndarray


def pixel_features(images: torch.Tensor) -> PixelFeatures:
    """The measurements of `images [N, 3, S, S]` in [0, 1]."""
    x = images.detach().float().clamp(0, 1)
    n, _, s, _ = x.shape
    ink = x.amax(1)
    mask = _clean_mask(ink)
    w = ink * mask
    total = w.sum((1, 2)).clamp_min(1e-6)
    coords = torch.arange(s, dtype=torch.float32) / s
    cy = (w.sum(2) * coords).sum(1) / total
    cx = (w.sum(1) * coords).sum(1) / total
    sy = ((w.sum(2) * (coords[None] - cy[:, None]) ** 2).sum(1) / total).sqrt()
    sx = ((w.sum(1) * (coords[None] - cx[:, None]) ** 2).sum(1) / total).sqrt()
    rows, cols = mask.any(2), mask.any(1)
    idx = torch.arange(s)
    big = torch.full_like(rows, s, dtype=torch.long)
    y0 = torch.where(rows, idx, big).amin(1)
    y1 = torch.where(rows, idx, -1).amax(1)
    x0 = torch.where(cols, idx, big).amin(1)
    x1 = torch.where(cols, idx, -1).amax(1)
    h = (y1 - y0 + 1).clamp_min(0).float()
    wd = (x1 - x0 + 1).clamp_min(0).float()
    area = mask.float().sum((1, 2))
    eroded = -F.max_pool2d(-mask.float()[:, None], 3, stride=1, padding=1)[:, 0]
    survive = eroded.sum((1, 2)) / area.clamp_min(1)
    fill = area / (h * wd).clamp_min(1)
    rgb = (x * w[:, None]).sum((2, 3)) / total[:, None]
    rgb = rgb / rgb.amax(1, keepdim=True).clamp_min(1e-6)
    crops = torch.zeros(n, CROP * CROP)
    for i in range(n):
        if area[i] == 0:
            continue
        side = int(max(h[i], wd[i]))
        cy_i, cx_i = (int(y0[i]) + int(y1[i])) / 2, (int(x0[i]) + int(x1[i])) / 2
        top, left = round(cy_i - (side - 1) / 2), round(cx_i - (side - 1) / 2)
        padded = F.pad(ink[i], (s, s, s, s))
        patch = padded[top + s : top + s + side, left + s : left + s + side]
        small = F.interpolate(patch[None, None], size=(CROP, CROP), mode="bilinear", antialias=True)[0, 0]
        crops[i] = (small / small.max().clamp_min(1e-6)).flatten()
    return PixelFeatures(
        crop=crops.numpy(),
        colour=rgb.numpy(),
        thickness=torch.stack([survive, fill, area / s**2, h / s], 1).numpy(),
        position=torch.stack([cy, cx], 1).numpy(),
        size=torch.stack([sy, sx, h / s, wd / s], 1).numpy(),
    )


def _features_for(feats: PixelFeatures, factor: str) -> np.ndarray:
    return feats.crop if factor == "digit" else getattr(feats, factor)


@dataclass
class FactorJudges:
    """The five fitted judges; `accuracy` holds each one's accuracy on held-out real renders."""

    models: dict = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, images: torch.Tensor, factors: torch.Tensor, seed: int = 0) -> FactorJudges:
        """Fit every judge on real renders `images [N, 3, S, S]` with their true `factors [N, 5]`."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        feats = pixel_features(images)
        y = factors.numpy()
        models = {}
        for j, name in enumerate(FACTORS):
            if name == "digit":
                model = SVC(C=10.0, gamma="scale", random_state=seed)
            else:
                model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=2000))
            models[name] = model.fit(_features_for(feats, name), y[:, j])
        return cls(models=models)

    def predict(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(`predictions [N, 5]`, `confidence [N, 5]`) in FACTORS order for `images [N, 3, S, S]`."""
        feats = pixel_features(images)
        preds, conf = [], []
        for name in FACTORS:
            model, x = self.models[name], _features_for(feats, name)
            if name == "digit":
                margins = model.decision_function(x)
                p = np.exp(margins - margins.max(1, keepdims=True))
                p /= p.sum(1, keepdims=True)
            else:
                p = model.predict_proba(x)
            preds.append(model.classes_[p.argmax(1)])
            conf.append(p.max(1))
        return np.stack(preds, 1), np.stack(conf, 1)

    def score(self, images: torch.Tensor, factors: torch.Tensor) -> dict[str, float]:
        """Per-factor accuracy of the judges' predictions for `images` against `factors [N, 5]`, plus
        `all` (every factor right)."""
        pred, _ = self.predict(images)
        return factor_accuracy(pred, factors.numpy())


def factor_accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Per-factor accuracy of `pred [N, 5]` against `truth [N, 5]`, and `all` (every factor right)."""
    hit = pred == truth
    out = {name: float(hit[:, j].mean()) for j, name in enumerate(FACTORS)}
    out["all"] = float(hit.all(1).mean())
    return out
