"""Initialisation options and decoder constraints."""

from __future__ import annotations

import math

import pytest
import torch

from saekit.errors import ShapeError
from saekit.sae.init import fit_input_scale_, geometric_median, init_b_dec_, orthonormal_blocks

from .conftest import make_sae


def test_decoder_rows_unit_norm_at_init(arch):
    sae = make_sae(arch, d_sae=40)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(40), atol=1e-6, rtol=0)
    torch.testing.assert_close(sae.decoder_directions(), sae.W_dec, atol=1e-6, rtol=0)


@pytest.mark.parametrize("orthonormal", [False, True])
def test_float64_decoder_rows_unit_to_float64_precision(orthonormal):
    sae = make_sae("relu", d_sae=40, dtype="float64", init_orthonormal=orthonormal)
    assert (sae.W_dec.norm(dim=-1) - 1).abs().max() < 1e-12


def test_decoder_norm_option_without_unit_constraint():
    sae = make_sae("relu", normalize_decoder=False, init_decoder_norm=0.1)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.full((16,), 0.1), atol=1e-6, rtol=0)
    torch.testing.assert_close(sae.decoder_directions().norm(dim=-1), torch.ones(16), atol=1e-6, rtol=0)
    sae.set_decoder_norm_to_unit_()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(16), atol=1e-6, rtol=0)


def test_tied_init_equal_values_independent_tensors(arch):
    sae = make_sae(arch, init_tied=True)
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert sae.W_enc.data_ptr() != sae.W_dec.data_ptr()
    before = sae.W_dec.detach().clone()
    with torch.no_grad():
        sae.W_enc.add_(1.0)
    assert torch.equal(sae.W_dec, before)  # changing one leaves the other alone


def test_untied_init_differs():
    sae = make_sae("relu", init_tied=False)
    assert not torch.allclose(sae.W_enc, sae.W_dec.T)
    bound = 1 / math.sqrt(8)
    assert sae.W_enc.abs().max() <= bound


def test_seeded_build_is_reproducible(arch):
    a, b, c = make_sae(arch, seed=3), make_sae(arch, seed=3), make_sae(arch, seed=4)
    assert torch.equal(a.W_dec, b.W_dec) and torch.equal(a.W_enc, b.W_enc)
    assert not torch.equal(a.W_dec, c.W_dec)


@pytest.mark.parametrize("d_sae", [3, 8])
def test_orthonormal_exact_when_d_sae_le_d_in(d_sae):
    sae = make_sae("relu", d_in=8, d_sae=d_sae, init_orthonormal=True, dtype="float64")
    torch.testing.assert_close(sae.W_dec @ sae.W_dec.T, torch.eye(d_sae, dtype=torch.float64))
    if d_sae == 8:  # a square orthonormal decoder with tied encoder: encode is a change of basis
        x = torch.randn(5, 8, dtype=torch.float64)
        torch.testing.assert_close((x @ sae.W_enc) @ sae.W_dec, x)


@pytest.mark.parametrize("d_sae", [16, 20, 9])
def test_orthonormal_blocks_when_d_sae_gt_d_in(d_sae):
    sae = make_sae("relu", d_in=8, d_sae=d_sae, init_orthonormal=True, dtype="float64")
    W = sae.W_dec
    for start in range(0, d_sae, 8):
        blk = W[start : start + 8]
        torch.testing.assert_close(blk @ blk.T, torch.eye(blk.shape[0], dtype=torch.float64))
    # different blocks are different bases (not copies of one another)
    assert (W[:8] @ W[8:16].T).abs().max() < 1 - 1e-3


def test_orthonormal_blocks_function_float32():
    q = orthonormal_blocks(10, 4, generator=torch.Generator().manual_seed(0))
    assert q.shape == (10, 4) and q.dtype == torch.float32
    for start in (0, 4, 8):
        blk = q[start : start + 4].double()
        torch.testing.assert_close(
            blk @ blk.T, torch.eye(blk.shape[0], dtype=torch.float64), atol=1e-6, rtol=0
        )


def _sum_dist(points: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum of distances from each of `y [m, d]` to all `points [n, d]`."""
    return torch.cdist(y.double(), points.double()).sum(-1)


def test_geometric_median_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(9, 2, generator=g) * torch.tensor([1.0, 3.0])
    pts[0] = torch.tensor([25.0, -30.0])  # an outlier drags the mean, not the median
    med = geometric_median(pts)
    # brute force: the sum of distances over a fine grid around the sample
    lo, hi = pts.min(0).values, pts.max(0).values
    xs = torch.linspace(lo[0].item(), hi[0].item(), 601, dtype=torch.float64)
    ys = torch.linspace(lo[1].item(), hi[1].item(), 601, dtype=torch.float64)
    grid = torch.cartesian_prod(xs, ys)
    cost = _sum_dist(pts, grid)
    best = grid[cost.argmin()]
    cell = ((hi - lo) / 600).norm().item()
    assert (med.double() - best).norm().item() < 3 * cell
    assert _sum_dist(pts, med[None]).item() <= cost.min().item() + 1e-6
    assert _sum_dist(pts, med[None]).item() < _sum_dist(pts, pts.mean(0, keepdim=True)).item()


def test_geometric_median_of_collinear_odd_sample_is_the_middle_point():
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [10.0, 10.0], [3.0, 3.0]])
    torch.testing.assert_close(geometric_median(pts), torch.tensor([2.0, 2.0]), atol=1e-3, rtol=0)


def test_init_b_dec_mean_and_median():
    sae = make_sae("topk")
    sample = torch.randn(64, 8) + 3.0
    init_b_dec_(sae, sample, method="mean")
    torch.testing.assert_close(sae.b_dec.detach(), sample.mean(0))
    init_b_dec_(sae, sample, method="geometric_median")
    torch.testing.assert_close(sae.b_dec.detach(), geometric_median(sample), atol=1e-5, rtol=0)
    init_b_dec_(sae, sample, method="zeros")
    assert (sae.b_dec == 0).all()
    with pytest.raises(ValueError, match="geometric_median"):
        init_b_dec_(sae, sample, method="median")
    with pytest.raises(ShapeError, match=r"\(64, 7\)"):
        init_b_dec_(sae, torch.randn(64, 7))


def test_input_scale_gives_mean_norm_sqrt_d_in():
    sae = make_sae("relu", d_in=8, normalization="expected_norm")
    sample = torch.randn(200, 8) * 37.0
    scale = fit_input_scale_(sae, sample)
    assert sae.input_scale.item() == pytest.approx(scale)
    assert (sample * scale).norm(dim=-1).mean().item() == pytest.approx(math.sqrt(8), rel=1e-5)
    # b_dec is set in normalised units
    init_b_dec_(sae, sample, method="mean")
    torch.testing.assert_close(sae.b_dec.detach(), (sample * scale).mean(0))


def test_input_scale_stays_one_without_normalisation():
    sae = make_sae("relu")
    assert fit_input_scale_(sae, torch.randn(20, 8) * 100) == 1.0
    assert sae.input_scale.item() == 1.0


def test_remove_gradient_parallel_keeps_row_norms_to_first_order():
    torch.manual_seed(0)
    sae = make_sae("relu", d_sae=32, dtype="float64")
    grad = torch.randn(32, 8, dtype=torch.float64)
    sae.W_dec.grad = grad.clone()
    sae.remove_gradient_parallel_to_decoder_()
    g = sae.W_dec.grad
    # orthogonal to each row, and only the parallel part was removed
    assert (g * sae.W_dec).sum(-1).abs().max() < 1e-12
    removed = grad - g
    cos = torch.nn.functional.cosine_similarity(removed, sae.W_dec.detach(), dim=-1).abs()
    torch.testing.assert_close(cos, torch.ones(32, dtype=torch.float64))
    # a step of size lr changes norms by O(lr^2) with the projection, O(lr) without
    W = sae.W_dec.detach()
    n0 = W.norm(dim=-1)
    for lr in (1e-2, 1e-3):
        with_proj = ((W - lr * g).norm(dim=-1) - n0).abs().max().item()
        without = ((W - lr * grad).norm(dim=-1) - n0).abs().max().item()
        assert with_proj <= 0.5 * lr**2 * g.norm(dim=-1).max().item() ** 2 + 1e-12
        assert without > 10 * with_proj


def test_remove_gradient_parallel_with_non_unit_rows_and_no_grad():
    sae = make_sae("relu", normalize_decoder=False, init_decoder_norm=3.0)
    sae.remove_gradient_parallel_to_decoder_()  # no grad yet: a no-op, not an error
    assert sae.W_dec.grad is None
    sae.W_dec.grad = torch.randn(16, 8)
    sae.remove_gradient_parallel_to_decoder_()
    assert (sae.W_dec.grad * sae.W_dec).sum(-1).abs().max() < 1e-4


def test_init_rejects_bad_samples():
    from saekit.errors import NonFiniteError

    sae = make_sae("relu", normalization="expected_norm")
    bad = torch.randn(10, 8)
    bad[3, 2] = float("nan")
    with pytest.raises(NonFiniteError, match="first at row 3"):
        fit_input_scale_(sae, bad)
    with pytest.raises(NonFiniteError):
        init_b_dec_(sae, bad)
    with pytest.raises(ShapeError, match=r"\(0, 8\)"):
        fit_input_scale_(sae, torch.zeros(0, 8))
    assert sae.input_scale.item() == 1.0  # untouched by the failed calls


def test_unit_rows_projection_equals_the_general_one_on_unit_rows():
    torch.manual_seed(1)
    a, b = make_sae("topk", d_sae=64), make_sae("topk", d_sae=64)
    b.load_state_dict(a.state_dict())
    grad = torch.randn(64, 8)
    a.W_dec.grad, b.W_dec.grad = grad.clone(), grad.clone()
    a.remove_gradient_parallel_to_decoder_()
    b.remove_gradient_parallel_to_decoder_(unit_rows=True)  # rows are unit after init
    torch.testing.assert_close(a.W_dec.grad, b.W_dec.grad, rtol=1e-5, atol=1e-6)
    assert (b.W_dec.grad * b.W_dec).sum(-1).abs().max() < 1e-5


def test_row_dots_known_answer():
    from saekit.sae.kernels import row_dots

    a = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])
    b = torch.tensor([[4.0, 5.0, 6.0], [2.0, 7.0, 1.0]])
    torch.testing.assert_close(row_dots(a, b), torch.tensor([32.0, 0.0]))
