"""A transcoder spliced in place of the module it predicts: the module's output replaced by the
transcoder's prediction from the module's input, in the same forward pass."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from saekit.eval import eval_positions, spliced_metrics
from saekit.eval.evaluate import EvalConfig, evaluate
from saekit.sae import SAEConfig, build
from saekit.sae.config import Provenance

MLP = "model.layers.0.mlp"


@pytest.fixture(scope="module")
def linear_mlp_lm(char_tokenizer):
    """A tiny Llama whose first MLP is a plain linear map (so a skip transcoder can copy it exactly)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from saekit.models import LoadedModel

    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    linear = nn.Linear(32, 32, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(32, 32) * 0.5)
    model.model.layers[0].mlp = linear
    with torch.no_grad():  # a random init predicts near-uniformly: sharpen it so CE and KL can move
        model.lm_head.weight.mul_(30)
    return LoadedModel(model, char_tokenizer, "tiny-linear-mlp", "causal_lm", "float32", 32, 2)


def _copy_transcoder(weight: torch.Tensor, skip_scale: float = 1.0, noise: float = 0.0):
    """A skip transcoder whose prediction is `x @ (skip_scale * weight.T + noise * R)` (R a fixed random
    matrix): its latents decode to zero."""
    cfg = SAEConfig(
        d_in=32, d_sae=16, k=2, transcode=True, skip_connection=True, normalization="none",
        provenance=Provenance(model="tiny-linear-mlp", hook_point=f"{MLP}:in", target_hook_point=MLP),
    )  # fmt: skip
    tc = build(cfg, seed=0).eval()
    with torch.no_grad():
        tc.W_dec.zero_()
        R = torch.randn(32, 32, generator=torch.Generator().manual_seed(5))
        tc.W_skip.copy_(weight.T * skip_scale + noise * R)
    return tc


def _ids(n=4, t=16):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 64, (n, t), generator=g)
    ids[:, 0] = 0
    return ids, torch.ones(n, t, dtype=torch.bool)


def _predict(tc):
    return lambda x: tc.reconstruct(x.float()).to(x.dtype)


def test_exact_copy_spliced_in_place_of_the_mlp_gives_the_clean_ce(linear_mlp_lm):
    torch.set_num_threads(1)
    model = linear_mlp_lm.model
    weight = model.model.layers[0].mlp.weight.detach()
    ids, mask = _ids()
    pos = eval_positions(ids, mask, {0, 1})
    exact = _copy_transcoder(weight)
    m = spliced_metrics(model, MLP, _predict(exact), ids, mask, pos, batch_size=2, source_hook=f"{MLP}:in")
    assert m.ce_sae == pytest.approx(m.ce_orig, abs=1e-5) and m.kl < 1e-6
    assert m.ce_recovered == pytest.approx(1.0, abs=1e-4)
    assert abs(m.ce_mean - m.ce_orig) > 1e-2, "ablating this MLP must matter, or the check says nothing"
    # a transcoder that is not an exact copy moves the CE: the splice really uses its prediction
    wrong = _copy_transcoder(weight, noise=0.3)
    w = spliced_metrics(model, MLP, _predict(wrong), ids, mask, pos, batch_size=2, source_hook=f"{MLP}:in")
    assert w.kl > 1e-4 and abs(w.ce_sae - w.ce_orig) > 1e-4
    assert w.ce_orig == pytest.approx(m.ce_orig, rel=1e-6) and w.ce_zero == pytest.approx(m.ce_zero, rel=1e-6)


def test_saekit_eval_reports_prediction_fvu_and_splice_from_provenance(linear_mlp_lm, tmp_path, corpus_file):
    torch.set_num_threads(1)
    weight = linear_mlp_lm.model.model.layers[0].mlp.weight.detach()
    _copy_transcoder(weight).save(tmp_path / "exact")
    cfg = EvalConfig(sae="", corpus=str(corpus_file), tokens=100, context_len=32, quiet=True)
    rep = evaluate(replace(cfg, sae=str(tmp_path / "exact")), loaded=linear_mlp_lm)
    assert (rep["hook_point"], rep["source_hook_point"]) == (MLP, f"{MLP}:in")
    assert rep["heldout_metrics"]["fvu"] < 1e-10  # the prediction of the MLP's output is exact
    assert rep["spliced"]["kl"] < 1e-6
    assert rep["spliced"]["ce_sae"] == pytest.approx(rep["spliced"]["ce_orig"], abs=1e-5)
    half = _copy_transcoder(weight, skip_scale=0.5)
    half.save(tmp_path / "half")
    rep = evaluate(replace(cfg, sae=str(tmp_path / "half")), loaded=linear_mlp_lm)
    # predicting half the output leaves a quarter of its (uncentred) energy; centred FVU is near that
    assert 0.1 < rep["heldout_metrics"]["fvu"] < 0.5
