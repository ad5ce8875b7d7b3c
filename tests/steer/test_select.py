"""Feature selection against known answers: planted outliers, planted decompositions, a planted output
feature on a tiny LM, and SAE-TS against the closed-form optimum of a two-feature toy."""

import pytest
import torch

from saekit.errors import SteeringError
from saekit.steer.concept.output_score import concept_logmass, feature_output_scores
from saekit.steer.concept.select import (
    decompose_direction,
    flag_outliers,
    off_target_ratio,
    sae_ts_direction,
    select_by_input,
    select_by_output,
)
from saekit.steer.registry import register_method

from .conftest import make_sae


def _axis_sae(d_in=6, d_sae=10):
    """ReLU SAE whose feature i < d_in reads +x_i (threshold 1), feature 9 is always on (dense)."""
    sae = make_sae("relu", d_in=d_in, d_sae=d_sae)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[:, :d_in] = torch.eye(d_in)
        sae.b_enc.fill_(-1.0)
        sae.b_enc[9] = 5.0
        sae.b_dec.zero_()
    return sae


def test_flag_outliers_finds_the_outlier_driven_and_the_dense_feature():
    g = torch.Generator().manual_seed(0)
    sae = _axis_sae()
    acts = torch.randn(400, 6, generator=g)
    acts[:3] = 0
    acts[:3, 1] = 60.0  # three attention-sink-like rows along axis 1
    flagged = flag_outliers(sae, acts)
    assert flagged.nonzero().flatten().tolist() == [1, 9]


def test_decompose_recovers_a_planted_combination_and_skips_flagged():
    sae = make_sae("relu", d_in=12, d_sae=10)
    q, _ = torch.linalg.qr(torch.randn(12, 10, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        sae.W_dec.copy_(q.T * 3.0)  # orthogonal rows, norm 3 (directions are unit)
    v = 2.0 * q[:, 3] + 1.0 * q[:, 7]
    sel = decompose_direction(sae, v, k=4)
    assert set(sel.features) == {3, 7}
    assert sel.scores[3] == pytest.approx(2.0, abs=1e-4) and sel.scores[7] == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(sel.direction, v / v.norm(), atol=1e-5)
    flagged = torch.zeros(10, dtype=torch.bool)
    flagged[3] = True
    assert decompose_direction(sae, v, k=4, flagged=flagged).features == (7,)


def test_sae_ts_matches_the_closed_form_optimum():
    # target a_0 = e0 + e1; another feature reads e1. Best push: along e0 (raises the target, not the other)
    A = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    v = sae_ts_direction(A, [0], lam=1e4, mu=1e-3)
    assert float(v[0]) > 0.99
    naive = A[0] / A[0].norm()
    assert off_target_ratio(A, v, [0]) < 0.05 < off_target_ratio(A, naive, [0])
    # no penalty: the target's own direction
    assert torch.allclose(sae_ts_direction(A, [0], lam=0.0), naive, atol=1e-6)


def test_output_score_prefers_the_feature_that_produces_the_concept(tiny_lm):
    """Feature 2 writes token 5's unembedding direction, feature 4 its negative; feature 4 *fires* more
    on the concept rows, so input selection takes it and output selection must not."""
    hp = "model.layers.1"
    sae = make_sae("relu", d_in=32, d_sae=8, hook_point=hp)
    w5 = tiny_lm.lm_head.weight[5].detach()
    with torch.no_grad():
        sae.W_dec[2] = w5
        sae.W_dec[4] = -w5
        sae.W_enc.zero_()
        sae.W_enc[0, 4], sae.W_enc[1, 2] = 2.0, 1.0
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    pos = torch.zeros(20, 32)
    pos[:, 0], pos[:, 1] = 1.0, 1.0
    neg = torch.zeros(20, 32)
    by_input = select_by_input(sae, pos, neg, k=1)
    assert by_input.features == (4,)
    prompts = [torch.tensor([[1, 2, 3, 4]]), torch.tensor([[9, 8, 7]])]
    scores = feature_output_scores(tiny_lm, hp, sae, list(by_input.scores), prompts, [5], length=20.0)
    # the random init bounds logits to ~±0.7, so a saturated push moves the log-mass by ~0.8
    assert scores[2] > 0.4 and scores[4] < -0.4
    assert select_by_output(scores).features == (2,)
    with pytest.raises(SteeringError, match="raises the concept"):
        select_by_output({4: scores[4]})


def test_concept_logmass_is_log_of_summed_probability():
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    p = torch.softmax(logits, -1)[0]
    assert float(concept_logmass(logits, [1, 2])) == pytest.approx(float(torch.log(p[1] + p[2])))


def test_registry_refuses_a_duplicate_method_name():
    with pytest.raises(SteeringError, match="already registered"):
        register_method("clamp", space="latent", error_preserving=True)(lambda x, *a: x)
