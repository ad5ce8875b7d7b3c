"""Train the testbed's TopK SAEs with `saekit.train` on in-memory activations.

The testbed's activations live in memory (a few tens of thousands of rows per hook point), so they go
through `TensorSource` instead of an on-disk store; everything else (input normalisation, b_dec init,
aux-k dead-latent revival, decoder constraints, LR schedule) is the project's trainer, so these SAEs
are the same kind users train.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor

from saekit.sae.base import SAE


def fit_topk_sae(
    acts_ND: Tensor,
    *,
    d_sae: int,
    k: int,
    steps: int,
    batch: int,
    seed: int,
    hook_point: str = "",
    stream: str = "",
    out: str | Path | None = None,
) -> tuple[SAE, float]:
    """Train a TopK SAE on rows `[n, d]` for `steps` batches; returns the SAE and its FVU on all rows.

    With `out` the SAE folder (config.json + model.safetensors + train log) is kept there.
    """
    from saekit.train.config import TrainConfig
    from saekit.train.source import TensorSource
    from saekit.train.trainer import train

    manifest = {"model": "saekit-testbed", "hook_point": f"{hook_point}@{stream}", "stream": stream}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out) if out is not None else Path(tmp)
        cfg = TrainConfig.flat(
            out=str(folder),
            arch="topk",
            k=k,
            d_sae=d_sae,
            batch_size=batch,
            total_tokens=steps * batch,
            seed=seed,
            quiet=True,
            log_every=max(1, steps // 10),
            checkpoint_every=10 * steps,
            init_sample=min(len(acts_ND), 8192),
        )
        result = train(cfg, source=TensorSource(acts_ND, manifest), out=folder)
    sae = result.sae.eval().to(acts_ND.device)  # trained on --device auto; measured where the rows are
    return sae, fvu(sae, acts_ND)


@torch.no_grad()
def fvu(sae: SAE, acts_ND: Tensor) -> float:
    """Fraction of variance unexplained."""
    recon = sae.reconstruct(acts_ND)
    return float((recon - acts_ND).pow(2).sum() / (acts_ND - acts_ND.mean(0)).pow(2).sum())
