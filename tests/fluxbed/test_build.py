"""The CI-size build end to end through the CLI: a FluxPipeline folder that loads, and generations that
match their captions better than chance on at least one factor."""

from __future__ import annotations

import json

import pytest

from saekit.testbed.fluxbed.build import load_pipeline
from saekit.testbed.fluxbed.render import FACTORS


@pytest.mark.slow
def test_ci_build_end_to_end(tmp_path, capsys):
    from saekit.cli import main

    assert main(["testbed", "build", "--ci", "--out", str(tmp_path), "--config.quiet"]) == 0
    printed = capsys.readouterr().out
    assert "FluxPipeline.from_pretrained" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["flow_steps"] < 2000  # the CI configuration, not the full one
    for name in ("report.md", "samples_train.png", "samples_heldout.png", "build_config.json"):
        assert (tmp_path / name).is_file()
    judges = report["judge_accuracy_on_real_test_renders"]
    assert judges["colour"] > 0.95 and judges["position"] > 0.95
    gen = report["generation_accuracy"]["training_combinations"]
    chance = report["chance"]
    margin = {k: gen[k] - chance[k] for k in FACTORS}
    assert max(margin.values()) > 0.2, f"generations no better than chance: {gen}"
    pipe = load_pipeline(tmp_path / "pipeline")
    out = pipe(
        prompt="a large red 3 at the top left, thick strokes",
        height=32,
        width=32,
        num_inference_steps=2,
        output_type="pt",
    )
    assert out.images.shape == (1, 3, 32, 32)
