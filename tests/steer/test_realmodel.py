"""`saekit scale` and `saekit steer` end to end on the embedded SmolLM2 (bf16) with a random fp32 SAE."""

import json

import pytest


@pytest.mark.realmodel
def test_scale_then_steer_smollm2(tmp_path, capsys):
    from saekit.cli import main
    from saekit.sae import Provenance, SAEConfig, build

    cfg = SAEConfig(
        d_in=576,
        d_sae=1152,
        arch="topk",
        k=16,
        provenance=Provenance(model="smollm2", hook_point="model.layers.15", layer=15),
    )
    build(cfg, seed=0).save(tmp_path / "sae")
    assert (
        main(["scale", "--sae", str(tmp_path / "sae"), "--tokens", "256", "--context-len", "64", "--quiet"])
        == 0
    )
    meta = json.loads((tmp_path / "sae" / "scales.json").read_text())
    assert meta["n_tokens"] >= 200 and meta["hook_point"] == "model.layers.15"
    assert 10 < meta["mean_norm"] < 1e4  # a real residual-stream norm, not a placeholder
    capsys.readouterr()
    from safetensors.torch import load_file

    fired = int(
        load_file(str(tmp_path / "sae" / "scales.safetensors"))["max_active"].argmax()
    )  # a feature that fired
    rc = main(
        [
            "steer",
            "--sae",
            str(tmp_path / "sae"),
            "--feature",
            str(fired),
            "--method",
            "clamp",
            "--strength",
            "1norm",
            "--prompt",
            "Tell me about your day.",
            "--max-new-tokens",
            "12",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "unsteered" in out and "steered (clamp 1norm)" in out
    left = [line.split(" | ")[0].strip() for line in out.splitlines() if " | " in line][2:]
    right = [line.split(" | ")[1].strip() for line in out.splitlines() if " | " in line][2:]
    assert " ".join(left) != " ".join(right)
