"""The testbed's components make an ordinary diffusers FluxPipeline folder: saved, loaded with
`FluxPipeline.from_pretrained`, sampled with its own `__call__`."""

from __future__ import annotations

import json

import pytest
import torch

from saekit.errors import SAEConfigError
from saekit.testbed.fluxbed import components as C
from saekit.testbed.fluxbed.build import generate, load_pipeline, save_pipeline
from saekit.testbed.fluxbed.config import FluxbedConfig, ci_config
from saekit.testbed.fluxbed.tokenizer import EOS_ID, UNK_ID


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = ci_config()
    torch.manual_seed(0)
    path = save_pipeline(C.pipeline_parts(cfg), tmp_path_factory.mktemp("fluxbed"))
    return cfg, path


def test_folder_is_a_diffusers_flux_pipeline(saved):
    _, path = saved
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    assert index["transformer"] == ["diffusers", "FluxTransformer2DModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["text_encoder_2"] == ["transformers", "T5EncoderModel"]
    for sub in (
        "transformer",
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
    ):
        assert (path / sub).is_dir(), sub
    assert not list(path.parent.glob(".pipeline*")), "temporary folders left behind"


def test_from_pretrained_loads_and_generates_32px_images(saved):
    from diffusers import FluxPipeline

    _, path = saved
    pipe = load_pipeline(path)
    assert isinstance(pipe, FluxPipeline)
    ids = pipe.tokenizer("a small red 3 at the top left, thin strokes").input_ids
    assert UNK_ID not in ids and ids[-1] == EOS_ID
    images = generate(
        pipe, ["a small red 3 at the top left, thin strokes", "a large blue 7"], seed=0, steps=2, batch=2
    )
    assert images.shape == (2, 3, 32, 32)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    again = generate(pipe, ["a large blue 7"], seed=1, steps=2, batch=1)
    torch.testing.assert_close(again[0], images[1], rtol=1e-4, atol=1e-4)  # per-image seeds, batch-free


def test_saving_again_replaces_the_folder(saved):
    cfg, path = saved
    before = (path / "transformer" / "config.json").read_text()
    save_pipeline(C.pipeline_parts(cfg), path.parent)
    assert (path / "transformer" / "config.json").read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["pipeline"]


def test_config_refuses_bad_values():
    with pytest.raises(SAEConfigError, match="head_dim"):
        FluxbedConfig(head_dim=10)
    with pytest.raises(SAEConfigError, match="t5_lengths"):
        FluxbedConfig(t5_lengths=(8,))
