"""Steering one stream of a tiny FLUX block; the steer command on a tiny model; CLI error paths."""

import torch

from saekit.hooks import capture
from saekit.steer.apply import steering
from saekit.steer.methods import additive

from .conftest import make_sae, planted_sae


def test_flux_block_image_stream_only(tiny_flux, flux_inputs):
    """`transformer_blocks.0@image` edits the image stream; the text stream output is untouched."""
    hp_img, hp_txt = "transformer_blocks.0@image", "transformer_blocks.0@text"
    with capture(tiny_flux, [hp_img, hp_txt]) as cap:
        tiny_flux(**flux_inputs)
    img, txt = cap.activations[hp_img], cap.activations[hp_txt]
    d = img.shape[-1]
    sae = make_sae("relu", d_in=d, d_sae=8)
    with steering(tiny_flux, hp_img, lambda x: additive(x, sae, [1], 3.0)):
        with capture(tiny_flux, [hp_img, hp_txt]) as cap2:
            tiny_flux(**flux_inputs)
    assert torch.equal(cap2.activations[hp_txt], txt)
    delta = cap2.activations[hp_img] - img
    assert torch.allclose(delta, (3.0 * sae.decoder_directions()[1]).expand_as(delta), atol=1e-5)


def test_steer_command_run(tmp_path, tiny_lm, tiny_tokenizer):
    from saekit.models import LoadedModel
    from saekit.steer.calibration import measure, save_calibration
    from saekit.steer.run import SteerConfig, run

    sae = planted_sae(tiny_lm, 17)
    sae.save(tmp_path / "sae")
    save_calibration(tmp_path / "sae", measure(sae, [torch.randn(64, 32)]))
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    text = run(
        SteerConfig(
            sae=str(tmp_path / "sae"),
            prompt="w1 w2 w3",
            feature=(3,),
            method="clamp",
            strength="40",
            max_new_tokens=6,
            chat=False,
        ),
        lm=lm,
    )
    assert "unsteered" in text and "steered (clamp 40)" in text
    assert "w17 w17" in text.split("|", 2)[-1] or text.count("w17") >= 3
    explained = run(SteerConfig(sae=str(tmp_path / "sae"), explain_prompt="w17 w4 w17 w5"), lm=lm)
    assert "\n       3 " in explained  # the planted feature fires on w17 and is listed
    assert "'w17'" in explained


def test_cli_errors(tmp_path, capsys):
    from saekit.cli import main

    assert main(["steer", "--sae", str(tmp_path / "missing"), "--prompt", "hi", "--feature", "1"]) == 1
    assert "not an SAE folder" in capsys.readouterr().err
    assert main(["sweep", "--sae", str(tmp_path / "missing")]) == 1
    assert "not an SAE folder" in capsys.readouterr().err


def test_explain_uses_analysis_json(tmp_path, tiny_lm, tiny_tokenizer):
    import json

    from saekit.models import LoadedModel
    from saekit.steer.run import SteerConfig, run

    sae = planted_sae(tiny_lm, 17)
    sae.save(tmp_path / "sae")
    doc = {
        "schema_version": 1,
        "format": "saekit.analysis",
        "features": {
            "3": {
                "index": 3,
                "top_examples": [{"activation": 5.0, "token": "w17"}, {"activation": 4.0, "token": "w42"}],
            }
        },
    }
    (tmp_path / "sae" / "analysis.json").write_text(json.dumps(doc))
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    out = run(SteerConfig(sae=str(tmp_path / "sae"), explain_prompt="w17 w4 w17 w5"), lm=lm)
    assert "top examples (analysis JSON): 'w17' 'w42'" in out


def test_steer_calibrates_an_sae_without_scales_and_says_which_arm_carried_the_concept(
    tmp_path, tiny_lm, tiny_tokenizer, capsys
):
    """A freshly trained SAE (no scales.json) steers in norm units: `saekit steer` measures the scales
    itself (as `saekit scale` would) and saves them beside the SAE; the concept path ends in a verdict."""
    from saekit.models import LoadedModel
    from saekit.steer.calibration import load_calibration
    from saekit.steer.run import SteerConfig, _verdict, run

    sae = planted_sae(tiny_lm, 17)
    sae.save(tmp_path / "sae")
    assert load_calibration(tmp_path / "sae", d_sae=sae.d_sae) is None
    lm = LoadedModel(tiny_lm, tiny_tokenizer, "tiny", "causal_lm", "float32", 32, 2)
    cfg = SteerConfig(sae=str(tmp_path / "sae"), prompt="w1 w2 w3", feature=(3,), method="clamp",
                      strength="2norm", max_new_tokens=4, chat=False)  # fmt: skip
    text = run(cfg, lm=lm)
    assert "no scales.json; calibrating" in capsys.readouterr().out
    cal = load_calibration(tmp_path / "sae", d_sae=sae.d_sae)
    assert cal is not None and "steered (clamp 2norm)" in text
    # the verdict line, from the kept arm and the judges' concept score
    arm = type("Arm", (), {"name": "output:additive", "features": (3, 9)})()
    res = type("Res", (), {"arm": arm})()
    verdict = _verdict(res, {"concept_score": 0.7, "fluency": 0.9}, "x")
    assert "SAE arm output:additive carried 'x' (features f3, f9)" in verdict
    res.arm = type("Arm", (), {"name": "diffmean", "features": ()})()
    assert "no SAE arm carried 'x'" in _verdict(res, {"concept_score": 1.0, "fluency": 0.9}, "x")
    assert "did not see 'x'" in _verdict(res, {"concept_score": 0.0, "fluency": 0.9}, "x")
    assert "did not see 'x'" in _verdict(res, {"concept_score": 1.0, "fluency": 0.0}, "x")  # unreadable
