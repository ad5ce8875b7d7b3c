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
    with pytest.raises(SAEConfigError, match="flow_ema"):
        FluxbedConfig(flow_ema=1.0)


def test_flow_ema_leaves_the_moving_average_of_the_steps_in_the_modules():
    """With `flow_ema`, the trained modules end up holding the warmed-up exponential moving average of
    the initial weights and the weights after every optimiser step (recorded by an optimiser hook), not
    the last step's."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from saekit.testbed.fluxbed.train import train_flow

    cfg = ci_config(flow_steps=4, flow_batch=4, flow_ema=0.6, t5_lengths=(16,), quiet=True)
    torch.manual_seed(0)
    clip, t5 = C.make_text_encoders(cfg)
    transformer = C.make_transformer(cfg)
    modules = (transformer, clip, t5)

    def weights():
        return [p.detach().clone() for m in modules for p in m.parameters()]

    init = weights()
    after_steps = []
    handle = register_optimizer_step_post_hook(lambda opt, args, kw: after_steps.append(weights()))
    try:
        latents = torch.randn(6, cfg.latent_channels, 16, 16)
        captions = ["a small red 3 at the top left, thin strokes"] * 6
        train_flow(transformer, clip, t5, C.make_tokenizers(cfg), latents, captions, C.make_scheduler(), cfg,
                   torch.Generator().manual_seed(0))  # fmt: skip
    finally:
        handle.remove()
    assert len(after_steps) == cfg.flow_steps
    expected = init
    for step, now in enumerate(after_steps):
        decay = min(cfg.flow_ema, (1 + step) / (10 + step))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, now)]
    final = weights()
    for f, e in zip(final, expected):
        torch.testing.assert_close(f, e)
    assert any(not torch.allclose(f, w) for f, w in zip(final, after_steps[-1])), "kept the last step's"
