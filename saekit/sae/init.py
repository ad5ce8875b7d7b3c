"""Initialisation options and data-dependent initialisation.

- tied: `W_enc = W_dec.T` at init (two independent tensors afterwards)
- orthonormal: decoder rows drawn as orthonormal blocks — with d_sae <= d_in the rows are orthonormal
  and encode is a change of basis; with d_sae > d_in each block of d_in rows is an orthonormal basis
- b_dec from the geometric median (or mean) of a data sample
- input scale so the mean row norm is sqrt(d_in) (saved with the weights)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from saekit.errors import ShapeError


def random_unit_rows(
    n: int, d: int, *, dtype=torch.float32, generator: torch.Generator | None = None
) -> Tensor:
    w = torch.randn(n, d, generator=generator, dtype=torch.float32)
    if dtype == torch.float64:
        w = w.double()  # normalise in float64 so a float64 SAE's rows are unit to its own precision
    return (w / w.norm(dim=-1, keepdim=True)).to(dtype)


def orthonormal_blocks(
    n: int, d: int, *, dtype=torch.float32, generator: torch.Generator | None = None
) -> Tensor:
    """`[n, d]` rows; every consecutive block of `d` rows (the last may be shorter) is orthonormal."""
    blocks = []
    remaining = n
    while remaining > 0:
        m = min(d, remaining)
        q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))[None, :]  # unique, uniformly distributed basis
        blocks.append(q.T[:m])
        remaining -= m
    return torch.cat(blocks).to(dtype)


@torch.no_grad()
def reset_parameters_(sae, generator: torch.Generator | None = None) -> None:
    """Initialise W_dec, W_enc, biases of `sae` according to its config."""
    cfg = sae.cfg
    if sae.W_dec.is_meta:
        return  # shape-only module (used by the loader to check tensor shapes): nothing to fill
    # float64 SAEs are initialised in float64; the rest in float32 (a float64 copy of a big decoder
    # would double the init's peak memory for nothing).
    work = torch.float64 if sae.dtype == torch.float64 else torch.float32
    d_out = cfg.output_width
    if cfg.init_orthonormal:
        w_dec = orthonormal_blocks(cfg.d_sae, d_out, dtype=work, generator=generator)
    else:
        w_dec = random_unit_rows(cfg.d_sae, d_out, dtype=work, generator=generator)
    if not cfg.normalize_decoder:
        w_dec = w_dec * cfg.init_decoder_norm
    sae.W_dec.copy_(w_dec.to(sae.dtype))
    if cfg.init_tied and d_out == cfg.d_in:
        sae.W_enc.copy_(sae.W_dec.T * cfg.init_encoder_scale)
    elif cfg.init_tied:  # a transcoder into another width: random unit columns at the same scale
        w_enc = random_unit_rows(cfg.d_sae, cfg.d_in, dtype=work, generator=generator)
        sae.W_enc.copy_((w_enc.T * cfg.init_encoder_scale).to(sae.dtype))
    else:
        bound = 1.0 / math.sqrt(cfg.d_in)
        sae.W_enc.copy_(
            torch.empty(cfg.d_in, cfg.d_sae).uniform_(-bound, bound, generator=generator).to(sae.dtype)
        )
    sae.b_enc.zero_()
    sae.b_dec.zero_()
    post = getattr(sae, "_post_reset_", None)
    if post is not None:
        post()


def geometric_median(points: Tensor, max_iter: int = 100, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to `points [n, d]`."""
    x = points.double()
    median = x.mean(0)
    for _ in range(max_iter):
        dist = (x - median).norm(dim=-1).clamp_min(1e-12)
        w = 1.0 / dist
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - median).norm() <= tol * max(1.0, median.norm().item()):
            median = new
            break
        median = new
    return median.to(points.dtype)


def _check_sample(sae, sample: Tensor) -> Tensor:
    if sample.ndim != 2 or sample.shape[1] != sae.d_in or sample.shape[0] == 0:
        raise ShapeError(f"init sample must be [n >= 1, d_in={sae.d_in}], got {tuple(sample.shape)}")
    from saekit.sae.base import check_finite

    check_finite(sample, "init sample activations")  # a NaN here would be saved as input_scale / b_dec
    return sample.float()


@torch.no_grad()
def fit_input_scale_(sae, sample: Tensor) -> float:
    """Set `input_scale` so normalised rows have mean norm sqrt(d_in); returns the factor."""
    sample = _check_sample(sae, sample)
    if sae.cfg.normalization != "expected_norm":  # none, or layer_norm (per row, no constant)
        scale = 1.0
    else:
        mean_norm = sample.norm(dim=-1).mean().item()
        scale = math.sqrt(sae.d_in) / max(mean_norm, 1e-12)
    sae.input_scale.fill_(scale)
    return scale


@torch.no_grad()
def fit_output_scale_(sae, target_sample: Tensor) -> float:
    """A transcoder's `output_scale`, fitted to its targets as `input_scale` is to its inputs (expected_norm:
    normalised target rows have mean norm sqrt(d_out)); returns the factor."""
    if target_sample.ndim != 2 or target_sample.shape[1] != sae.d_out or target_sample.shape[0] == 0:
        shape = tuple(target_sample.shape)
        raise ShapeError(f"target sample must be [n >= 1, d_out={sae.d_out}], got {shape}")
    from saekit.sae.base import check_finite

    check_finite(target_sample, "init sample targets")
    scale = 1.0
    if sae.cfg.normalization == "expected_norm":
        mean_norm = target_sample.float().norm(dim=-1).mean().item()
        scale = math.sqrt(sae.d_out) / max(mean_norm, 1e-12)
    sae.output_scale.fill_(scale)
    return scale


@torch.no_grad()
def init_b_dec_(
    sae, sample: Tensor, method: str = "geometric_median", target: Tensor | None = None
) -> Tensor:
    """Set b_dec to the geometric median or mean of the (normalised) sample; for a transcoder, of its
    normalised `target` rows (b_dec is in the output's space)."""
    if sae.cfg.transcode:
        if target is None or target.ndim != 2 or target.shape[1] != sae.d_out:
            raise ShapeError(f"a transcoder's b_dec is fitted to target rows [n, d_out={sae.d_out}]")
        sample = target.float() * sae.output_scale.float()
    else:
        sample = _check_sample(sae, sample) * sae.input_scale.float()
    if method == "geometric_median":
        center = geometric_median(sample)
    elif method == "mean":
        center = sample.mean(0)
    elif method == "zeros":
        center = torch.zeros(sample.shape[1])
    else:
        raise ValueError(f"b_dec init method {method!r}: choose geometric_median, mean or zeros")
    sae.b_dec.copy_(center.to(sae.dtype))
    return sae.b_dec.detach().clone()
