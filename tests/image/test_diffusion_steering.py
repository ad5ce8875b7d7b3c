"""Steering inside the denoising loop touches only the chosen steps and CFG branch; conditioning-level
clamp with no edit reproduces the unsteered generation exactly."""

from __future__ import annotations

import pytest
import torch

from saekit.errors import SteeringError
from saekit.models.flux import tiny_flux_pipeline
from saekit.sae import SAEConfig, build
from saekit.steer.image.diffusion import parse_steps, sae_edit, steer_conditioning, steer_in_loop

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline(seed=0, num_layers=1, num_single_layers=1)


def _inputs(B: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img_ids = torch.zeros(16, 3)
    img_ids[:, 1] = torch.arange(16) // 4
    img_ids[:, 2] = torch.arange(16) % 4
    return dict(
        hidden_states=torch.randn(B, 16, 4, generator=g),
        encoder_hidden_states=torch.randn(B, 6, 32, generator=g),
        pooled_projections=torch.randn(B, 32, generator=g),
        txt_ids=torch.zeros(6, 3),
        img_ids=img_ids,
        guidance=None,
        return_dict=False,
    )


def _run_calls(tr, timesteps, branches_per_step, inputs):
    """A scripted loop: every call sees the same inputs, so any output change is the edit's doing."""
    outs = []
    with torch.no_grad():
        for t in timesteps:
            for _ in range(branches_per_step):
                outs.append(tr(timestep=torch.full((inputs["hidden_states"].shape[0],), t), **inputs)[0])
    return outs


def _add(v: float):
    return lambda x: x + v


@pytest.mark.parametrize(
    "hook", ["transformer_blocks.0@image", "transformer_blocks.0@text", "single_transformer_blocks.0@image"]
)
def test_only_chosen_steps_and_cond_branch_change(pipe, hook):
    tr = pipe.transformer
    ts, inp = [1.0, 0.66, 0.33, 0.1], _inputs(2)
    ref = _run_calls(tr, ts, 2, inp)
    with steer_in_loop(tr, hook, _add(1.0), steps={1, 2}, cfg_layout="calls") as state:
        got = _run_calls(tr, ts, 2, inp)
    assert [s for s, _ in state.history] == [0, 0, 1, 1, 2, 2, 3, 3]
    changed = [not torch.equal(a, b) for a, b in zip(ref, got)]
    #          step0 c, u    step1 c, u    step2 c, u    step3 c, u
    assert changed == [False, False, True, False, True, False, False, False]
    with steer_in_loop(tr, hook, _add(1.0), steps={1}, cfg_layout="calls", uncond_edit_fn=_add(-1.0)):
        got = _run_calls(tr, ts, 2, inp)
    assert [not torch.equal(a, b) for a, b in zip(ref, got)] == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_guidance_distilled_every_call_is_conditional(pipe):
    tr = pipe.transformer
    ts, inp = [1.0, 0.5, 0.2], _inputs(1)
    ref = _run_calls(tr, ts, 1, inp)
    with steer_in_loop(tr, "transformer_blocks.0@image", _add(2.0), steps={0, 2}):
        got = _run_calls(tr, ts, 1, inp)
    assert [not torch.equal(a, b) for a, b in zip(ref, got)] == [True, False, True]


def test_batched_cfg_edits_only_the_cond_half(pipe):
    tr = pipe.transformer
    inp = _inputs(4)  # rows 0-1 uncond, rows 2-3 cond
    ref = _run_calls(tr, [0.7], 1, inp)[0]
    with steer_in_loop(tr, "transformer_blocks.0@image", _add(1.0), cfg_layout="batch_uncond_first"):
        got = _run_calls(tr, [0.7], 1, inp)[0]
    assert torch.equal(got[:2], ref[:2])
    assert not torch.allclose(got[2:], ref[2:])


def test_sae_edit_in_loop_matches_method_applied_by_hand(pipe):
    from saekit.hooks import capture

    tr = pipe.transformer
    sae = build(SAEConfig(d_in=32, d_sae=64, arch="topk", k=4), seed=1)
    inp = _inputs(1)
    with capture(tr, ["transformer_blocks.0@image"]) as cap:
        _run_calls(tr, [0.5], 1, inp)
    x = cap.activations["transformer_blocks.0@image"]
    from saekit.steer.methods import clamp

    expected = clamp(x, sae, [3], 5.0)
    seen = {}

    def spy(y):
        out = sae_edit("clamp", sae, [3], 5.0)(y)
        seen["out"] = out
        return out

    with steer_in_loop(tr, "transformer_blocks.0@image", spy):
        _run_calls(tr, [0.5], 1, inp)
    torch.testing.assert_close(seen["out"], expected)


def test_conditioning_clamp_without_edit_reproduces_the_image_exactly(pipe):
    sae = build(SAEConfig(d_in=32, d_sae=64, arch="topk", k=8), seed=2)
    g = torch.Generator().manual_seed(0)
    pe, pooled = torch.randn(1, 6, 32, generator=g), torch.randn(1, 32, generator=g)

    def gen(pe_, pooled_):
        return pipe(
            prompt_embeds=pe_,
            pooled_prompt_embeds=pooled_,
            num_inference_steps=3,
            height=16,
            width=16,
            output_type="pt",
            generator=torch.Generator().manual_seed(0),
        ).images

    ref = gen(pe, pooled)
    f = sae.encode(pooled)[0]
    active = f.nonzero().flatten()[:3].tolist()
    same_pooled = steer_conditioning(pooled, sae, active)
    same_pe = steer_conditioning(pe, sae, active)
    assert torch.equal(same_pooled, pooled) and torch.equal(same_pe, pe)
    assert torch.equal(gen(same_pe, same_pooled), ref)
    # clamping to the current values explicitly is also no edit; a real clamp changes the image
    assert torch.equal(steer_conditioning(pooled, sae, active, f[active]), pooled)
    edited = steer_conditioning(pooled, sae, active[:1], 25.0)
    assert not torch.equal(gen(pe, edited), ref)
    # and it kept the error: the edit moved only along that feature's decoder row
    delta = (edited - pooled)[0]
    row = sae.W_dec[active[0]]
    torch.testing.assert_close(delta, (25.0 - f[active[0]]) * row / sae.input_scale, rtol=1e-4, atol=1e-5)


def test_parse_steps():
    assert parse_steps("0-3") == {0, 1, 2, 3}
    assert parse_steps("0,2,5") == {0, 2, 5}
    assert parse_steps("all") is None and parse_steps(None) is None
    assert parse_steps("2-", n_steps=4) == {2, 3}
    with pytest.raises(SteeringError, match="open-ended"):
        parse_steps("2-")
    with pytest.raises(SteeringError, match="cannot parse"):
        parse_steps("a-b")
