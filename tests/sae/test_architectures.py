"""Per-architecture behaviour: shapes, exact sparsity, gradients, and losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from saekit.errors import ShapeError
from saekit.sae import SAEOutput, SparseLatents

from .conftest import capability, make_sae

# -- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lead", [(5,), (2, 3), (2, 1, 4), (1,)])
def test_encode_decode_shapes_with_leading_dims(arch, lead):
    sae = make_sae(arch)
    x = torch.randn(*lead, 8)
    lat = sae.encode(x)
    assert lat.shape == (*lead, 16)
    assert lat.dtype == sae.dtype
    rec = sae.decode(lat)
    assert rec.shape == (*lead, 8)
    # leading dims are only a reshape: the same rows encoded flat give the same latents
    flat = sae.encode(x.reshape(-1, 8))
    torch.testing.assert_close(lat.reshape(-1, 16), flat)
    # decoding is the documented affine map (input_scale 1): latents @ W_dec + b_dec, written out here
    by_hand = (lat.reshape(-1, 16) @ sae.W_dec + sae.b_dec).reshape(*lead, 8)
    torch.testing.assert_close(rec, by_hand)
    torch.testing.assert_close(sae.reconstruct(x), by_hand)


def test_forward_output_fields(arch):
    sae = make_sae(arch)
    x = torch.randn(6, 8)
    out = sae(x, dead_mask=torch.ones(16, dtype=torch.bool))
    assert isinstance(out, SAEOutput)
    assert out.recon.shape == (6, 8)
    for term in out.losses:
        assert term.shape == ()
        assert torch.isfinite(term)
    # the recon term is the mean squared error summed over d_in, by hand (the totals are checked
    # against hand-computed terms in the *_by_hand tests below)
    if capability(arch, "nested"):  # Matryoshka: the sum over prefixes m of the first-m-latents error
        lat, expected = out.latents, 0.0
        for m in sae.prefix_sizes():
            part = lat[:, :m] @ sae.W_dec[:m] + sae.b_dec
            expected += (part - x).pow(2).sum(-1).mean().item()
        assert sae.prefix_sizes()[-1] == 16
        assert out.losses.recon.item() == pytest.approx(expected, rel=1e-5)
    else:
        mse = (out.recon - x).pow(2).sum(-1).mean().item()
        assert out.losses.recon.item() == pytest.approx(mse, rel=1e-5)
    assert out.l0.shape == () and out.fired.shape == (16,) and out.fired.dtype == torch.bool
    if capability(arch, "sparse_native"):
        assert out.latents is None
        assert isinstance(out.sparse, SparseLatents) and out.sparse.values.shape == (6, 3)
        dense = torch.zeros(6, 16).scatter_(1, out.sparse.indices, out.sparse.values)
    else:
        assert out.sparse is None and out.latents.shape == (6, 16)
        dense = out.latents
    # l0 and fired are what the latents say
    assert out.l0.item() == pytest.approx((dense != 0).sum(-1).float().mean().item())
    assert torch.equal(out.fired, (dense != 0).any(0))
    # forward accepts leading dims too (flattened to rows)
    out3 = sae(x.reshape(2, 3, 8))
    torch.testing.assert_close(out3.losses.recon, sae(x).losses.recon)


def test_encode_rejects_wrong_width(arch):
    sae = make_sae(arch)
    with pytest.raises(ShapeError, match=r"d_in=8") as ei:
        sae.encode(torch.randn(3, 7))
    assert "(3, 7)" in str(ei.value)
    with pytest.raises(ShapeError):
        sae(torch.randn(4, 9))
    with pytest.raises(ShapeError):
        sae.encode(torch.tensor(1.0))
    with pytest.raises(ShapeError, match="d_sae=16"):
        sae.decode(torch.randn(3, 15))


# -- sparsity -------------------------------------------------------------------------------------


def test_topk_exactly_k_per_row_and_matches_reference():
    sae = make_sae("topk", d_sae=32, k=5)
    x = torch.randn(40, 8)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive -> exactly k non-zeros
        lat = sae.encode(x)
        assert ((lat != 0).sum(-1) == 5).all()
        sae.b_enc.fill_(0.0)
        lat = sae.encode(x)
        assert ((lat != 0).sum(-1) <= 5).all()
        # reference: keep the k largest of relu(pre) per row
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        ref = torch.zeros_like(pre)
        top = pre.sort(-1, descending=True)
        ref.scatter_(1, top.indices[:, :5], top.values[:, :5].relu())
        torch.testing.assert_close(lat, ref)
        vals, idx = sae.encode_sparse(x)
        assert vals.shape == idx.shape == (40, 5)
        recon_ref = ref @ sae.W_dec + sae.b_dec
        torch.testing.assert_close(sae.decode_sparse(vals, idx), recon_ref)
        out = sae(x)
        torch.testing.assert_close(out.recon, recon_ref)


def test_topk_sparse_form_keeps_leading_dims():
    sae = make_sae("topk", k=2)
    x = torch.randn(2, 3, 8)
    vals, idx = sae.encode_sparse(x)
    assert vals.shape == idx.shape == (2, 3, 2)
    # sum_j v_j W_dec[i_j] + b_dec, written out per row
    by_hand = torch.einsum("abk,abkd->abd", vals, sae.W_dec[idx]) + sae.b_dec
    torch.testing.assert_close(sae.decode_sparse(vals, idx), by_hand)


def test_batchtopk_training_keeps_top_k_times_batch():
    torch.manual_seed(0)
    sae = make_sae("batchtopk", d_sae=32, k=4).train()
    x = torch.randn(10, 8)
    x[0] *= 20  # one loud row takes more than k latents: allowed, the batch budget is k*B
    with torch.no_grad():
        sae.b_enc.fill_(0.5)
        out = sae(x)
        nnz = (out.latents != 0).sum()
        assert nnz <= 4 * 10
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        flat = pre.relu().flatten()
        keep = flat.sort(descending=True).indices[:40]
        ref = torch.zeros_like(flat)
        ref[keep] = flat[keep]
        torch.testing.assert_close(out.latents, ref.reshape(10, 32))
        assert (out.latents[0] != 0).sum() > 4  # rows are not capped at k
        # threshold estimated from this batch: the smallest kept positive activation
        assert sae.threshold.item() == pytest.approx(out.latents[out.latents > 0].min().item())


def test_batchtopk_threshold_running_mean_and_inference():
    sae = make_sae("batchtopk", d_sae=32, k=4).train()
    # before training, inference falls back to per-row top-k
    assert sae.threshold.item() < 0
    x = torch.randn(16, 8)
    with torch.no_grad():
        sae.b_enc.fill_(0.5)
        lat = sae.encode(x)
        assert ((lat != 0).sum(-1) <= 4).all()
        out1 = sae(x)
        t1 = out1.latents[out1.latents > 0].min().item()
        x2 = torch.randn(16, 8) * 3
        out2 = sae(x2)
        t2 = out2.latents[out2.latents > 0].min().item()
        assert sae.threshold.item() == pytest.approx(0.99 * t1 + 0.01 * t2, rel=1e-5)
        sae.eval()
        theta = sae.threshold.item()
        before = sae.threshold.clone()
        x3 = torch.randn(7, 8)
        out3 = sae(x3)  # eval forward: threshold inference, no threshold update
        assert torch.equal(sae.threshold, before)
        pre = (x3 - sae.b_dec) @ sae.W_enc + sae.b_enc
        ref = torch.where(pre > theta, pre, torch.zeros_like(pre))
        torch.testing.assert_close(out3.latents, ref)
        torch.testing.assert_close(sae.encode(x3), ref)
        # inference does not depend on the batch: row by row equals all at once
        rows = torch.cat([sae.encode(x3[i : i + 1]) for i in range(7)])
        torch.testing.assert_close(rows, ref)


def test_dense_architectures_zero_below_threshold():
    for arch in ("relu", "jumprelu", "gated"):
        sae = make_sae(arch)
        with torch.no_grad():
            sae.b_enc.fill_(-100.0)  # every gate / pre-activation negative
            if arch == "gated":
                sae.b_mag.fill_(5.0)
            assert (sae.encode(torch.randn(5, 8)) == 0).all(), arch


# -- gradients --------------------------------------------------------------------------------------


def test_gradients_reach_every_parameter(arch):
    torch.manual_seed(1)
    sae = make_sae(arch, jumprelu_bandwidth=2.0, jumprelu_init_threshold=0.5).train()
    with torch.no_grad():
        sae.b_dec.normal_()
        if arch == "gated":
            sae.r_mag.normal_(std=0.1)
    x = torch.randn(32, 8)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[::2] = True  # half the latents "dead" so the aux-k loss is active for the TopK family
    out = sae(x, dead_mask=dead)
    out.losses.total.backward()
    names = [n for n, _ in sae.named_parameters()]
    expected = {"W_enc", "b_enc", "W_dec", "b_dec"} | {
        "jumprelu": {"log_threshold"},
        "gated": {"r_mag", "b_mag"},
    }.get(arch, set())
    assert set(names) == expected
    for name, p in sae.named_parameters():
        assert p.grad is not None, f"{arch}: no gradient for {name}"
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0, f"{arch}: zero gradient for {name}"


def test_jumprelu_ste_gradient_matches_hand_formula():
    """Identity encoder/decoder so pre-activations are the inputs; check d total / d log_threshold."""
    eps, lam = 0.2, 0.3
    sae = make_sae(
        "jumprelu", d_in=4, d_sae=4, dtype="float64", jumprelu_bandwidth=eps, sparsity_coefficient=lam
    )
    theta = torch.tensor([0.5, 1.0, 0.3, 2.0], dtype=torch.float64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4))
        sae.W_dec.copy_(torch.eye(4))
        sae.log_threshold.copy_(theta.log())
    # pre-activations inside the bandwidth (|z - theta| < eps/2) on both sides, and outside it
    x = torch.tensor(
        [
            [0.55, 0.95, 0.0, 2.05],
            [0.45, 1.50, 0.32, 1.00],
            [2.00, 1.08, 0.25, 2.09],
        ],
        dtype=torch.float64,
    )
    out = sae(x)
    out.losses.total.backward()

    B = x.shape[0]
    z = x
    H = (z > theta).double()
    K = ((z - theta).abs() / eps < 0.5).double()
    assert K.sum() >= 6 and (K * H).sum() >= 2 and (K * (1 - H)).sum() >= 2  # the construction holds
    f = z * H
    dL_df = 2 * (f - x) / B  # recon loss = mean_b sum_d (f - x)^2 with identity decoder
    dtheta = (dL_df * -(theta / eps) * K).sum(0) + lam * (-(K / eps) / B).sum(0)
    expected = dtheta * theta  # chain rule through theta = exp(log_threshold)
    torch.testing.assert_close(sae.log_threshold.grad, expected)
    # pre-activation gradient passes H(z - theta) (JumpReLU) and nothing from the step (L0)
    torch.testing.assert_close(sae.b_enc.grad, (dL_df * H).sum(0))
    # loss values too
    assert out.losses.sparsity.item() == pytest.approx(lam * H.sum(-1).mean().item())
    assert out.losses.recon.item() == pytest.approx(((f - x) ** 2).sum(-1).mean().item())
    assert out.losses.total.item() == pytest.approx(
        ((f - x) ** 2).sum(-1).mean().item() + lam * H.sum(-1).mean().item()
    )
    assert out.l0.item() == pytest.approx(H.sum(-1).mean().item())


def test_jumprelu_threshold_gets_no_gradient_outside_bandwidth():
    sae = make_sae("jumprelu", d_in=4, d_sae=4, jumprelu_bandwidth=0.01, jumprelu_init_threshold=0.5)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(4))
        sae.W_dec.copy_(torch.eye(4))
    x = torch.tensor([[0.1, 0.9, 2.0, -1.0]])
    sae(x).losses.total.backward()
    assert torch.equal(sae.log_threshold.grad, torch.zeros(4))


# -- losses against hand computation -----------------------------------------------------------------


def _set(sae, **tensors):
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(sae, name).copy_(torch.as_tensor(value, dtype=sae.dtype))


W_ENC = [[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]]  # [d_in=2, d_sae=3]
W_DEC = [[2.0, 0.0], [0.6, 0.8], [-1.0, 1.0]]  # [d_sae=3, d_in=2], row norms 2, 1, sqrt(2)
B_ENC = [0.1, -0.2, 0.05]
B_DEC = [0.5, -0.5]
X = [[1.0, 2.0], [-1.0, 0.5]]


def _pre(x, w, b_enc, b_dec):
    """Pure-Python `(x - b_dec) W_enc + b_enc` for one row."""
    c = [x[i] - b_dec[i] for i in range(len(x))]
    return [sum(c[i] * w[i][j] for i in range(len(c))) + b_enc[j] for j in range(len(b_enc))]


def _dec(f, w_dec, b_dec):
    return [sum(f[j] * w_dec[j][i] for j in range(len(f))) + b_dec[i] for i in range(len(b_dec))]


def _sq(a, b):
    return sum((p - q) ** 2 for p, q in zip(a, b))


def test_relu_losses_by_hand():
    sae = make_sae(
        "relu", d_in=2, d_sae=3, dtype="float64", sparsity_coefficient=0.7, normalize_decoder=False
    )
    _set(sae, W_enc=W_ENC, W_dec=W_DEC, b_enc=B_ENC, b_dec=B_DEC)
    norms = [math.hypot(*row) for row in W_DEC]
    recon, l1 = 0.0, 0.0
    for x in X:
        f = [max(p, 0.0) for p in _pre(x, W_ENC, B_ENC, B_DEC)]
        recon += _sq(_dec(f, W_DEC, B_DEC), x) / len(X)
        l1 += sum(fj * nj for fj, nj in zip(f, norms)) / len(X)
    out = sae(torch.tensor(X, dtype=torch.float64), sparsity_scale=0.5)
    assert out.losses.recon.item() == pytest.approx(recon)
    assert out.losses.sparsity.item() == pytest.approx(0.7 * 0.5 * l1)
    assert out.losses.aux.item() == 0.0
    assert out.losses.total.item() == pytest.approx(recon + 0.35 * l1)


def test_gated_losses_by_hand():
    sae = make_sae("gated", d_in=2, d_sae=3, dtype="float64", sparsity_coefficient=0.4)
    r_mag, b_mag = [0.2, -0.3, 0.0], [0.1, 0.4, -0.6]
    _set(sae, W_enc=W_ENC, W_dec=W_DEC, b_enc=B_ENC, b_dec=B_DEC, r_mag=r_mag, b_mag=b_mag)
    norms = [math.hypot(*row) for row in W_DEC]
    w_mag = [[W_ENC[i][j] * math.exp(r_mag[j]) for j in range(3)] for i in range(2)]
    recon = aux = l1 = 0.0
    lat_ref = []
    for x in X:
        gate = _pre(x, W_ENC, B_ENC, B_DEC)
        mag = _pre(x, w_mag, b_mag, B_DEC)
        f = [max(m, 0.0) if g > 0 else 0.0 for g, m in zip(gate, mag)]
        lat_ref.append(f)
        g_relu = [max(g, 0.0) for g in gate]
        recon += _sq(_dec(f, W_DEC, B_DEC), x) / len(X)
        aux += _sq(_dec(g_relu, W_DEC, B_DEC), x) / len(X)
        l1 += sum(a * n for a, n in zip(g_relu, norms)) / len(X)
    xt = torch.tensor(X, dtype=torch.float64)
    out = sae(xt)
    torch.testing.assert_close(out.latents, torch.tensor(lat_ref, dtype=torch.float64))
    torch.testing.assert_close(sae.encode(xt), out.latents)
    assert out.losses.recon.item() == pytest.approx(recon)
    assert out.losses.aux.item() == pytest.approx(aux)
    assert out.losses.sparsity.item() == pytest.approx(0.4 * l1)
    assert out.losses.total.item() == pytest.approx(recon + 0.4 * l1 + aux)
    # the aux loss trains the gate but not the (frozen) decoder
    sae.zero_grad()
    out.losses.aux.backward()
    assert sae.W_dec.grad is None or (sae.W_dec.grad == 0).all()
    assert sae.b_dec.grad is not None and sae.W_enc.grad.abs().sum() > 0


def test_topk_losses_and_aux_by_hand():
    sae = make_sae(
        "topk", d_in=2, d_sae=3, k=1, dtype="float64", aux_k=1, aux_k_coefficient=0.5, normalize_decoder=False
    )
    _set(sae, W_enc=W_ENC, W_dec=W_DEC, b_enc=B_ENC, b_dec=B_DEC)
    dead = torch.tensor([False, True, True])
    recon = aux = 0.0
    for x in X:
        pre = _pre(x, W_ENC, B_ENC, B_DEC)
        j = max(range(3), key=lambda i: pre[i])
        f = [0.0] * 3
        f[j] = max(pre[j], 0.0)
        xh = _dec(f, W_DEC, B_DEC)
        recon += _sq(xh, x) / len(X)
        resid = [a - b for a, b in zip(x, xh)]
        jd = max((1, 2), key=lambda i: pre[i])  # best dead latent
        e_hat = [max(pre[jd], 0.0) * W_DEC[jd][i] for i in range(2)]
        aux += _sq(e_hat, resid) / len(X)
    out = sae.train()(torch.tensor(X, dtype=torch.float64), dead_mask=dead)
    assert out.losses.recon.item() == pytest.approx(recon)
    assert out.losses.aux.item() == pytest.approx(0.5 * aux)
    assert out.losses.sparsity.item() == 0.0
    assert out.losses.total.item() == pytest.approx(recon + 0.5 * aux)
    # no dead latents -> no aux loss; eval mode -> no aux loss
    assert (
        sae(torch.tensor(X, dtype=torch.float64), dead_mask=torch.zeros(3, dtype=torch.bool)).losses.aux == 0
    )
    assert sae.eval()(torch.tensor(X, dtype=torch.float64), dead_mask=dead).losses.aux == 0


def test_losses_are_in_normalised_space_and_recon_in_raw_units(arch):
    sae = make_sae(arch)
    with torch.no_grad():
        sae.b_dec.normal_()  # biases break positive homogeneity, so the scale visibly matters
        sae.b_enc.normal_(std=0.1)
    x = torch.randn(6, 8) * 50
    ref = sae(x)
    with torch.no_grad():
        sae.input_scale.fill_(0.02)
    out = sae(x)
    # recon loss is measured on x * scale: equal to the loss of the scaled input with scale 1
    with torch.no_grad():
        sae.input_scale.fill_(1.0)
    scaled = sae(x * 0.02)
    torch.testing.assert_close(out.losses.recon, scaled.losses.recon)
    torch.testing.assert_close(out.recon, scaled.recon / 0.02)
    assert not torch.allclose(out.recon, ref.recon)
