"""Supervised sparse steering, its free twin, token-confidence selection, learned recipes: known answers."""

import json

import pytest
import torch

from saekit.errors import SteeringError
from saekit.steer.concept.supervised import (
    FitConfig,
    candidates_by_gradient,
    choose_k,
    fit_free,
    fit_sparse,
    loss_gradient,
)

from .conftest import make_sae, planted_sae


def _unit_rows(F: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(F, d, generator=g)
    return D / D.norm(dim=-1, keepdim=True)


def _linear_loss(d: int, target: torch.Tensor, seed: int = 1):
    """A linear 'model' `y = A v` trained to output `A v*`: the loss-optimal vector is exactly `v*`."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(3 * d, d, generator=g) / (3 * d) ** 0.5
    y = A @ target
    return lambda v: ((A @ v - y) ** 2).sum()


def test_sparse_fit_recovers_the_two_planted_features_and_their_weights():
    d, F = 32, 64
    D = _unit_rows(F, d, seed=0)
    v_star = 2.0 * D[11] + 1.0 * D[40]  # optimum in the span of 2 decoder directions
    loss = _linear_loss(d, v_star)
    cands = candidates_by_gradient(loss_gradient(loss, torch.zeros(d)), D, 16)
    assert {11, 40} <= set(cands)
    cfg = FitConfig(steps=300, refit_steps=300, lr=0.5, l1=0.01, k_grid=(1, 2, 4, 8), tolerance=0.02)
    fit = fit_sparse(loss, D, cands, scale=1.0, cfg=cfg)
    assert fit.k == 2
    assert fit.features == (11, 40)
    assert fit.weights == pytest.approx((2.0, 1.0), abs=0.05)
    assert torch.allclose(fit.vector, v_star, atol=0.08)
    # the validation losses fall to ~0 at k = 2 and do not improve much after
    assert fit.losses[2][1] < 0.01 * fit.base_loss[1]
    assert fit.losses[1][1] > 0.1 * fit.base_loss[1]


def test_free_fit_reaches_the_optimum_the_sparse_fit_cannot_when_it_is_dense():
    d, F = 16, 32
    D = _unit_rows(F, d, seed=2)
    v_star = torch.randn(d, generator=torch.Generator().manual_seed(3))  # not sparse in D
    loss = _linear_loss(d, v_star, seed=4)
    cfg = FitConfig(steps=300, refit_steps=100, lr=0.5, l1=0.0, k_grid=(1, 2))
    free = fit_free(loss, d, scale=1.0, cfg=cfg)
    assert torch.allclose(free.vector, v_star, atol=0.1)
    sparse = fit_sparse(loss, D, list(range(F)), scale=1.0, cfg=cfg)
    assert sparse.losses[sparse.k][0] > 10 * free.loss[0]  # the price of sparsity, measured


def test_sparse_weights_are_non_negative_and_scale_is_respected():
    d, F = 16, 24
    D = _unit_rows(F, d, seed=5)
    v_star = 30.0 * D[3]
    loss = _linear_loss(d, v_star, seed=6)
    cfg = FitConfig(steps=200, refit_steps=200, lr=0.5, l1=0.0, k_grid=(1,))
    fit = fit_sparse(loss, D, [3, 7, 9], scale=10.0, cfg=cfg)  # scale: the step length's unit
    assert fit.features == (3,) and fit.weights[0] == pytest.approx(30.0, rel=0.03)
    assert all(w >= 0 for w in fit.weights)


def test_choose_k_takes_the_smallest_within_tolerance():
    assert choose_k({1: 5.0, 2: 3.1, 4: 3.0, 8: 2.98}, base_val=6.0, tolerance=0.05) == 2
    assert choose_k({1: 5.0, 2: 4.0}, base_val=6.0, tolerance=0.0) == 2
    assert choose_k({1: 7.0, 2: 8.0}, base_val=6.0, tolerance=0.05) == 1  # nothing gains: smallest


def test_no_descending_direction_is_refused():
    D = _unit_rows(4, 3, seed=0)
    with pytest.raises(SteeringError, match="decreases the loss"):
        candidates_by_gradient(torch.zeros(3), D, 2)


def test_fit_config_validates():
    with pytest.raises(SteeringError, match="k_grid"):
        FitConfig(k_grid=())
    with pytest.raises(SteeringError, match="lr"):
        FitConfig(lr=0)


# ---------------------------------------------------------------- token confidence (tiny model)


def test_token_confidence_ranks_the_planted_feature_first(tiny_lm, tiny_tokenizer):
    from saekit.steer.concept.confidence import confidence_rises, rank_by_confidence

    hp = "model.layers.1"
    sae = planted_sae(tiny_lm, 17, hook_point=hp)  # feature 3 writes token 17's unembedding
    seqs = [(torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7])),
            (torch.tensor([9, 8]), torch.tensor([30, 31]))]  # fmt: skip
    D = sae.decoder_directions().detach()
    cands = [0, 1, 2, 3, 4, 5, 6, 7]
    rises = confidence_rises(tiny_lm, hp, D[cands], seqs, [17], length=8.0)
    sel = rank_by_confidence({j: float(r) for j, r in zip(cands, rises)}, k=2)
    assert sel.features[0] == 3
    others = torch.cat([rises[:3], rises[4:]])
    assert rises[3] > 0.3 and rises[3] > 2 * others.max()  # a clear rise for the planted token
    with pytest.raises(SteeringError, match="raises"):
        rank_by_confidence({0: -1.0, 1: 0.0})


def test_confidence_candidates_alternate_contrast_and_diffmean_cosine():
    from saekit.steer.concept.confidence import confidence_candidates

    D = torch.eye(6)
    contrast = torch.tensor([0.0, 5.0, 4.0, 0.0, 0.0, -1.0])
    diffmean = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.5, 0.0])
    flagged = torch.tensor([False, False, True, False, False, False])
    assert confidence_candidates(contrast, D, diffmean, 3, flagged) == [1, 3, 4]


def test_description_tokens_are_single_token_words(tiny_tokenizer):
    from saekit.steer.concept.confidence import description_token_ids

    # the word-level test tokenizer knows 'w12' etc.; stop words and unknown words give nothing
    assert description_token_ids(tiny_tokenizer, "and the of") == []


# ---------------------------------------------------------------- LM loss, fits and recipes (tiny model)


def test_packed_loss_equals_the_unpadded_per_sequence_loss(tiny_lm):
    from saekit.steer.concept.learned import frozen, lm_loss_fn

    hp = "model.layers.0"
    pairs = [(torch.tensor([3, 4, 5, 6]), torch.tensor([7, 8])),
             (torch.tensor([9, 10]), torch.tensor([11, 12, 13]))]  # fmt: skip
    v = torch.randn(32, generator=torch.Generator().manual_seed(0))
    before = [p.requires_grad for p in tiny_lm.parameters()]  # the session model: earlier tests may freeze it
    with frozen(tiny_lm):
        assert not any(p.requires_grad for p in tiny_lm.parameters())
        packed = float(lm_loss_fn(tiny_lm, hp, pairs)(v))
        from saekit.steer.apply import steering

        total, n = 0.0, 0
        for p, t in pairs:
            ids = torch.cat([p, t])[None]
            with torch.no_grad(), steering(tiny_lm, hp, lambda x: x + v):
                logits = tiny_lm(input_ids=ids).logits[0, p.numel() - 1 : -1]
            total += float(torch.nn.functional.cross_entropy(logits, t, reduction="sum"))
            n += t.numel()
    assert packed == pytest.approx(total / n, rel=1e-4)
    assert [p.requires_grad for p in tiny_lm.parameters()] == before  # restored as it was


def test_lm_fit_lowers_the_loss_and_picks_the_feature_that_writes_the_target(tiny_lm):
    """Targets are all token 17; only feature 3 of the planted SAE writes it."""
    from saekit.steer.concept.learned import Supervision, fit_concept

    hp = "model.layers.1"
    sae = planted_sae(tiny_lm, 17, hook_point=hp)
    pairs = [(torch.tensor([1, 2, 3]), torch.tensor([17, 17])), (torch.tensor([4, 5]), torch.tensor([17]))]
    sup = Supervision(train=pairs, val=pairs)
    cfg = FitConfig(steps=40, refit_steps=10, lr=0.5, n_candidates=4, k_grid=(1, 2))
    fits = fit_concept(tiny_lm, sae, hp, sup, scale=20.0, cfg=cfg)
    assert fits.sparse.features[0] == 3
    info = fits.info
    # the final RMSNorm caps what one added vector can do to the tiny model's logits: ~0.5 nats here
    assert info["sparse"]["losses"][str(info["sparse"]["k"])][1] < info["sparse"]["base_loss"][1] - 0.3
    assert info["free"]["loss"][1] < info["free"]["base_loss"][1] - 0.3
    assert fits.sparse.direction.norm() == pytest.approx(1.0, abs=1e-5)


def test_recipe_round_trips_and_rejects_other_files(tmp_path):
    from saekit.steer.concept.learned import LearnedRecipe, load_recipe, save_recipe

    sae = make_sae("relu", d_in=6, d_sae=10)
    r = LearnedRecipe("war", "war and battles", "model.layers.1", "sparse:additive", (3, 7), (2.5, 1.0),
                      info={"k": 2})  # fmt: skip
    back = load_recipe(save_recipe(r, tmp_path / "r.json"))
    assert back == r
    D = sae.decoder_directions().detach()
    assert torch.allclose(back.direction(sae), 2.5 * D[3] + 1.0 * D[7], atol=1e-6)
    assert back.describe() == "(f3, 2.5), (f7, 1)"
    free = LearnedRecipe("war", "war", "model.layers.1", "free", (), (), (1.0, 2.0, 2.0))
    assert load_recipe(save_recipe(free, tmp_path / "f.json")).direction().norm() == pytest.approx(3.0)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "saekit.sweep"}))
    with pytest.raises(SteeringError, match="not a saekit steering recipe"):
        load_recipe(tmp_path / "bad.json")
    with pytest.raises(SteeringError, match="out of range"):
        LearnedRecipe("x", "x", "h", "sparse:additive", (99,), (1.0,)).direction(sae)


def test_saekit_steer_applies_a_saved_recipe(tiny_lm, tiny_tokenizer, tmp_path):
    """`saekit steer --recipe` adds the recipe's vector: a recipe on the planted feature makes the
    tiny model write the planted token."""
    from saekit.models import LoadedModel
    from saekit.sae.io import save_sae
    from saekit.steer.concept.learned import LearnedRecipe, save_recipe
    from saekit.steer.run import SteerConfig, run

    hp = "model.layers.1"
    sae = planted_sae(tiny_lm, 17, hook_point=hp)
    save_sae(sae, tmp_path / "sae")
    path = save_recipe(LearnedRecipe("w17", "the word w17", hp, "sparse:additive", (3,), (40.0,)),
                       tmp_path / "r.json")  # fmt: skip
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    out = run(SteerConfig(sae=str(tmp_path / "sae"), prompt="w1 w2 w3", recipe=str(path), max_new_tokens=4,
                          chat=False), lm=lm)  # fmt: skip
    assert "(f3, 40)" in out
    steered = out.split("|")[-1]
    assert "w17" in steered


def test_arm_difference_pairs_test_units_at_each_arms_train_choice():
    from saekit.sweep.protocol import arm_difference

    recs = []
    for c in ("a", "b"):
        for pi, split in ((0, "train"), (1, "test"), (2, "test")):
            for arm, st, v in (("sparse:additive", "0.25norm", 0.6), ("sparse:additive", "0.5norm", 0.1),
                               ("free", "0.25norm", 0.2), ("free", "0.5norm", 0.4)):  # fmt: skip
                v = v + (0.01 * pi if split == "test" else 0)
                recs.append({"layer": 15, "arm": arm, "concept": c, "prompt_idx": pi, "split": split,
                             "strength": st, "overall": v})  # fmt: skip
    d = arm_difference(recs, "sparse:additive", "free")
    # train picks 0.25norm for sparse (0.6) and 0.5norm for free (0.4): 0.6 - 0.4 on every test unit
    assert d["n_pairs"] == 4 and d["difference"] == pytest.approx(0.2)
    assert d["difference_ci"] == pytest.approx([0.2, 0.2])
    assert arm_difference(recs, "sparse:additive", "diffmean") is None
