"""Reconstruction metrics of an SAE over many activation batches, accumulated exactly.

FVU is centred: `sum ||x - x_hat||^2 / sum ||x - mean(x)||^2` with the mean over *all* rows, computed
from per-dimension running sums in float64 so batching does not change the answer. For a transcoder the
batches are `(x, y)` pairs (a module's input and output rows) and every figure is of its prediction of `y`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.errors import ShapeError


class ActivationMetrics(NamedTuple):
    """Reconstruction quality on a set of rows."""

    fvu: float
    """Centred fraction of variance unexplained."""
    mse: float
    """Mean squared error per element (raw units)."""
    l0: float
    """Mean number of active latents per row."""
    dead_pct: float
    """Percent of latents that did not fire on these rows. Not "dead": on a few thousand rows a latent
    firing on 0.01% of tokens is often silent, so say "not fired in these N rows" when showing it."""
    shrinkage: float
    """Mean over rows of `||x_hat|| / ||x||` (< 1: reconstructions shrink)."""
    n_rows: int
    density: Tensor
    """Fraction of rows on which each latent fired, `[d_sae]` (for the density histogram)."""

    def to_dict(self) -> dict:
        d = self._asdict()
        d.pop("density")
        return d


def check_width(sae, d: int, where: str) -> None:
    """ShapeError when activations of width `d` cannot feed this SAE."""
    if d != sae.d_in:
        raise ShapeError(
            f"{where} has activations of width d={d} but the SAE expects d_in={sae.d_in} "
            f"(SAE trained on model={sae.cfg.provenance.model!r}, hook={sae.cfg.provenance.hook_point!r}); "
            "evaluate it on activations from the same model and hook point"
        )


@torch.no_grad()
def activation_metrics(sae, batches: Iterable[Tensor | tuple[Tensor, Tensor]]) -> ActivationMetrics:
    """Accumulate FVU / MSE / L0 / dead % / shrinkage over `[B, d_in]` batches of raw activations (a
    transcoder: `(x [B, d_in], y [B, d_out])` pairs; the figures compare its prediction with `y`)."""
    n = 0
    sum_x = sum_x2 = None
    err = 0.0
    l0_sum = 0.0
    shrink_sum = 0.0
    dev = next(sae.parameters()).device
    fired_count = torch.zeros(sae.d_sae, dtype=torch.float64, device=dev)
    for item in batches:
        x, y = item if isinstance(item, tuple) else (item, None)
        check_width(sae, x.shape[-1], "the evaluation data")
        x = x.reshape(-1, sae.d_in).float().to(dev)
        lat = sae.encode(x)
        recon = sae.decode(lat, x).float()  # x: per-row layer-norm / skip SAEs need the input rows
        if sae.cfg.transcode and y is None:
            raise ShapeError("a transcoder is evaluated on (input, output) pairs: pass (x, y) batches")
        xd = (x if y is None else y.reshape(-1, sae.d_out).float().to(dev)).double()
        sum_x = xd.sum(0) if sum_x is None else sum_x + xd.sum(0)
        sum_x2 = xd.pow(2).sum(0) if sum_x2 is None else sum_x2 + xd.pow(2).sum(0)
        err += float((xd - recon.double()).pow(2).sum())
        nz = lat != 0
        l0_sum += float(nz.sum())
        fired_count += nz.sum(0).double()
        shrink_sum += float((recon.double().norm(dim=-1) / xd.norm(dim=-1).clamp_min(1e-30)).sum())
        n += x.shape[0]
    if n == 0:
        raise ShapeError("no activation rows to evaluate on")
    var = float((sum_x2 - sum_x.pow(2) / n).sum())
    return ActivationMetrics(
        fvu=err / max(var, 1e-30),
        mse=err / (n * sae.d_out),
        l0=l0_sum / n,
        dead_pct=100.0 * float((fired_count == 0).double().mean()),
        shrinkage=shrink_sum / n,
        n_rows=n,
        density=(fired_count / n).float().cpu(),
    )


def inlier_metrics(
    sae, rows_ND: Tensor, max_norm_ratio: float, targets_ND: Tensor | None = None
) -> tuple[ActivationMetrics, int]:
    """The metrics without rows whose norm exceeds `max_norm_ratio` x the median (attention sinks), and
    how many were left out.

    Such a row (SmolLM2 layer 15: norm ~24,000 against a median of ~170) is the same rule `saekit harvest`
    drops from training stores. Kept in, one row carried 57-66% of the eval's squared error and set its FVU,
    so the report gives both numbers.
    """
    from saekit.models.activations import norm_outliers

    keep = torch.ones(1, rows_ND.shape[0], dtype=torch.bool)
    out = norm_outliers(rows_ND[None], keep, max_norm_ratio)[0]
    if targets_ND is None:
        return activation_metrics(sae, rows_ND[~out].split(1024)), int(out.sum())
    out |= norm_outliers(targets_ND[None], keep, max_norm_ratio)[0]  # as a paired harvest drops them
    pairs = zip(rows_ND[~out].split(1024), targets_ND[~out].split(1024), strict=True)
    return activation_metrics(sae, pairs), int(out.sum())
