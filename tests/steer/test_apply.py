"""Hook application: chosen positions only, chosen stream only, dtype round trip, steered generation."""

import pytest
import torch

from saekit.errors import SteeringError
from saekit.hooks import capture
from saekit.steer import methods as M
from saekit.steer.apply import PositionTracker, direction_edit, steer_sae, steering
from saekit.steer.generate import GenerationConfig, generate_ids, generate_pair

from .conftest import make_sae, planted_sae

HP = "model.layers.0"


def _layer_out(model, ids, ctx=None):
    import contextlib

    with ctx or contextlib.nullcontext(), capture(model, "model.layers.1") as cap:
        model(input_ids=ids)
    return cap.activations["model.layers.1"]


def _acts_at(model, ids, hp=HP):
    with capture(model, hp) as cap:
        model(input_ids=ids)
    return cap.activations[hp]


@pytest.mark.parametrize("positions", ["all", "prompt", "generated"])
def test_positions_full_forward(tiny_lm, positions):
    """Without cache, one forward over prompt+generated: only the chosen positions change."""
    sae = make_sae("relu", d_in=32, d_sae=16, hook_point=HP)
    ids = torch.randint(0, 60, (1, 10), generator=torch.Generator().manual_seed(0))
    plain = _acts_at(tiny_lm, ids)
    with steer_sae(tiny_lm, sae, "additive", [2], 5.0, positions=positions, prompt_len=6) as tr:
        tr.reset()
        edited = _acts_at(tiny_lm, ids)
    changed = (edited - plain).norm(dim=-1)[0] > 1e-4
    expect = {"all": [True] * 10, "prompt": [True] * 6 + [False] * 4, "generated": [False] * 6 + [True] * 4}
    assert changed.tolist() == expect[positions]
    delta = edited[0, changed] - plain[0, changed]
    assert torch.allclose(delta, (5.0 * sae.decoder_directions()[2]).expand_as(delta), atol=1e-5)


def test_positions_with_kv_cache(tiny_lm):
    """With a KV cache the prefill is the prompt, then one token per call; tracker follows both."""
    tr = PositionTracker("generated", prompt_len=4)
    assert tr.mask(4, "cpu").tolist() == [False] * 4
    assert tr.mask(1, "cpu").tolist() == [True]
    assert tr.seen == 5
    tr.reset()
    assert tr.mask(6, "cpu").tolist() == [False] * 4 + [True] * 2
    with pytest.raises(SteeringError, match="prompt_len"):
        PositionTracker("prompt")


def test_prompt_only_steering_leaves_generated_steps_alone(tiny_lm):
    """positions=prompt: the hook must not touch the one-token decode calls."""
    sae = make_sae("relu", d_in=32, d_sae=16, hook_point=HP)
    seen = []
    with steer_sae(tiny_lm, sae, "additive", [1], 3.0, positions="prompt", prompt_len=5) as tr:
        with capture(tiny_lm, HP, keep_all=True) as cap:
            generate_ids(
                tiny_lm, torch.arange(5)[None], GenerationConfig(max_new_tokens=3), on_reset=tr.reset
            )
        seen = cap.history[HP]
    # the captured value is the *edited* output (intervene hook registered first); compare with a plain run
    with capture(tiny_lm, HP, keep_all=True) as cap2:
        generate_ids(tiny_lm, torch.arange(5)[None], GenerationConfig(max_new_tokens=3))
    assert not torch.allclose(seen[0], cap2.history[HP][0])  # prefill edited
    assert len(seen) == 3


def test_stream_selection_only_edits_that_stream():
    """A module returning (a, b): steering @1 edits b and leaves a untouched."""

    class Two(torch.nn.Module):
        def forward(self, x):
            return x * 1.0, x * 2.0

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Two()

        def forward(self, x):
            return self.block(x)

    model = Wrap()
    x = torch.randn(1, 3, 6)
    sae = make_sae("relu", d_in=6, d_sae=10)
    with steering(model, "block@1", lambda v: M.additive(v, sae, [0], 2.0)):
        a, b = model(x)
    assert torch.equal(a, x)
    assert torch.allclose(b, 2 * x + 2.0 * sae.decoder_directions()[0], atol=1e-6)


def test_bf16_model_fp32_sae(tiny_lm):
    """bf16 model + fp32 SAE: edit computed in fp32, cast back; a no-op clamp leaves the model exact."""
    import copy

    model = copy.deepcopy(tiny_lm).to(torch.bfloat16)  # a copy: the suite shares tiny_lm in float32
    sae = make_sae("relu", d_in=32, d_sae=16, hook_point=HP)
    ids = torch.arange(8)[None]
    plain_logits = model(input_ids=ids).logits
    # clamp to the feature's current value = identity
    acts = _acts_at(model, ids)
    cur = sae.encode(acts.float())[..., 4:5]
    with steer_sae(model, sae, "clamp", [4], cur):
        same = model(input_ids=ids).logits
    assert same.dtype == torch.bfloat16
    assert torch.equal(same, plain_logits)
    with steer_sae(model, sae, "clamp", [4], 50.0):
        edited_acts = _acts_at(model, ids)
    assert edited_acts.dtype == torch.bfloat16
    # exactly the fp32 edit of the bf16 activations, rounded once to bf16
    expect = M.clamp(acts.float(), sae, [4], 50.0).to(torch.bfloat16)
    assert torch.equal(edited_acts, expect)
    assert not torch.equal(edited_acts, acts)


def test_direction_edit_diffmean(tiny_lm):
    u = torch.randn(32)
    ids = torch.arange(6)[None]
    plain = _acts_at(tiny_lm, ids)
    with steering(tiny_lm, HP, direction_edit(u, 2.0)):
        edited = _acts_at(tiny_lm, ids)
    assert torch.allclose(edited - plain, (2.0 * u / u.norm()).expand_as(plain), atol=1e-5)


def test_steered_generation_raises_feature_on_reread(tiny_lm, tiny_tokenizer):
    token = 17
    sae = planted_sae(tiny_lm, token)
    cfg = GenerationConfig(max_new_tokens=12, chat=False)
    prompt = "w1 w2 w3 w4"
    pair = generate_pair(
        tiny_lm,
        tiny_tokenizer,
        prompt,
        lambda: steer_sae(tiny_lm, sae, "clamp", [3], 40.0, positions="all"),
        cfg,
    )
    assert pair.steered.text != pair.unsteered.text
    assert pair.steered.token_ids.tolist().count(token) > pair.unsteered.token_ids.tolist().count(token)

    def reread(cont):
        ids = torch.cat([torch.tensor(tiny_tokenizer(prompt)["input_ids"]), cont.token_ids])[None]
        acts = _acts_at(tiny_lm, ids, "model.layers.1")
        return sae.encode(acts)[0, -len(cont.token_ids) :, 3].mean()

    assert reread(pair.steered) > reread(pair.unsteered) + 0.1
    # same seed, no steering: identical text (determinism of the pair)
    again = generate_pair(
        tiny_lm,
        tiny_tokenizer,
        prompt,
        lambda: steer_sae(tiny_lm, sae, "additive", [3], 0.0),
        GenerationConfig(max_new_tokens=12, chat=False, greedy=False, seed=3),
    )
    assert again.steered.text == again.unsteered.text
