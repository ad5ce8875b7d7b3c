"""Trainer pieces against hand-computed values, aux-k revival of planted dead latents, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from saekit.errors import ShapeError, StoreError
from saekit.sae import SAEConfig, build
from saekit.train import TensorSource, TrainConfig, Trainer, default_lr
from saekit.train.dead import DeadLatentTracker
from saekit.train.metrics import reconstruction_metrics
from saekit.train.schedule import lr_factor, sparsity_scale

torch.set_num_threads(1)  # tiny tensors: one thread avoids OpenMP stalls on a loaded machine


def test_reconstruction_metrics_hand_values():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    r = torch.tensor([[1.0, 1.0], [3.0, 4.0]])
    m = reconstruction_metrics(x, r)
    # err = 0 + 1 + 0 + 4 = 5; mean = (2, 4); centred var = 1+4+1+4 = 10
    assert m["mse"] == pytest.approx(5 / 4)
    assert m["fvu"] == pytest.approx(0.5)
    assert m["shrinkage"] == pytest.approx((math.sqrt(2) / math.sqrt(5) + 5 / math.sqrt(45)) / 2)


def test_topk_losses_hand_values():
    """recon loss and aux-k loss of a 2-latent TopK SAE computed by hand."""
    cfg = SAEConfig(d_in=2, d_sae=2, arch="topk", k=1, aux_k=1, aux_k_coefficient=0.5, dtype="float64")
    sae = build(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2, dtype=torch.float64))
        sae.W_dec.copy_(torch.eye(2, dtype=torch.float64))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    x = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    out = sae(x, dead_mask=torch.tensor([False, True]))
    # top-1 keeps latent 0 (3.0): recon (3, 0), error (0, 1) -> 1; aux: dead latent 1 fires 1.0 -> (0,1)
    assert float(out.losses.recon.detach()) == pytest.approx(1.0)
    assert float(out.losses.aux.detach()) == pytest.approx(0.0)
    assert out.sparse.indices.tolist() == [[0]]
    x2 = torch.tensor([[3.0, 2.0]], dtype=torch.float64)
    sae.W_dec.data[1] = torch.tensor([0.0, 0.5], dtype=torch.float64)
    out2 = sae(x2, dead_mask=torch.tensor([False, True]))
    # residual (0, 2); aux recon 2 * (0, 0.5) = (0, 1) -> err 1 -> 0.5 * 1
    assert float(out2.losses.recon.detach()) == pytest.approx(4.0)
    assert float(out2.losses.aux.detach()) == pytest.approx(0.5)
    assert float(out2.losses.total.detach()) == pytest.approx(4.5)


def test_schedules_and_default_lr():
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(4 * 2**14) == pytest.approx(1e-4)
    assert lr_factor(0, 100, 10, "linear", 0.8) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "linear", 0.8) == pytest.approx(1.0)
    assert lr_factor(50, 100, 10, "linear", 0.8) == 1.0
    assert lr_factor(90, 100, 10, "linear", 0.8) == pytest.approx(0.5)
    assert lr_factor(90, 100, 10, "cosine", 0.8) == pytest.approx(0.5)
    assert lr_factor(95, 100, 10, "none", 0.8) == 1.0
    assert sparsity_scale(0, 100, 0.1) == pytest.approx(0.1)
    assert sparsity_scale(50, 100, 0.1) == 1.0


def test_dead_tracker_counts_rows_since_fired():
    t = DeadLatentTracker(4, threshold=10)
    t.update(torch.tensor([True, False, False, False]), 6)
    t.update(torch.tensor([False, True, False, False]), 6)
    assert t.since_fired.tolist() == [6, 0, 12, 12]
    assert t.dead_mask.tolist() == [False, False, True, True]
    assert t.dead_fraction == 0.5


def _planted_run(tmp_path, aux_coef):
    torch.manual_seed(0)
    x = torch.randn(4096, 16)
    cfg = TrainConfig.flat(
        arch="topk",
        k=4,
        expansion=4,
        batch_size=256,
        total_tokens=256 * 48,
        quiet=True,
        aux_k_coefficient=aux_coef,
        dead_tokens=256,
        normalization="none",
        b_dec_init="zeros",
        lr=3e-3,
        lr_warmup_steps=0,
        seed=0,
    )
    trainer = Trainer(cfg, TensorSource(x), out=tmp_path / f"aux{aux_coef}")
    planted = torch.arange(32, 64)
    orig_fresh = trainer._fresh

    def fresh():  # plant 32 latents whose encoder columns are too small to ever reach the top-k
        sae = orig_fresh()
        with torch.no_grad():
            sae.W_enc[:, planted] *= 0.02
        return sae

    trainer._fresh = fresh
    res = trainer.run()
    with torch.no_grad():
        fired = (res.sae.encode(x) != 0).any(0)
    return float(fired[planted].float().mean())


def test_aux_k_revives_planted_dead_latents(tmp_path):
    revived_with = _planted_run(tmp_path, 1 / 32)
    revived_without = _planted_run(tmp_path, 0.0)
    assert revived_without < 0.25
    assert revived_with > 0.75
    assert revived_with > revived_without + 0.5


def test_relu_resampling_revives_dead_latents(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2048, 16)
    cfg = TrainConfig.flat(
        arch="relu",
        expansion=4,
        batch_size=256,
        total_tokens=256 * 12,
        quiet=True,
        resample_every=6,
        dead_tokens=256,
        normalization="none",
        seed=0,
        sparsity_coefficient=1.0,
    )
    trainer = Trainer(cfg, TensorSource(x), out=tmp_path)
    orig_fresh = trainer._fresh

    def fresh():  # kill half the latents with a huge negative bias
        sae = orig_fresh()
        sae.b_enc.data[:32] = -1e3
        return sae

    trainer._fresh = fresh
    res = trainer.run()
    assert (res.sae.b_enc[:32] > -100).all()  # resampling reset their biases
    with torch.no_grad():
        fired = (res.sae.encode(x) != 0).any(0)
    assert fired[:32].float().mean() > 0.5


def test_source_smaller_than_batch_is_refused():
    with pytest.raises(StoreError, match="fewer than one batch"):
        Trainer(TrainConfig.flat(batch_size=512), TensorSource(torch.randn(100, 8)))


def test_resume_with_store_of_other_width_is_refused(tmp_path):
    cfg = TrainConfig.flat(
        arch="topk",
        k=2,
        expansion=2,
        batch_size=64,
        total_tokens=64 * 6,
        quiet=True,
        checkpoint_every=2,
        init_sample=128,
    )
    Trainer(cfg, TensorSource(torch.randn(256, 8)), out=tmp_path).run(stop_after_steps=3)
    with pytest.raises(ShapeError, match="d_in=8 but the activation source has d=12"):
        Trainer(cfg, TensorSource(torch.randn(256, 12)), out=tmp_path).run()


def test_trained_sae_saved_with_provenance(tmp_path):
    from saekit.sae.io import load_sae

    src = TensorSource(
        torch.randn(512, 8) * 5 + 2,
        manifest={"model": "tiny", "hook_point": "model.layers.3", "model_dtype": "float32"},
    )
    cfg = TrainConfig.flat(arch="topk", k=2, expansion=2, batch_size=64, quiet=True, init_sample=256)
    res = Trainer(cfg, src, out=tmp_path).run()
    sae = load_sae(tmp_path)
    p = sae.cfg.provenance
    # the default budget on a 512-row store: 3 passes
    assert (p.model, p.hook_point, p.layer, p.tokens_trained) == ("tiny", "model.layers.3", 3, 3 * 512)
    assert sae.cfg.normalization == "expected_norm"
    assert float(sae.input_scale) != 1.0
    assert res.metrics["fvu"] < 1.0
