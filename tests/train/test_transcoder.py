"""Transcoders (`saekit train --target out`): known answers on synthetic modules whose output is a known
function of their input, the exact save/load of every transcoder tensor, and clear refusals."""

from __future__ import annotations

import pytest
import torch

import saekit
from saekit.errors import SAEConfigError, ShapeError, StoreError
from saekit.sae import SAEConfig, build
from saekit.train import TensorSource, TrainConfig
from saekit.train.metrics import reconstruction_metrics
from saekit.train.source import PairedTensorSource
from saekit.train.trainer import train

D_IN = 16


def _sparse_module(n: int, seed: int):
    """A module whose output is a sparse function of its input: the top 2 of 24 feature detectors fire
    and each writes its own direction (a ground-truth TopK transcoder)."""
    g = torch.Generator().manual_seed(0)  # the module: fixed
    enc = torch.randn(D_IN, 24, generator=g)
    enc /= enc.norm(dim=0)
    dec = torch.randn(24, D_IN, generator=g)
    x = torch.randn(n, D_IN, generator=torch.Generator().manual_seed(seed))
    vals, idx = (x @ enc).topk(2, dim=-1)
    return x, torch.zeros(n, 24).scatter(-1, idx, vals.relu()) @ dec


def _cfg(out, **kw) -> TrainConfig:
    base = dict(
        arch="topk", k=2, d_sae=48, total_tokens=200_000, batch_size=256, lr=1e-2, quiet=True, out=str(out),
        cache_mb=0, prefetch=0, log_every=100, checkpoint_every=10_000, encoder="exact",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig.flat(**base)


def _fvu(y: torch.Tensor, pred: torch.Tensor) -> float:
    return reconstruction_metrics(y, pred.detach())["fvu"]


def test_transcoder_learns_a_sparse_module_that_an_sae_and_a_linear_map_cannot(tmp_path):
    torch.set_num_threads(1)
    x, y = _sparse_module(16384, seed=1)
    x_test, y_test = _sparse_module(2048, seed=2)
    tc = train(_cfg(tmp_path / "tc", target="out"), PairedTensorSource(x, y)).sae
    assert tc.cfg.transcode and tc.d_out == D_IN
    fvu_tc = _fvu(y_test, tc.reconstruct(x_test))
    # the best affine map from input to output, fitted on the training rows (least squares)
    ones = torch.ones(len(x), 1)
    w = torch.linalg.lstsq(torch.cat([x, ones], 1), y).solution
    fvu_linear = _fvu(y_test, torch.cat([x_test, torch.ones(len(x_test), 1)], 1) @ w)
    # an SAE with the same k and width, trained on the input: it reconstructs x, which does not predict y
    sae = train(_cfg(tmp_path / "sae", target="in"), TensorSource(x)).sae
    fvu_sae = _fvu(y_test, sae.reconstruct(x_test))
    assert fvu_tc < 0.25, f"held-out FVU of the transcoder's prediction {fvu_tc:.3f}"
    assert fvu_linear > 0.6 and fvu_tc < fvu_linear / 3, (fvu_tc, fvu_linear)
    assert fvu_sae > 0.9, f"an SAE on the input should not predict the output (FVU {fvu_sae:.3f})"


def test_skip_transcoder_learns_a_linear_module_through_w_skip(tmp_path):
    """Output = x @ M into another width (d_out = 12). The skip transcoder predicts it exactly, and W_skip
    *is* M except in at most k directions: with k = 2 active latents per row, ReLU latents can carry a
    rank-2 linear part (a pair relu(w.x), relu(-w.x) with opposite decoder rows is linear), so the
    known answer is that `W_skip - M` has rank <= k. Without the skip term the same transcoder cannot
    represent a full-rank linear map."""
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(3)
    M = torch.randn(D_IN, 12, generator=g) / 4
    x = torch.randn(8192, D_IN, generator=g) * 3
    x_test = torch.randn(1024, D_IN, generator=g) * 3
    cfg = _cfg(tmp_path / "skip", target="out", skip_connection=True, d_sae=32, total_tokens=300_000)
    tc = train(cfg, PairedTensorSource(x, x @ M)).sae
    assert tc.W_skip.shape == (D_IN, 12) and tc.d_out == 12
    fvu = _fvu(x_test @ M, tc.reconstruct(x_test))
    # W_skip acts on the normalised input inside the normalised prediction: in raw units it is
    # W_skip * input_scale / output_scale
    effective = tc.W_skip.detach() * float(tc.input_scale) / float(tc.output_scale)
    sv = torch.linalg.svdvals(effective - M)
    top = float(torch.linalg.svdvals(M)[0])
    plain = cfg.replace(skip_connection=False, out=str(tmp_path / "plain"))
    no_skip = train(plain, PairedTensorSource(x, x @ M))
    fvu_plain = _fvu(x_test @ M, no_skip.sae.reconstruct(x_test))
    assert fvu < 1e-3, f"a linear module is predicted with FVU {fvu:.2e}"
    assert float(sv[2:].max()) < 1e-2 * top, f"W_skip differs from M beyond k=2 directions: {sv.tolist()}"
    assert fvu_plain > 0.1, f"without W_skip, 2 latents should not fit a rank-12 map (FVU {fvu_plain:.3f})"


def test_w_skip_starts_at_zero_and_a_transcoder_round_trips_exactly(tmp_path):
    torch.set_num_threads(1)
    x, y = _sparse_module(2048, seed=4)
    cfg = _cfg(tmp_path / "t", target="out", skip_connection=True, total_tokens=256 * 20)
    from saekit.train.trainer import Trainer

    fresh = Trainer(cfg, PairedTensorSource(x, y * 7))._fresh()
    assert torch.equal(fresh.W_skip, torch.zeros_like(fresh.W_skip)), "skip transcoders start with W_skip = 0"
    assert float(fresh.output_scale) != 1.0 and float(fresh.output_scale) != float(fresh.input_scale)
    tc = train(cfg, PairedTensorSource(x, y * 7)).sae
    loaded = saekit.load(tmp_path / "t")
    assert loaded.cfg == tc.cfg and loaded.cfg.transcode and loaded.cfg.skip_connection
    for name, t in tc.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name
    assert {"output_scale", "W_skip", "input_scale"} <= set(loaded.state_dict())
    assert torch.equal(loaded.reconstruct(x[:64]), tc.reconstruct(x[:64]))


@pytest.mark.parametrize("arch", ["batchtopk", "relu", "jumprelu"])
def test_other_transcoding_architectures_learn_the_sparse_module(tmp_path, arch):
    """Every architecture whose class says `transcodes` trains as a (skip) transcoder: held-out FVU of the
    prediction well below the best affine map's (0.71 on this module)."""
    torch.set_num_threads(1)
    x, y = _sparse_module(8192, seed=5)
    x_test, y_test = _sparse_module(2048, seed=2)
    kw = {"sparsity_coefficient": 0.1} if arch in ("relu", "jumprelu") else {}
    cfg = _cfg(tmp_path / arch, target="out", arch=arch, skip_connection=True, total_tokens=256 * 200, **kw)
    tc = train(cfg, PairedTensorSource(x, y)).sae
    assert tc.cfg.transcode and tc.arch == arch
    assert _fvu(y_test, tc.reconstruct(x_test)) < 0.5


def test_architectures_without_a_transcoder_forward_are_refused():
    with pytest.raises(SAEConfigError, match="cannot be trained or loaded as a transcoder.*topk"):
        TrainConfig.flat(target="out", arch="gated")
    with pytest.raises(SAEConfigError, match="transcoders are: batchtopk, jumprelu, relu, topk"):
        SAEConfig(d_in=4, d_sae=8, arch="matryoshka_batchtopk", k=2, transcode=True)


def test_refusals_name_the_fix(tmp_path):
    x, y = _sparse_module(1024, seed=6)
    with pytest.raises(SAEConfigError, match="--skip .* is for transcoders: add --target out"):
        TrainConfig.flat(skip_connection=True)
    with pytest.raises(StoreError, match="not a paired store.*--paired"):
        train(_cfg(tmp_path / "u", target="out"), TensorSource(x))
    with pytest.raises(SAEConfigError, match="d_out=4 is the output width of a transcoder"):
        SAEConfig(d_in=4, d_sae=8, k=2, d_out=4)
    tc = build(SAEConfig(d_in=D_IN, d_sae=32, k=2, transcode=True, d_out=8), seed=0)
    with pytest.raises(ShapeError, match=r"forward\(x, target=y\)"):
        tc(x[:4])
    with pytest.raises(ShapeError, match=r"expected \[4, d_out=8\]"):
        tc(x[:4], target=y[:4])
    sae = build(SAEConfig(d_in=D_IN, d_sae=32, k=2), seed=0)
    with pytest.raises(SAEConfigError, match="for transcoders"):
        sae(x[:4], target=y[:4])
    from saekit.errors import SteeringError
    from saekit.steer.apply import sae_edit

    with pytest.raises(SteeringError, match="steering with a transcoder is not supported"):
        sae_edit(tc, "additive", [0], [1.0])


def test_transcoder_training_resumes_bit_exactly(tmp_path):
    """Killed after 13 steps (checkpoint at 10) and rerun: the same weights as an uninterrupted run."""
    torch.set_num_threads(1)
    x, y = _sparse_module(2048, seed=7)
    src = PairedTensorSource(x, y)
    cfg = _cfg(tmp_path, target="out", skip_connection=True, total_tokens=256 * 24, checkpoint_every=5)
    part = train(cfg, src, out=tmp_path / "part", stop_after_steps=13)
    assert not part.finished
    resumed = train(cfg, src, out=tmp_path / "part")
    ref = train(cfg, src, out=tmp_path / "ref")
    assert resumed.finished and resumed.step == ref.step == 24
    for name, t in ref.sae.state_dict().items():
        assert torch.equal(t, resumed.sae.state_dict()[name]), name
    with pytest.raises(Exception, match="target"):  # a transcoder checkpoint is not resumed as an SAE
        train(cfg.replace(target="in", skip_connection=False), TensorSource(x), out=tmp_path / "part")
