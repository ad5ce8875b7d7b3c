"""The native CPU top-k kernel against torch.topk (the independent reference) and its fallbacks."""

import pytest
import torch

from saekit.sae import native_topk as nt

needs_kernel = pytest.mark.skipif(not nt.kernel(), reason="native top-k could not be built here")


def _same_set(x, vals, idx, k):
    """vals/idx form a top-k set of x's rows: the values are x at idx, and they rank like torch's."""
    ref = nt._ranked(x.topk(k, dim=-1).values)
    assert torch.equal(nt._ranked(vals), ref)
    assert torch.equal(nt._ranked(x.gather(1, idx)), nt._ranked(vals))
    assert all(len(set(r.tolist())) == k for r in idx)  # k distinct positions per row


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("rows", "n", "k"), [(1, 1, 1), (3, 50, 50), (64, 9216, 32), (17, 1000, 129), (5, 37, 1)]
)
def test_matches_torch_topk_on_random_rows(dtype, rows, n, k):
    x = torch.randn(rows, n, generator=torch.Generator().manual_seed(n + k)).to(dtype)
    vals, idx = nt.topk_rows(x, k)
    assert vals.dtype == dtype and idx.dtype == torch.int64 and vals.shape == idx.shape == (rows, k)
    _same_set(x, vals, idx, k)


@needs_kernel
def test_hard_rows_ties_infinities_nan_sorted_and_strided():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4096, generator=g)
    x[0] = 0.0  # all tied
    x[1] = float("-inf")  # nothing above -inf: still k results
    x[2, ::5] = float("nan")  # NaN ranks first, as in torch.topk
    x[3] = torch.arange(4096.0)  # ascending: every element beats the running k-th best
    x[4] = -torch.arange(4096.0)
    x[5] = torch.randint(0, 3, (4096,), generator=g).float()  # few distinct values
    x[6, 100:140] = float("inf")
    for k in (1, 40, 300):
        _same_set(x, *nt.topk_rows(x, k), k)
    wide = torch.randn(6, 3000, generator=g)
    view = wide[:, 500:2500]  # row stride 3000, columns contiguous
    _same_set(view, *nt.topk_rows(view, 64), 64)


@needs_kernel
def test_more_threads_than_rows_and_one_thread(monkeypatch):
    x = torch.randn(3, 2000, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    _same_set(x, *nt.topk_rows(x, 10), 10)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    _same_set(x, *nt.topk_rows(x, 10), 10)


def test_inputs_the_kernel_does_not_take_go_to_torch(monkeypatch):
    calls = []
    monkeypatch.setattr(nt, "_call", lambda fn, x, k: calls.append(1))
    x = torch.randn(4, 100)
    for t in (x.double(), x.T, x.clone().requires_grad_(), x.half()):
        vals, idx = nt.topk_rows(t, 3)
        ref = t.topk(3, dim=-1, sorted=False)
        assert torch.equal(vals, ref.values) and torch.equal(idx, ref.indices)
    assert calls == []


def test_no_compiler_warns_once_and_falls_back_to_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(nt, "_kernel", None)
    monkeypatch.setattr(nt, "_compiler", lambda: None)
    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    x = torch.randn(5, 300)
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        vals, idx = nt.topk_rows(x, 7)
    ref = x.topk(7, dim=-1, sorted=False)
    assert torch.equal(vals, ref.values) and torch.equal(idx, ref.indices)
    assert nt.kernel() is False  # decided once: no second warning, no second build


def test_build_is_cached_by_source_and_cpu(monkeypatch, tmp_path):
    if nt._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    first = nt.build()
    assert first.parent == tmp_path / "native" and first.stat().st_size > 0
    assert nt.build() == first  # same source, flags and CPU: the cached library
    monkeypatch.setattr(nt, "_cpu_tag", lambda: "another cpu")
    assert nt.build() != first  # -march=native code is not reused on another CPU


@pytest.mark.parametrize(
    "march", [["-march=x86-64-v3"], ["-march=x86-64"]], ids=["avx2 (the EPYC path)", "scalar"]
)
def test_the_avx2_and_scalar_builds_agree_with_torch(monkeypatch, tmp_path, march):
    """This machine may take the AVX-512 branch; the AVX2 and portable branches are built and checked too."""
    import platform

    if nt._compiler() is None or platform.machine() != "x86_64":
        pytest.skip("needs a C compiler on x86-64")
    flags = tuple(f for f in nt.FLAGS if not f.startswith("-march")) + tuple(march)
    monkeypatch.setattr(nt, "FLAGS", flags)
    monkeypatch.setenv("SAEKIT_CACHE", str(tmp_path))
    fn = nt._load()
    assert nt._probe(fn)
    x = torch.randn(33, 5000, generator=torch.Generator().manual_seed(3))
    for dt in (torch.float32, torch.bfloat16):
        vals, idx = nt._call(fn, x.to(dt), 40)
        _same_set(x.to(dt), vals, idx, 40)
