"""The factor judges recover the factors the renderer drew, on digit images they never saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saekit.testbed.fluxbed.judges import FactorJudges, factor_accuracy, pixel_features
from saekit.testbed.fluxbed.render import digit_split, render, sample_factors


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    train, test = digit_split(0)
    fit_on = render(*sample_factors(train, 1500, rng, heldout=None), rng)
    held = render(*sample_factors(test, 400, rng, heldout=None), rng)
    return FactorJudges.fit(fit_on.images, fit_on.factors), held


def test_judges_recover_rendered_factors_on_test_digit_images(fitted):
    judges, held = fitted
    acc = judges.score(held.images, held.factors)
    assert acc["colour"] >= 0.97
    assert acc["position"] >= 0.97
    assert acc["size"] >= 0.95
    assert acc["thickness"] >= 0.9
    assert acc["digit"] >= 0.8  # sklearn's 8x8 digits, after rescaling and re-cropping


def test_judges_on_blank_or_noise_images_are_near_chance_not_perfect(fitted):
    judges, held = fitted
    noise = torch.rand(len(held.images), 3, 32, 32, generator=torch.Generator().manual_seed(0))
    acc = judges.score(noise, held.factors)
    assert acc["all"] < 0.05
    assert acc["digit"] < 0.3


def test_pixel_features_measure_a_known_square():
    img = torch.zeros(1, 3, 32, 32)
    img[0, 1, 4:10, 20:26] = 1.0  # green 6x6 square, top right
    f = pixel_features(img)
    cy, cx = f.position[0]
    assert cy == pytest.approx(6.5 / 32, abs=1e-4) and cx == pytest.approx(22.5 / 32, abs=1e-4)
    np.testing.assert_allclose(f.colour[0], [0.0, 1.0, 0.0], atol=1e-6)
    assert f.size[0][2] == pytest.approx(6 / 32)  # bounding-box height
    assert f.thickness[0][0] == pytest.approx(16 / 36)  # a 3x3 erosion keeps the 4x4 interior


def test_factor_accuracy_counts_rows_right():
    truth = np.array([[1, 2, 0, 3, 1], [4, 0, 1, 2, 0]])
    pred = np.array([[1, 2, 0, 3, 1], [4, 1, 1, 2, 0]])
    acc = factor_accuracy(pred, truth)
    assert acc["digit"] == 1.0 and acc["colour"] == 0.5 and acc["all"] == 0.5
