"""`saekit sweep --model <pipeline> --loras <folder>` end to end on an untrained fluxbed folder: the LoRA arm
runs beside the SAE and DiffMean arms on the same prompts, with a known answer: at LoRA scale 0 (and
steering strength 0) every arm's image is the unsteered one, so every faithful success equals the rate at
which the unsteered image already reads the target, and every paired difference is exactly 0."""

from __future__ import annotations

import json

import pytest
import torch

from saekit.cli import main as cli
from saekit.errors import SteeringError
from saekit.sweep.image_factors import FactorSweepConfig
from saekit.sweep.image_lora import LoraSweepConfig, run_lora_sweep
from saekit.testbed.fluxbed import components as C
from saekit.testbed.fluxbed.build import save_pipeline
from saekit.testbed.fluxbed.config import ci_config


def test_lora_arm_at_scale_zero_changes_nothing(tmp_path):
    cfg = ci_config(judge_train_renders=300, judge_test_renders=60)
    torch.manual_seed(0)
    path = save_pipeline(C.pipeline_parts(cfg), tmp_path)
    (tmp_path / "build_config.json").write_text(json.dumps(cfg.to_dict()))
    store, sae, lora = tmp_path / "acts", tmp_path / "sae", tmp_path / "lora_large"
    argv = ["harvest", "diffusion", "--model", str(path), "--hook-point", "transformer_blocks.0@image",
            "--prompt", "a small red 3 at the top left, thin strokes", "--num-inference-steps", "2",
            "--tokens-per-step", "0", "--height", "32", "--width", "32", "--dtype", "float32",
            "--device", "cpu", "--out", str(store), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    argv = ["train", "--acts", str(store), "--out", str(sae), "--k", "4", "--expansion", "2",
            "--batch-size", "64", "--quiet", "--init-sample", "64", "--device", "cpu"]  # fmt: skip
    assert cli(argv) == 0
    argv = ["testbed", "lora", "--model", str(path), "--factor", "size", "--value", "large",
            "--out", str(lora), "--steps", "4", "--batch", "4", "--n-renders", "16", "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", str(path), "--sae", str(sae), "--factor", "size", "--loras", str(lora),
            "--lora-scales", "0", "--strengths", "0", "--methods", "additive", "--n-select", "2",
            "--n-train", "2", "--n-test", "3", "--num-inference-steps", "2", "--batch", "4",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    res = json.loads((out / "results.json").read_text())
    t = res["test"]
    assert t["lora"]["n"] == 3 and res["config"]["targets"] == ["large"]  # targets from the LoRA
    for arm in ("lora", "sae", "diffmean"):
        assert t[arm]["faithful_success"] == t["unsteered"]["faithful_success"], arm
    assert t["lora_minus_sae"]["difference"] == 0.0 and t["lora_minus_diffmean"]["difference"] == 0.0
    # the contact sheet has a LoRA row per target, after the four arms of the factor sweep
    rows = json.loads((out / "contact.json").read_text())
    assert [r["arm"] for r in rows] == ["unsteered", "prompting", "sae", "diffmean", "lora"]
    assert res["cost"]["lora"][0]["trainable_params"] > 0 and res["cost"]["sae"]["params"] > 0
    assert "LoRA - SAE | +0.00" in (out / "table.md").read_text()
    # a LoRA for another factor is refused with the fix
    with pytest.raises(SteeringError, match="not colour"):
        sweep = FactorSweepConfig(model=str(path), sae=str(sae), factor="colour")
        run_lora_sweep(LoraSweepConfig(sweep=sweep, loras=(str(lora),)))
