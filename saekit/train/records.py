"""What a run reports: the per-log-step record, the final metrics, provenance and the rank-0 logger.

Kept apart from the loop so the loop reads as the algorithm; every value here is computed from tensors
the step already has (gathered over ranks, so a data-parallel log equals a single-process one).
"""

from __future__ import annotations

import re
import time
from typing import Any

import torch
from torch import Tensor

from saekit.sae.config import Provenance
from saekit.train import distributed as dd
from saekit.train.metrics import reconstruction_metrics


def provenance(manifest: dict[str, Any], tokens: int, *, transcoder: bool = False) -> Provenance:
    """The SAE's provenance from the store manifest (the layer parsed from the hook point if needed); a
    transcoder also records the hook point it predicts (a paired store's `target_hook_point`)."""
    hp = manifest.get("hook_point")
    layer = manifest.get("layer")
    if layer is None and isinstance(hp, str):
        m = re.search(r"layers?\.(\d+)", hp)
        layer = int(m.group(1)) if m else None
    return Provenance(
        model=manifest.get("model"),
        hook_point=hp,
        stream=manifest.get("stream"),
        layer=layer,
        tokens_trained=int(tokens),
        model_dtype=manifest.get("model_dtype"),
        target_hook_point=manifest.get("target_hook_point") if transcoder else None,
    )


class NullLogger:
    """The logger of ranks other than 0: they compute the record (collectives) but write nothing."""

    def log(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def step_record(out, x_BD: Tensor, *, step: int, batch_size: int, lr: float, scale: float, dead_pct: float,
                t0: float, done_here: int, ctx: dd.DistContext) -> dict[str, Any]:  # fmt: skip
    """Metrics of the global batch at a log step (every rank must call it: it gathers over ranks)."""
    ls = out.losses
    stats = torch.stack(
        [out.l0.float()] + [t.detach().float() for t in (ls.total, ls.recon, ls.sparsity, ls.aux)]
    )
    l0, total, recon_l, sparsity_l, aux_l = dd.mean_over_ranks(stats, ctx).tolist()
    elapsed = time.perf_counter() - t0
    rec: dict[str, Any] = {"step": step, "tokens": step * batch_size, "lr": lr, "sparsity_scale": scale}
    rec["elapsed_s"] = elapsed
    rec.update(reconstruction_metrics(dd.gather_rows(x_BD, ctx), dd.gather_rows(out.recon.detach(), ctx)))
    rec.update({"l0": l0, "dead_pct": dead_pct, "loss": total, "recon_loss": recon_l, "aux_loss": aux_l})
    rec.update({"sparsity_loss": sparsity_l, "tokens_per_s": done_here * batch_size / max(elapsed, 1e-9)})
    return rec


@torch.no_grad()
def final_metrics(
    sae, sample_ND: Tensor, batch_size: int, target_ND: Tensor | None = None
) -> dict[str, float]:
    """FVU, MSE, shrinkage and inference L0 of a trained SAE on a sample (in batch-sized chunks); for a
    transcoder, of its predictions against the sample's targets `target_ND`."""
    chunks = sample_ND.split(batch_size)
    if target_ND is None:
        recon = torch.cat([sae(chunk).recon for chunk in chunks])
    else:
        pairs = zip(chunks, target_ND.split(batch_size), strict=True)
        recon = torch.cat([sae(chunk, target=t).recon for chunk, t in pairs])
    lat_l0 = torch.cat([(sae.encode(c) != 0).sum(-1).float() for c in chunks])
    metrics = reconstruction_metrics(sample_ND if target_ND is None else target_ND, recon)
    metrics["l0"] = float(lat_l0.mean())
    return metrics
