"""DenseLayoutAdam makes exactly torch.optim.Adam's updates, whatever the parameters' layout."""

from __future__ import annotations

import pytest
import torch

from saekit.train.dense_adam import DenseLayoutAdam, memory_order


def _params(layout: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(48, 20, generator=g)
    enc = w.t() if layout in ("transposed", "mixed") else w.t().contiguous()  # [20, 48]
    return [
        torch.nn.Parameter(enc.clone() if layout == "plain" else enc),
        torch.nn.Parameter(torch.randn(48, generator=g)),
    ]


def _run(opt_cls, layout: str, steps: int = 4, **kw):
    params = _params(layout)
    opt = opt_cls(params, lr=1e-2, betas=(0.8, 0.95), **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            grad = torch.randn(p.shape, generator=g)
            if layout == "mixed" or p.dim() == 1:
                p.grad = grad.contiguous()  # a gradient in another layout than its parameter
            else:
                p.grad = torch.empty_like(p).copy_(grad)  # same strides as the parameter
        opt.step()
    return params, opt


@pytest.mark.parametrize("layout", ["transposed", "mixed", "plain"])
@pytest.mark.parametrize("kw", [{"fused": True}, {"foreach": False}, {"fused": True, "amsgrad": True}])
def test_updates_equal_torch_adam(layout, kw):
    got, opt = _run(DenseLayoutAdam, layout, **kw)
    ref, ref_opt = _run(torch.optim.Adam, layout, **kw)
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)
        assert a.stride() == b.stride()  # the parameter itself keeps its layout
    for a, b in zip(got, ref, strict=True):
        sa, sb = opt.state[a], ref_opt.state[b]
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
        assert float(sa["step"]) == float(sb["step"]) == 4
    start = _params(layout)[0]
    assert not torch.allclose(got[0], start)  # it moved, so equality says something


def test_memory_order():
    x = torch.zeros(3, 4, 5)
    assert memory_order(x) is None
    assert memory_order(x.permute(2, 0, 1)) == (1, 2, 0)
    assert x.permute(2, 0, 1).permute(memory_order(x.permute(2, 0, 1))).is_contiguous()
    assert memory_order(torch.zeros(6, 4)[:, ::2]) is None  # strided, not dense: left alone
    assert memory_order(torch.zeros(5)) is None


def test_the_kernel_sees_contiguous_views_of_a_transposed_parameter(monkeypatch):
    import torch.optim.adam as adam_mod

    seen = []
    real = adam_mod.adam

    def spy(params, grads, exp_avgs, exp_avg_sqs, *args, **kwargs):
        seen.append([t.is_contiguous() for t in (params[0], grads[0], exp_avgs[0], exp_avg_sqs[0])])
        return real(params, grads, exp_avgs, exp_avg_sqs, *args, **kwargs)

    monkeypatch.setattr(adam_mod, "adam", spy)
    _run(DenseLayoutAdam, "transposed", steps=2, fused=True)
    assert seen == [[True] * 4] * 2
    seen.clear()
    _run(DenseLayoutAdam, "mixed", steps=1, fused=True)
    assert seen == [[False, True, False, False]]  # layouts differ: passed as they are
