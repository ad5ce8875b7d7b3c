"""`saekit sweep --model <fluxbed pipeline>` end to end on an untrained pipeline folder: the plumbing of
the image factor sweep (selection in the loop, the arms, judging, files), with one known answer: at
strength 0 every arm leaves the image as it was, so its faithful success equals the unsteered rate."""

from __future__ import annotations

import json

import torch

from saekit.cli import main as cli
from saekit.testbed.fluxbed import components as C
from saekit.testbed.fluxbed.build import save_pipeline
from saekit.testbed.fluxbed.config import ci_config


def test_factor_sweep_runs_and_strength_zero_changes_nothing(tmp_path):
    cfg = ci_config(judge_train_renders=300, judge_test_renders=60)
    torch.manual_seed(0)
    path = save_pipeline(C.pipeline_parts(cfg), tmp_path)
    (tmp_path / "build_config.json").write_text(json.dumps(cfg.to_dict()))
    store, sae = tmp_path / "acts", tmp_path / "sae"
    argv = ["harvest", "diffusion", "--model", str(path), "--hook-point", "transformer_blocks.0@image",
            "--prompt", "a small red 3 at the top left, thin strokes",
            "--prompt", "a large blue 7 at the bottom right, thick strokes",
            "--num-inference-steps", "2", "--tokens-per-step", "0", "--height", "32", "--width", "32",
            "--dtype", "float32", "--device", "cpu", "--out", str(store), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    argv = ["train", "--acts", str(store), "--out", str(sae), "--k", "4", "--expansion", "2",
            "--batch-size", "64", "--quiet", "--init-sample", "128", "--device", "cpu"]  # fmt: skip
    assert cli(argv) == 0
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", str(path), "--sae", str(sae), "--factor", "size", "--targets", "large",
            "--strengths", "0", "--methods", "additive", "--n-select", "2", "--n-train", "2",
            "--n-test", "3", "--num-inference-steps", "2", "--batch", "4", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    res = json.loads((out / "results.json").read_text())
    t = res["test"]
    assert t["sae"]["n"] == 3 and (out / "table.md").is_file() and (out / "contact.png").stat().st_size > 0
    # strength 0: the steered images are the unsteered ones, so "faithful success" is the rate at which
    # the unsteered image already reads the target
    for arm in ("sae", "diffmean"):
        assert t[arm]["faithful_success"] == t["unsteered"]["faithful_success"], arm
    assert t["sae_minus_diffmean"]["difference"] == 0.0
    assert res["per_target"][0]["target"] == "large" and len(res["per_target"][0]["features"]) == 1
