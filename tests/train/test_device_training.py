"""The trainer on a device: where tensors live, autocast and TF32 following the device, the private-op
fallback of the sparse TopK path (forced on the CPU), and the --compile wiring."""

from __future__ import annotations

import pytest
import torch
from train_helpers import DEVICES, correlated_rows

from saekit.sae import SAEConfig, build, kernels
from saekit.train import TensorSource, TrainConfig, Trainer

torch.set_num_threads(1)


def _einsum_gather_dot(g_BD, W_FD, idx_BS):
    """Independent reference: materialise the gathered rows and reduce."""
    return (W_FD[idx_BS] * g_BD[:, None, :]).sum(-1)


@pytest.mark.parametrize("dev", DEVICES)
def test_both_gather_dot_paths_agree_with_einsum(dev):
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(37, 12, generator=g, dtype=torch.float64).to(dev)
    W = torch.randn(50, 12, generator=g, dtype=torch.float64).to(dev)
    idx = torch.randint(0, 50, (37, 5), generator=g).to(dev)
    ref = _einsum_gather_dot(grad, W, idx)
    torch.testing.assert_close(kernels._gather_dot_bmm(grad, W, idx), ref, rtol=1e-12, atol=1e-12)
    if kernels._private_op_works(torch.device(dev), torch.float64):
        torch.testing.assert_close(kernels._gather_dot_private(grad, W, idx), ref, rtol=1e-12, atol=1e-12)


def _sparse_vs_dense_grads(dev):
    """Gradients of the sparse TopK path (with aux-k) against dense autograd math, on `dev`."""
    sae = build(SAEConfig(d_in=16, d_sae=48, arch="topk", k=4, aux_k=5, dtype="float64"), seed=1).to(dev)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.W_enc.add_(0.1 * torch.randn_like(sae.W_enc))
    x = torch.randn(29, 16, dtype=torch.float64, device=dev)
    dead = torch.zeros(48, dtype=torch.bool, device=dev)
    dead[::3] = True
    out = sae(x, dead_mask=dead)
    sae.zero_grad()
    out.losses.total.backward()
    fast = {n: p.grad.clone() for n, p in sae.named_parameters()}
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    vals, idx = pre.topk(4, dim=-1)
    recon = torch.zeros_like(pre).scatter(-1, idx, vals.relu()) @ sae.W_dec + sae.b_dec
    avals, aidx = pre.masked_fill(~dead, float("-inf")).topk(5, dim=-1)
    a_recon = torch.zeros_like(pre).scatter(-1, aidx, avals.relu()) @ sae.W_dec
    loss = (recon - x).pow(2).sum(-1).mean() + sae.cfg.aux_k_coefficient * (
        a_recon - (x - recon).detach()
    ).pow(2).sum(-1).mean()
    sae.zero_grad()
    loss.backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(fast[n], p.grad, rtol=1e-9, atol=1e-10, msg=n)


@pytest.mark.parametrize("dev", DEVICES)
def test_forced_public_op_fallback_matches_dense_reference(dev, monkeypatch):
    """With the private ATen op marked unusable, the sparse backward runs on public ops and is exact."""
    monkeypatch.setitem(kernels._PRIVATE_OP_OK, (torch.device(dev).type, torch.float64), False)
    used = []
    monkeypatch.setattr(kernels, "_pairs_private", lambda *a: used.append(1))
    _sparse_vs_dense_grads(dev)
    assert not used


def test_missing_kernel_is_detected_and_falls_back(monkeypatch):
    """A private op that raises (as a backend without its kernel does) fails the probe, once."""
    calls = []

    def missing(*_):
        calls.append(1)
        raise NotImplementedError("Could not run 'aten::_embedding_bag_per_sample_weights_backward'")

    monkeypatch.setattr(kernels, "_PRIVATE_OP_OK", {})
    monkeypatch.setattr(kernels, "_pairs_private", missing)
    _sparse_vs_dense_grads("cpu")
    assert kernels._PRIVATE_OP_OK == {("cpu", torch.float64): False}
    assert len(calls) == 1  # probed once, then never called again


def _cfg(dev, **kw):
    base = dict(arch="topk", k=4, expansion=4, batch_size=64, total_tokens=64 * 12, quiet=True, seed=2)
    base.update(init_sample=256, lr_warmup_steps=2, checkpoint_every=5, dead_tokens=128, device=dev)
    base.update(kw)
    return TrainConfig.flat(**base)


@pytest.mark.parametrize("dev", DEVICES)
def test_training_keeps_everything_on_the_device_and_matches_cpu(dev, tmp_path):
    src = TensorSource(correlated_rows(1024, 12, seed=0))
    seen = []
    trainer = Trainer(_cfg(dev), src, out=tmp_path / "dev")
    orig_step = trainer._step

    def spy(run, forward, x):
        opt_devs = {v.device.type for st in run.opt.state.values() for v in st.values() if v.dim() > 0}
        seen.append((x.device.type, run.sae.W_enc.device.type, run.tracker.since_fired.device.type, opt_devs))
        return orig_step(run, forward, x)

    trainer._step = spy
    res = trainer.run()
    want = torch.device(dev).type
    assert all(s[:3] == (want, want, want) for s in seen) and len(seen) == 12
    assert all(s[3] <= {want} for s in seen) and seen[-1][3] == {want}
    ref = Trainer(_cfg("cpu"), src, out=tmp_path / "cpu").run()
    for name, t in ref.sae.state_dict().items():
        got = res.sae.state_dict()[name].cpu()
        torch.testing.assert_close(got, t, rtol=1e-3, atol=1e-4, msg=name)  # CUDA sums in another order


@pytest.mark.parametrize("dev", DEVICES)
def test_autocast_runs_the_encoder_matmul_in_bf16_on_the_device(dev, monkeypatch, tmp_path):
    import saekit.sae.topk as topk_mod

    seen = []
    orig = topk_mod.topk_forward

    def spy(x, *args, **kw):  # kw: `centre` (False for transcoders)
        seen.append((x.device.type, args[-1]))
        return orig(x, *args, **kw)

    monkeypatch.setattr(topk_mod, "topk_forward", spy)
    src = TensorSource(correlated_rows(256, 12, seed=1))
    Trainer(_cfg(dev, autocast="bfloat16", total_tokens=64 * 2), src, out=tmp_path).run()
    assert seen[:2] == [(torch.device(dev).type, torch.bfloat16)] * 2
    seen.clear()
    Trainer(_cfg(dev, total_tokens=64 * 2), src, out=tmp_path / "fp32").run()
    assert seen[:2] == [(torch.device(dev).type, None)] * 2


def test_tf32_is_allowed_during_training_only(tmp_path):
    before = torch.backends.cuda.matmul.allow_tf32
    during = []
    src = TensorSource(correlated_rows(256, 12, 1))
    trainer = Trainer(_cfg("cpu", tf32=True, total_tokens=64 * 2), src, tmp_path)
    orig_step = trainer._step
    trainer._step = lambda *a: (during.append(torch.backends.cuda.matmul.allow_tf32), orig_step(*a))[1]
    trainer.run()
    assert during == [True, True]
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_compile_flag_trains_through_torch_compile(monkeypatch, tmp_path):
    """--compile hands the SAE to torch.compile and trains through what it returns."""
    compiled = []

    def fake_compile(module, **kw):
        def wrapper(*a, **k):
            compiled.append(1)
            return module(*a, **k)

        return wrapper

    monkeypatch.setattr(torch, "compile", fake_compile)
    src = TensorSource(correlated_rows(256, 12, 1))
    res = Trainer(_cfg("cpu", compile=True, total_tokens=64 * 3), src, out=tmp_path / "c").run()
    assert len(compiled) == 3
    ref = Trainer(_cfg("cpu", total_tokens=64 * 3), src, out=tmp_path / "e").run()
    assert torch.equal(res.sae.W_dec, ref.sae.W_dec)


@pytest.mark.slow  # inductor compiles C++ on the CPU: about a minute on a loaded 2-core machine
def test_real_torch_compile_matches_eager(tmp_path):
    src = TensorSource(correlated_rows(512, 12, 1))
    res = Trainer(_cfg("cpu", compile=True, total_tokens=64 * 4), src, out=tmp_path / "c").run()
    ref = Trainer(_cfg("cpu", total_tokens=64 * 4), src, out=tmp_path / "e").run()
    for name, t in ref.sae.state_dict().items():
        torch.testing.assert_close(res.sae.state_dict()[name], t, rtol=1e-4, atol=1e-5, msg=name)
