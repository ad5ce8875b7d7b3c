"""`saekit eval` on a foreign single-file SAE: the same numbers as on the native SAE it was made from,
with the report written beside the file. (Every verb opens SAEs through saekit.load.)"""

from __future__ import annotations

import json

import pytest
import torch

from saekit.eval.evaluate import EvalConfig, evaluate
from saekit.sae import SAEConfig, build


def test_eval_of_a_gytdau_pth_matches_the_native_sae(tmp_path, tiny_lm):
    sae = build(SAEConfig(d_in=32, d_sae=64, arch="relu"), seed=3)
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1)
        sae.b_enc.normal_(0, 0.1)
    sae.save(tmp_path / "native")
    pth = tmp_path / "clip_sae.pth"  # the same SAE in gytdau's layout: relu(encoder(x) + enc_bias)
    torch.save(
        {
            "encoder.weight": sae.W_enc.detach().T.clone(),
            "enc_bias": (sae.b_enc - sae.b_dec @ sae.W_enc).detach(),
            "decoder.weight": sae.W_dec.detach().T.clone(),
            "dec_bias": sae.b_dec.detach().clone(),
        },
        pth,
    )
    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 6 + "\n")
    reports = []
    for path in (tmp_path / "native", pth):
        cfg = EvalConfig(
            sae=str(path),
            model="tiny-llama",
            hook_point="model.layers.0",
            corpus=str(tmp_path / "corpus.txt"),
            tokens=120,
            context_len=32,
            device="cpu",
            quiet=True,
        )
        reports.append(evaluate(cfg, loaded=tiny_lm))
    native, foreign = reports
    assert foreign["spliced"]["ce_sae"] == pytest.approx(native["spliced"]["ce_sae"], rel=1e-5)
    assert foreign["heldout_metrics"]["fvu"] == pytest.approx(native["heldout_metrics"]["fvu"], rel=1e-4)
    written = json.loads((tmp_path / "clip_sae" / "eval" / "eval.json").read_text())
    assert written["spliced"]["ce_sae"] == foreign["spliced"]["ce_sae"]
