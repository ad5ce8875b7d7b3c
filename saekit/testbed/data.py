"""The 8x8 digits that ship with scikit-learn, scaled to [-1, 1] and cut into 2x2 patches."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

IMAGE_SIDE = 8
"""Digits are 8x8 pixels."""
N_CLASSES = 10


class DigitSplits(NamedTuple):
    """Train/test split of the digits; images `[n, 8, 8]` in [-1, 1], labels `[n]` int64."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


def load_digit_splits(test_fraction: float = 0.2, seed: int = 0) -> DigitSplits:
    """Load `sklearn.datasets.load_digits` (bundled, no download) and split it reproducibly."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32) / 16.0 * 2.0 - 1.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.tensor(np.random.default_rng(seed).permutation(len(y)))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return DigitSplits(x[train], y[train], x[test], y[test])


def patchify(img_BHW: Tensor, patch: int) -> Tensor:
    """`[B, 8, 8]` -> `[B, T, patch*patch]` tokens in row-major patch order."""
    B, H, W = img_BHW.shape
    g = H // patch
    x = img_BHW.reshape(B, g, patch, g, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(B, g * g, patch * patch)


def unpatchify(tok_BTP: Tensor, patch: int) -> Tensor:
    """Inverse of `patchify`: `[B, T, patch*patch]` -> `[B, 8, 8]`."""
    B, T, _ = tok_BTP.shape
    g = int(round(T**0.5))
    x = tok_BTP.reshape(B, g, g, patch, patch).permute(0, 1, 3, 2, 4)
    return x.reshape(B, g * patch, g * patch)
