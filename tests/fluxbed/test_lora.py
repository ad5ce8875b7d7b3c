"""The factor LoRA (saekit.testbed.fluxbed.lora) on a tiny untrained fluxbed pipeline: its training data is
what it says, training lowers the flow loss measured independently, diffusers' save/load round trip gives
the trained model back, scale 0 and unloading give the base pipeline back bit for bit, and bad inputs fail
with messages that say what to do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saekit.errors import ModelLoadError, SAEConfigError
from saekit.testbed.fluxbed import components as C
from saekit.testbed.fluxbed.build import generate, load_pipeline, save_pipeline
from saekit.testbed.fluxbed.config import ci_config
from saekit.testbed.fluxbed.lora import (
    FactorLoraConfig,
    load_factor_lora,
    lora_training_set,
    read_lora_info,
    train_factor_lora,
)
from saekit.testbed.fluxbed.render import COLOURS, parse_caption
from saekit.testbed.fluxbed.train import image_ids, pack

PROMPTS = [
    "a small blue 3 at the top left, thin strokes",
    "a large green 7 at the bottom right, thick strokes",
]


def _pipeline(tmp_path, **over):
    cfg = ci_config(judge_train_renders=300, judge_test_renders=60, **over)
    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    path = save_pipeline(C.pipeline_parts(cfg), tmp_path)
    (tmp_path / "build_config.json").write_text(json.dumps(cfg.to_dict()))
    return cfg, path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny pipeline and a LoRA for colour=red trained on it for 40 steps (a few seconds)."""
    root = tmp_path_factory.mktemp("lora")
    cfg, path = _pipeline(root)
    lcfg = FactorLoraConfig(model=str(path), factor="colour", value="red", out=str(root / "lora_red"),
                            steps=40, batch=8, lr=1e-2, n_renders=64, quiet=True)  # fmt: skip
    return cfg, path, train_factor_lora(lcfg)


def _images(pipe, prompts=PROMPTS, **kw) -> torch.Tensor:
    return generate(pipe, prompts, seed=3, steps=2, batch=2, **kw)


def test_training_set_shows_the_target_and_asks_for_other_values():
    from saekit.testbed.fluxbed.judges import pixel_features

    data, captions = lora_training_set(ci_config(), "colour", "red", 40, seed=1)
    red = list(COLOURS).index("red")
    assert (data.factors[:, 1] == red).all()
    asked = np.array([parse_caption(c).colour for c in captions])
    assert (asked != red).all() and len(set(asked)) >= 3  # other colours, several of them
    # independent of the factor table: the ink's normalised colour is the palette's red
    rgb = pixel_features(data.images).colour
    palette = np.array(list(COLOURS.values()))
    palette = palette / palette.max(1, keepdims=True)
    nearest = np.linalg.norm(rgb[:, None] - palette[None], axis=2).argmin(1)
    assert (nearest == red).all()
    # every other factor still varies, as drawn
    assert len(set(data.factors[:, 3].tolist())) == 4


def test_a_few_steps_lower_the_flow_loss_on_the_target_data(trained):
    """The flow-matching loss on a fixed batch of target renders (fixed noise and sigmas), computed here
    from the transformer's own forward, is lower with the adapter than without it."""
    cfg, _, res = trained
    pipe = res.pipe
    data, captions = lora_training_set(cfg, "colour", "red", 32, seed=99)  # not the training draw
    vae = pipe.vae
    with torch.no_grad():
        z = vae.encode(data.images * 2 - 1).latent_dist.mean
        x0 = pack((z - vae.config.shift_factor) * vae.config.scaling_factor)
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(x0.shape, generator=g)
        s = torch.rand(len(x0), generator=g).clamp(0.05, 0.95)
        xs = (1 - s)[:, None, None] * x0 + s[:, None, None] * noise
        pe, pooled, txt_ids = pipe.encode_prompt(prompt=captions, prompt_2=None, max_sequence_length=32)

        def loss(scale: float) -> float:
            v = pipe.transformer(hidden_states=xs, timestep=s, pooled_projections=pooled,
                                 encoder_hidden_states=pe, txt_ids=txt_ids, img_ids=image_ids(*z.shape[2:]),
                                 joint_attention_kwargs={"scale": scale}, return_dict=False)[0]  # fmt: skip
            return float(((v - (noise - x0)) ** 2).mean())

        base, tuned = loss(0.0), loss(1.0)
    assert tuned < 0.9 * base, (base, tuned)
    assert len(res.losses) == 40 and np.mean(res.losses[-10:]) < np.mean(res.losses[:10])


def test_info_records_the_cost(trained):
    _, _, res = trained
    info = read_lora_info(res.folder)
    assert info["factor"] == "colour" and info["value"] == "red"
    # rank 4 on to_q, to_k, to_v (every block) and to_out.0 (double blocks): r * (d_in + d_out) each
    width = 2 * 16  # ci_config: 2 heads of 16
    n_modules = 4 * 1 + 3 * 1  # one double block, one single block
    assert info["trainable_params"] == n_modules * 4 * (width + width)
    assert info["file_bytes"] == (res.folder / "pytorch_lora_weights.safetensors").stat().st_size > 0
    assert info["train_s"] > 0 and info["threads"] >= 1


def test_save_load_round_trip_gives_the_trained_model_back(trained):
    _, path, res = trained
    want = _images(res.pipe)  # the model as trained, in memory
    pipe = load_pipeline(path)
    pipe.load_lora_weights(str(res.folder))  # diffusers' own loader, default weight name
    got = _images(pipe)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_scale_zero_and_unloading_give_the_base_pipeline_exactly(trained):
    _, path, res = trained
    pipe = load_pipeline(path)
    base = _images(pipe)
    from diffusers.utils import logging as diffusers_logging

    before = diffusers_logging.get_verbosity()
    load_factor_lora(pipe, res.folder)
    assert diffusers_logging.get_verbosity() == before  # the quieted load gives the level back
    assert torch.equal(_images(pipe, joint_attention_kwargs={"scale": 0.0}), base)
    assert not torch.equal(_images(pipe), base)  # the adapter does something at scale 1
    pipe.unload_lora_weights()
    assert torch.equal(_images(pipe), base)


def test_bad_inputs_fail_with_what_to_do(trained, tmp_path):
    _, path, res = trained
    with pytest.raises(SAEConfigError, match="values: red, green"):
        train_factor_lora(
            FactorLoraConfig(model=str(path), factor="colour", value="purple", out=str(tmp_path))
        )
    with pytest.raises(SAEConfigError, match="unknown factor"):
        train_factor_lora(FactorLoraConfig(model=str(path), factor="texture", value="red", out=str(tmp_path)))
    with pytest.raises(ModelLoadError, match="model_index.json"):
        train_factor_lora(
            FactorLoraConfig(model=str(tmp_path), factor="colour", value="red", out=str(tmp_path))
        )
    with pytest.raises(ModelLoadError, match="not a factor LoRA folder"):
        read_lora_info(tmp_path)
    # a LoRA trained on another transformer shape is refused before diffusers fails on shapes
    _, other = _pipeline(tmp_path / "wide", heads=4)
    with pytest.raises(ModelLoadError, match="train one on this pipeline"):
        load_factor_lora(load_pipeline(other), res.folder)
    with pytest.raises(SAEConfigError, match="steps"):
        FactorLoraConfig(model="m", factor="colour", value="red", out="o", steps=0)
