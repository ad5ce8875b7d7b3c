"""The one-pass decoder step (C) against torch's projection + torch.optim.Adam + renorm, and its fallbacks."""

from __future__ import annotations

import platform

import pytest
import torch
from numerics import assert_close_scaled

from saekit.sae.native_build import compiler
from saekit.train import TensorSource, TrainConfig, Trainer
from saekit.train import fused_decoder as fd
from saekit.train.step import make_optimizer

torch.set_num_threads(1)

needs_kernel = pytest.mark.skipif(compiler() is None, reason="no C compiler: the torch path is the only one")


def _unit(rows: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, n, generator=g), dim=-1)


def _torch_path(W: torch.nn.Parameter, b: torch.nn.Parameter, opt, grads) -> None:
    """What the trainer does without the kernel: project, torch Adam on every parameter, renorm."""
    for gW, gb in grads:
        W.grad, b.grad = gW.clone(), gb.clone()
        with torch.no_grad():
            W.grad -= (W.grad * W).sum(-1, keepdim=True) * W
        opt.step()
        with torch.no_grad():
            W /= torch.linalg.vector_norm(W, dim=-1, keepdim=True).clamp_min(1e-12)


@needs_kernel
@pytest.mark.parametrize("fused_adam", [True, False], ids=["torch fused Adam", "torch for-loop Adam"])
def test_matches_torch_adam_over_steps_and_leaves_the_same_state(fused_adam):
    rows, n, steps = 300, 83, 6  # 83: not a multiple of the kernel's 16 lanes
    gen = torch.Generator().manual_seed(1)
    grads = [(torch.randn(rows, n, generator=gen), torch.randn(n, generator=gen)) for _ in range(steps)]
    W_ref, b_ref = torch.nn.Parameter(_unit(rows, n, 0)), torch.nn.Parameter(torch.zeros(n))
    W, b = torch.nn.Parameter(W_ref.detach().clone()), torch.nn.Parameter(torch.zeros(n))
    kw = dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8)
    ref_opt = torch.optim.Adam([W_ref, b_ref], fused=fused_adam, **kw)
    opt = torch.optim.Adam([W, b], fused=fused_adam, **kw)
    _torch_path(W_ref, b_ref, ref_opt, grads)
    for gW, gb in grads:
        W.grad, b.grad = gW.clone(), gb.clone()
        assert fd.decoder_step_(W, opt)
        assert W.grad is None  # handed over: torch's step must skip the decoder
        opt.step()
    # W moved by ~steps * lr per element; the kernel and torch differ in summation order only
    assert float((W_ref.detach() - _unit(rows, n, 0)).abs().max()) > 1e-3
    assert_close_scaled(W.detach(), W_ref.detach(), terms=n * steps, ulps=64, msg="decoder")
    assert torch.equal(b.detach(), b_ref.detach())
    s, r = opt.state[W], ref_opt.state[W_ref]
    assert set(s) == set(r) and s["step"].dtype == r["step"].dtype and float(s["step"]) == steps
    for key in ("exp_avg", "exp_avg_sq"):
        assert_close_scaled(s[key], r[key], terms=n * steps, ulps=64, msg=key)
    # the optimiser state of the fused run loads into a plain torch Adam (checkpoints do not change)
    fresh = torch.optim.Adam([W_ref, b_ref], fused=fused_adam, **kw)
    fresh.load_state_dict(opt.state_dict())


@needs_kernel
def test_rows_split_over_threads_give_bitwise_the_same_result():
    fn = fd.kernel()
    assert fn
    results = []
    for threads in (1, 3):
        W, m, v = _unit(50, 40, 2), torch.zeros(50, 40), torch.zeros(50, 40)
        g = torch.randn(50, 40, generator=torch.Generator().manual_seed(5))
        fd._call(fn, W, g, m, v, 1, 1e-2, (0.9, 0.999), 1e-8, threads)
        results.append((W, m, v))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_falls_back_and_changes_nothing_where_the_kernel_does_not_apply():
    W = torch.nn.Parameter(_unit(20, 12, 3))
    cases = {
        "amsgrad": torch.optim.Adam([W], lr=1e-2, amsgrad=True),
        "weight decay": torch.optim.Adam([W], lr=1e-2, weight_decay=0.1),
        "maximize": torch.optim.Adam([W], lr=1e-2, maximize=True),
        "SGD": torch.optim.SGD([W], lr=1e-2),
        "not this optimiser's parameter": torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))], lr=1e-2),
    }
    for name, opt in cases.items():
        W.grad = torch.ones_like(W)
        before = W.detach().clone()
        assert not fd.decoder_step_(W, opt), name
        assert torch.equal(W.detach(), before) and W.grad is not None and not opt.state.get(W), name
    Wd = torch.nn.Parameter(_unit(20, 12, 3).double())
    Wd.grad = torch.ones_like(Wd)
    assert not fd.decoder_step_(Wd, torch.optim.Adam([Wd], lr=1e-2)), "float64"
    Wt = torch.nn.Parameter(_unit(12, 20, 3).T)  # a transposed view: rows are not contiguous
    Wt.grad = torch.ones(20, 12)
    assert not fd.decoder_step_(Wt, torch.optim.Adam([Wt], lr=1e-2)), "non-contiguous"


def test_native_off_uses_torch(monkeypatch):
    monkeypatch.setattr(fd, "_kernel", None)
    monkeypatch.setenv("SAEKIT_NATIVE", "0")
    W = torch.nn.Parameter(_unit(8, 16, 0))
    W.grad = torch.ones_like(W)
    assert not fd.decoder_step_(W, torch.optim.Adam([W], lr=1e-2))
    assert fd.kernel() is False


@needs_kernel
def test_a_training_run_with_and_without_the_kernel_agrees(monkeypatch, tmp_path):
    """The trainer's own step, both ways: same weights after 24 steps, up to rounding."""
    x = torch.randn(1024, 24, generator=torch.Generator().manual_seed(0)) * 3 + 1
    cfg = TrainConfig.flat(arch="topk", k=4, expansion=4, batch_size=128, total_tokens=128 * 24, quiet=True,
                           normalization="none", lr=3e-3, lr_warmup_steps=0, seed=0)  # fmt: skip
    assert fd.kernel()
    calls = []
    real = fd._call
    monkeypatch.setattr(fd, "_call", lambda *a, **k: (calls.append(1), real(*a, **k)))
    with_kernel = Trainer(cfg, TensorSource(x), out=tmp_path / "a").run().sae
    assert len(calls) == 24
    monkeypatch.setattr(fd, "_kernel", False)
    without = Trainer(cfg, TensorSource(x), out=tmp_path / "b").run().sae
    for name, p in without.state_dict().items():
        q = with_kernel.state_dict()[name]
        # 24 steps of lr 3e-3 on top-k-selected latents: rounding differences may flip a near-tie in
        # the top-k only rarely; the weights agree far below the size of one step
        assert float((p - q).abs().max()) < 1e-4 * max(1.0, float(p.abs().max())), name


@pytest.mark.parametrize("march", ["-march=x86-64-v3", "-march=x86-64"], ids=["avx2", "scalar"])
def test_the_avx2_and_scalar_builds_pass_the_probe(monkeypatch, tmp_path, march):
    if compiler() is None or platform.machine() != "x86_64":
        pytest.skip("needs a C compiler on x86-64")
    monkeypatch.setattr(fd, "FLAGS", tuple(f for f in fd.FLAGS if not f.startswith("-march")) + (march,))
    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    assert fd._probe(fd._load())


def test_make_optimizer_state_is_what_the_kernel_expects():
    W = torch.nn.Parameter(_unit(16, 8, 0))
    opt = make_optimizer([W], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    assert isinstance(opt, torch.optim.Adam) and fd._plain_adam(opt.param_groups[0])
