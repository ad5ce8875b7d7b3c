"""An untrained testbed FluxPipeline folder (with its build_config.json) and a tiny SAE trained on its
image stream at `transformer_blocks.0@image`, made through the real commands: what the image-sweep
tests run on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from saekit.cli import main as cli

CAPS = ["a small red 3 at the top left, thin strokes", "a large blue 7 at the bottom right, thick strokes",
        "a small green 1 at the top right, thick strokes"]  # fmt: skip


def pipeline_and_sae(folder: Path) -> tuple[Path, Path]:
    """(pipeline folder, SAE folder) under `folder`; the SAE is harvested on the first two captions."""
    from saekit.testbed.fluxbed import components as C
    from saekit.testbed.fluxbed.build import save_pipeline
    from saekit.testbed.fluxbed.config import ci_config

    cfg = ci_config(judge_train_renders=300, judge_test_renders=60)
    torch.manual_seed(0)
    path = save_pipeline(C.pipeline_parts(cfg), folder)
    (folder / "build_config.json").write_text(json.dumps(cfg.to_dict()))
    store, sae = folder / "acts", folder / "sae"
    argv = ["harvest", "diffusion", "--model", str(path), "--hook-point", "transformer_blocks.0@image",
            "--prompt", CAPS[0], "--prompt", CAPS[1], "--num-inference-steps", "2", "--tokens-per-step", "0",
            "--height", "32", "--width", "32", "--dtype", "float32", "--device", "cpu", "--out", str(store),
            "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    argv = ["train", "--acts", str(store), "--out", str(sae), "--k", "4", "--expansion", "2",
            "--batch-size", "64", "--quiet", "--init-sample", "128", "--device", "cpu"]  # fmt: skip
    assert cli(argv) == 0
    return path, sae
