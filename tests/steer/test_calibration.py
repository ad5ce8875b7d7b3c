"""Calibration: statistics against a direct computation, storage round trip, clear errors."""

import json

import pytest
import torch

from saekit.errors import SteeringError
from saekit.steer.calibration import calibrate_model, load_calibration, measure, save_calibration

from .conftest import make_sae


def test_measure_matches_reference():
    sae = make_sae("relu", d_in=6, d_sae=10, seed=2)
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0)) * 2
    cal = measure(sae, [x[:20], x[20:]])
    f = sae.encode(x).detach()
    norms = x.norm(dim=-1)
    assert cal.n_tokens == 50
    assert cal.mean_norm == pytest.approx(float(norms.mean()), rel=1e-5)
    assert cal.median_norm == pytest.approx(float(norms.median()), rel=1e-5)
    for j in range(10):
        col = f[:, j]
        act = col[col > 0]
        assert float(cal.freq[j]) == pytest.approx(act.numel() / 50)
        assert float(cal.max_active[j]) == pytest.approx(float(act.max()) if act.numel() else 0.0, rel=1e-5)
        assert float(cal.mean_active[j]) == pytest.approx(float(act.mean()) if act.numel() else 0.0, rel=1e-5)


def test_save_load_round_trip(tmp_path):
    sae = make_sae("topk", d_in=6, d_sae=10, k=3)
    cal = measure(sae, [torch.randn(30, 6)], hook_point="model.layers.1", model="tiny", corpus="x")
    save_calibration(tmp_path, cal)
    meta = json.loads((tmp_path / "scales.json").read_text())
    assert meta["schema_version"] == 1 and meta["hook_point"] == "model.layers.1"
    back = load_calibration(tmp_path, d_sae=10)
    assert back.mean_norm == cal.mean_norm and back.n_tokens == 30
    assert torch.equal(back.max_active, cal.max_active)
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(SteeringError, match="another SAE"):
        load_calibration(tmp_path, d_sae=11)


def test_missing_calibration(tmp_path):
    assert load_calibration(tmp_path) is None
    with pytest.raises(SteeringError, match="saekit scale --sae"):
        load_calibration(tmp_path, required=True)


def test_calibrate_model_skips_first_token(tiny_lm, tiny_tokenizer):
    from saekit.hooks import capture

    sae = make_sae("relu", d_in=32, d_sae=16, hook_point="model.layers.0")
    texts = ["w1 w2 w3 w4 w5", "w6 w7 w8"]
    cal = calibrate_model(tiny_lm, tiny_tokenizer, sae, "model.layers.0", texts, tokens=100)
    rows = []
    for t in texts:
        with capture(tiny_lm, "model.layers.0") as cap:
            tiny_lm(input_ids=torch.tensor([tiny_tokenizer(t)["input_ids"]]))
        rows.append(cap.activations["model.layers.0"][0, 1:])
    ref = torch.cat(rows)
    assert cal.n_tokens == ref.shape[0] == 6
    assert cal.mean_norm == pytest.approx(float(ref.norm(dim=-1).mean()), rel=1e-4)
