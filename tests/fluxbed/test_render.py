"""The testbed's renders, captions and splits: known factors in, the same factors out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saekit.testbed.fluxbed.render import (
    CANVAS,
    COLOURS,
    FACTORS,
    N_VALUES,
    Factors,
    caption,
    digit_split,
    is_heldout_combo,
    load_digit_images,
    parse_caption,
    render,
    sample_factors,
)
from saekit.testbed.fluxbed.tokenizer import UNK_ID, build_tokenizer


def _every_combo() -> np.ndarray:
    grids = np.meshgrid(*(np.arange(N_VALUES[k]) for k in FACTORS), indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def test_caption_parse_round_trips_for_every_combination():
    for row in _every_combo():
        f = Factors(*(int(v) for v in row))
        assert parse_caption(caption(f)) == f


def test_caption_reads_as_documented():
    assert caption(Factors(3, 0, 0, 0, 0)) == "a small red 3 at the top left, thin strokes"
    assert parse_caption("a large cyan 7 at the bottom right, thick strokes") == Factors(7, 5, 1, 3, 1)


@pytest.mark.parametrize("bad", ["a small red 3", "a huge red 3 at the top left, thin strokes", ""])
def test_parse_caption_refuses_other_text(bad):
    with pytest.raises(ValueError, match="not a testbed caption"):
        parse_caption(bad)


def test_tokenizer_knows_every_caption_word():
    tok = build_tokenizer("t5", 32)
    for row in _every_combo()[::7]:
        ids = tok(caption(Factors(*(int(v) for v in row)))).input_ids
        assert UNK_ID not in ids
    assert UNK_ID in tok("a purple 3").input_ids


def test_digit_split_is_disjoint_and_covers_every_digit():
    train, test = digit_split(0)
    _, labels = load_digit_images()
    assert not set(train) & set(test)
    assert len(train) + len(test) == len(labels)
    assert set(labels[test]) == set(range(10)) == set(labels[train])
    assert 0.2 < len(test) / len(labels) < 0.3


def test_heldout_combinations_leave_every_value_in_training():
    combos = _every_combo()
    held = is_heldout_combo(combos)
    assert 0.1 < held.mean() < 0.15
    for j, name in enumerate(FACTORS):
        assert set(combos[~held, j]) == set(range(N_VALUES[name]))
    rng = np.random.default_rng(0)
    train, _ = digit_split(0)
    _, f = sample_factors(train, 300, rng, heldout=False)
    assert not is_heldout_combo(f).any()
    _, f = sample_factors(train, 300, rng, heldout=True)
    assert is_heldout_combo(f).all()


def test_render_puts_the_right_colour_in_the_right_quadrant():
    train, _ = digit_split(0)
    _, labels = load_digit_images()
    src = train[:4]
    factors = np.array([[labels[s], c, 1, pos, 1] for s, c, pos in zip(src, (0, 1, 2, 3), (0, 1, 2, 3))])
    r = render(src, factors, np.random.default_rng(0), jitter=0)
    assert r.images.shape == (4, 3, CANVAS, CANVAS)
    half = CANVAS // 2
    for i, pos in enumerate((0, 1, 2, 3)):
        img = r.images[i]
        quads = [img[:, :half, :half], img[:, :half, half:], img[:, half:, :half], img[:, half:, half:]]
        mass = torch.stack([q.sum() for q in quads])
        assert int(mass.argmax()) == pos
        ink = img[:, img.amax(0) >= img.amax() - 1e-6]  # fully opaque pixels
        colour = torch.tensor(list(COLOURS.values())[i])
        assert torch.allclose(ink.mean(1), colour, atol=0.02)
    assert r.captions[0].startswith("a large red")


def test_render_refuses_a_digit_factor_that_is_not_the_image_label():
    _, labels = load_digit_images()
    wrong = (labels[0] + 1) % 10
    with pytest.raises(ValueError, match="label"):
        render(np.array([0]), np.array([[wrong, 0, 0, 0, 0]]), np.random.default_rng(0))
