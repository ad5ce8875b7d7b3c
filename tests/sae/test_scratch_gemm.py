"""Reused CPU buffers and the bias-in-the-GEMM product, against plain torch ops."""

import pytest
import torch

from saekit.sae.biased_gemm import biased_gemm
from saekit.sae.scratch import release, scratch

CPU = torch.device("cpu")


def test_scratch_reuses_memory_per_name_and_grows():
    release()
    with torch.no_grad():
        a = scratch("a", (4, 8), torch.float32, CPU)
        again = scratch("a", (2, 8), torch.float32, CPU)  # smaller: same memory
        other = scratch("b", (4, 8), torch.float32, CPU)
        big = scratch("a", (64, 64), torch.float32, CPU)  # larger: new memory
        bf = scratch("a", (4, 8), torch.bfloat16, CPU)  # another dtype: new memory
    assert again.data_ptr() == a.data_ptr() and again.shape == (2, 8)
    assert other.data_ptr() != a.data_ptr()
    assert big.shape == (64, 64) and big.data_ptr() != a.data_ptr()
    assert bf.dtype == torch.bfloat16
    release()


def test_scratch_declines_under_autograd():
    assert scratch("a", (4, 8), torch.float32, CPU) is None  # grad mode on: ops must allocate
    with torch.no_grad():
        assert scratch("a", (4, 8), torch.float32, CPU) is not None


@pytest.mark.parametrize("d", [576, 37, 31, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_biased_gemm_equals_addmm(d, dtype):
    g = torch.Generator().manual_seed(d)
    x, W, b = torch.randn(50, d, generator=g), torch.randn(70, d, generator=g), torch.randn(70, generator=g)
    ref = torch.addmm(b, x, W.T)  # fp32 reference
    with torch.no_grad():
        got = biased_gemm("t", x, W, b, dtype).clone()  # the next call reuses the buffer
        got2 = biased_gemm("t", 2 * x, W, b, dtype)  # the reused buffers hold no stale values
    assert got.dtype == dtype and got.shape == (50, 70)
    tol = 1e-4 if dtype == torch.float32 else 2**-7
    scale = ref.abs().amax()
    assert float((got.float() - ref).abs().max() / scale) < tol
    assert float((got2.float() - torch.addmm(b, 2 * x, W.T)).abs().max() / scale) < 2 * tol
    plain = biased_gemm("t", x, W, b, dtype)  # grad mode on: the plain addmm path
    assert float((plain.float() - ref).abs().max() / scale) < tol
