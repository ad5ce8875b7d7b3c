"""Fast unit tests of the testbed's pieces (no training)."""

from __future__ import annotations

import pytest
import torch

from saekit.errors import SAEConfigError
from saekit.sae import SAEConfig, build
from saekit.testbed.config import TestbedConfig, ci_config
from saekit.testbed.data import load_digit_splits, patchify, unpatchify
from saekit.testbed.features import class_features
from saekit.testbed.flow import StepContext, sample, timesteps
from saekit.testbed.model import FlowTransformer
from saekit.testbed.steering import make_edit, make_site_edit, native_strength

torch.set_num_threads(1)


def test_patchify_roundtrip_and_order():
    img = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 8, 8)
    tok = patchify(img, 2)
    assert tok.shape == (2, 16, 4)
    # first token = top-left 2x2 patch, row-major inside the patch
    assert tok[0, 0].tolist() == [0.0, 1.0, 8.0, 9.0]
    assert tok[0, 1].tolist() == [2.0, 3.0, 10.0, 11.0]
    assert torch.equal(unpatchify(tok, 2), img)


def test_digits_splits_are_disjoint_and_scaled():
    d = load_digit_splits()
    assert len(d.train_y) + len(d.test_y) == 1797
    assert d.train_x.min() >= -1 and d.train_x.max() <= 1
    assert set(d.test_y.tolist()) == set(range(10))


def test_config_validation_names_the_field():
    with pytest.raises(SAEConfigError, match="methods"):
        TestbedConfig(methods=("additive", "nope"))
    with pytest.raises(SAEConfigError, match="patch"):
        TestbedConfig(patch=3)


def test_timesteps_run_from_noise_to_data():
    assert timesteps(4) == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_config_sites_cover_one_block_the_conditioning_vector_and_all_blocks():
    cfg = ci_config()
    assert cfg.sites("late", "image") == [("single_transformer_blocks.0", "image")]
    assert cfg.sites("cond", "image") == [("cond", "cond")]
    assert cfg.sites("all", "text") == [
        ("transformer_blocks.0", "text"),
        ("single_transformer_blocks.0", "text"),
    ]


def _tiny_model(seed: int = 0) -> tuple[TestbedConfig, FlowTransformer]:
    cfg = ci_config()
    torch.manual_seed(seed)
    model = FlowTransformer(cfg).eval()
    with torch.no_grad():  # zero-initialised output/modulation layers would hide any edit; randomise them
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return cfg, model


def test_tap_sees_flux_names_and_streams_and_identity_edit_is_exact():
    cfg, model = _tiny_model()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(3, cfg.n_image_tokens, 4, generator=g)
    y = torch.tensor([1, 2, 3])
    seen = []

    def edit(ctx: StepContext, name: str, stream: str, x: torch.Tensor) -> torch.Tensor:
        seen.append((ctx.step, ctx.branch, name, stream, tuple(x.shape)))
        return x

    ref, _ = sample(model, noise, y, steps=3, guidance=2.0)
    out, _ = sample(model, noise, y, steps=3, guidance=2.0, edit=edit)
    assert torch.equal(ref, out)
    assert ("transformer_blocks.0", "image") in {(s[2], s[3]) for s in seen}
    assert (0, "uncond", "single_transformer_blocks.0", "text", (3, cfg.text_tokens, cfg.d_model)) in seen
    assert {s[0] for s in seen} == {0, 1, 2}


def test_trajectory_resume_matches_full_run():
    cfg, model = _tiny_model()
    noise = torch.randn(2, cfg.n_image_tokens, 4)
    y = torch.tensor([4, 5])
    full, traj = sample(model, noise, y, steps=4, guidance=3.0, keep_trajectory=True)
    resumed, _ = sample(model, noise, y, steps=4, guidance=3.0, start_step=2, x_start=traj[2])
    assert torch.allclose(full, resumed, atol=0, rtol=0)


def test_make_edit_touches_only_chosen_block_stream_steps_and_branch():
    cfg, model = _tiny_model()
    sae = build(SAEConfig(d_in=cfg.d_model, d_sae=64, arch="topk", k=4), seed=0)
    acts = torch.randn(500, cfg.d_model)
    labels = torch.arange(500) % 10
    feats = class_features(sae, acts, labels)
    s = torch.full((10, 1), 3.0)
    edit = make_edit(
        block="single_transformer_blocks.0",
        stream="image",
        method="additive",
        sae=sae,
        feats=feats,
        targets=list(range(10)),
        rows_per_target=1,
        strengths_native=s,
        steps={1},
    )
    x = torch.randn(10, cfg.n_image_tokens, cfg.d_model)
    assert edit(StepContext(0, 1.0, "cond"), "single_transformer_blocks.0", "image", x) is x
    assert edit(StepContext(1, 0.5, "uncond"), "single_transformer_blocks.0", "image", x) is x
    assert edit(StepContext(1, 0.5, "cond"), "single_transformer_blocks.0", "text", x) is x
    assert edit(StepContext(1, 0.5, "cond"), "transformer_blocks.0", "image", x) is x
    out = edit(StepContext(1, 0.5, "cond"), "single_transformer_blocks.0", "image", x)
    dirs = sae.decoder_directions()[feats.feature]
    assert torch.allclose(out, x + 3.0 * dirs[:, None, :], atol=1e-5)


def test_strength_units_convert_consistently():
    sae = build(SAEConfig(d_in=8, d_sae=32, arch="topk", k=4), seed=0)
    with torch.no_grad():
        sae.W_dec.mul_(2.0)  # gain 2: one latent unit moves the activation by 2
    acts = torch.randn(400, 8) * 3
    feats = class_features(sae, acts, torch.arange(400) % 10)
    assert native_strength("additive", "norm", 0.5, 3, sae, feats) == pytest.approx(0.5 * feats.mean_norm)
    assert native_strength("clamp", "norm", 0.5, 3, sae, feats) == pytest.approx(
        0.5 * feats.mean_norm / 2.0, rel=1e-5
    )
    assert native_strength("surgery", "max", 2.0, 3, sae, feats) == pytest.approx(
        2.0 * float(feats.feature_max[3])
    )
    assert native_strength("additive", "max", 2.0, 3, sae, feats) == pytest.approx(
        4.0 * float(feats.feature_max[3]), rel=1e-5
    )
    assert native_strength("surgery", "abs", 32.0, 3, sae, feats) == 32.0


def test_class_features_pick_the_planted_class_feature():
    sae = build(SAEConfig(d_in=16, d_sae=40, arch="topk", k=40), seed=0)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        for c in range(10):
            sae.W_enc[c, 30 - c] = 1.0  # latent 30-c reads input coordinate c
    labels = torch.arange(200) % 10
    acts = torch.zeros(200, 16)
    acts[torch.arange(200), labels] = 2.0
    feats = class_features(sae, acts, labels)
    assert feats.feature.tolist() == [30 - c for c in range(10)]
    assert torch.allclose(feats.selectivity, torch.full((10,), 2.0))
    assert torch.allclose(feats.diffmean.norm(dim=-1), torch.ones(10))


@pytest.mark.parametrize("pooled", [True, False])
def test_pooled_class_switch_decides_whether_adaln_sees_the_class(pooled):
    cfg = ci_config(pooled_class=pooled)
    torch.manual_seed(0)
    model = FlowTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        x, t, y = torch.randn(2, cfg.n_image_tokens, 4), torch.tensor([0.3, 0.7]), torch.tensor([1, 2])
        ref = model(x, t, y)
        model.pooled.weight.add_(1.0)
        assert torch.equal(model(x, t, y), ref) is (not pooled)


def test_tap_sees_the_adaln_conditioning_vector_and_editing_it_changes_the_sample():
    cfg, model = _tiny_model()
    noise = torch.randn(2, cfg.n_image_tokens, 4)
    y = torch.tensor([1, 2])
    seen = []

    def watch(ctx, name, stream, x):
        if name == "cond":
            seen.append((stream, tuple(x.shape)))
        return x

    sample(model, noise, y, steps=2, guidance=2.0, edit=watch)
    assert seen and all(s == ("cond", (2, 1, cfg.d_model)) for s in seen)
    ref, _ = sample(model, noise, y, steps=2, guidance=2.0)
    pushed, _ = sample(model, noise, y, steps=2, guidance=2.0,
                       edit=lambda c, n, s, x: x + 1.0 if n == "cond" else x)  # fmt: skip
    assert not torch.allclose(ref, pushed)


def test_site_edit_applies_each_site_with_its_own_sae():
    cfg, model = _tiny_model()
    saes = [build(SAEConfig(d_in=cfg.d_model, d_sae=64, arch="topk", k=4), seed=i) for i in range(2)]
    acts, labels = torch.randn(500, cfg.d_model), torch.arange(500) % 10
    feats = [class_features(sae, acts, labels) for sae in saes]
    s = torch.full((10, 1), 2.0)
    sites = {("transformer_blocks.0", "image"): (saes[0], feats[0], s),
             ("single_transformer_blocks.0", "image"): (saes[1], feats[1], s)}  # fmt: skip
    edit = make_site_edit(sites, method="additive", targets=list(range(10)), rows_per_target=1, steps={0})
    x = torch.randn(10, cfg.n_image_tokens, cfg.d_model)
    ctx = StepContext(0, 1.0, "cond")
    for (block, _), sae, cf in zip(sites, saes, feats):
        out = edit(ctx, block, "image", x)
        assert torch.allclose(out, x + 2.0 * sae.decoder_directions()[cf.feature][:, None, :], atol=1e-5)
    assert edit(ctx, "transformer_blocks.0", "text", x) is x


def test_direction_methods_add_unit_class_vectors():
    sae = build(SAEConfig(d_in=8, d_sae=32, arch="topk", k=4), seed=0)
    acts = torch.randn(400, 8) * 3
    feats = class_features(sae, acts, torch.arange(400) % 10)
    for method in ("decompose", "sae_ts"):
        dirs = feats.directions[method]
        assert dirs.shape == (10, 8) and torch.allclose(dirs.norm(dim=-1), torch.ones(10), atol=1e-5)
        assert native_strength(method, "norm", 0.5, 3, sae, feats) == pytest.approx(0.5 * feats.mean_norm)
