"""A minimal TopK SAE training loop for the testbed's in-memory activations.

Kept local and tiny on purpose: the testbed trains six SAEs on a few tens of thousands of rows, and
`saekit.train` (store-driven, checkpointed) was not available when this was written. It uses the
shared `saekit.sae` TopK model, its losses and its decoder constraints, so the SAEs are the same kind
users train with the full trainer.
"""
from __future__ import annotations

import torch
from torch import Tensor

from saekit.sae import SAEConfig, build
from saekit.sae.base import SAE
from saekit.sae.config import Provenance


def fit_topk_sae_minimal(acts_ND: Tensor, *, d_sae: int, k: int, steps: int, batch: int, seed: int,
                         lr: float = 3e-3, hook_point: str = "", stream: str = "") -> tuple[SAE, float]:
    """Train a TopK SAE on rows `[n, d]`; returns the SAE and its FVU on all rows."""
    g = torch.Generator().manual_seed(seed)
    cfg = SAEConfig(d_in=acts_ND.shape[1], d_sae=d_sae, arch="topk", k=k,
                    provenance=Provenance(model="saekit-testbed", hook_point=f"{hook_point}@{stream}",
                                          stream=stream, tokens_trained=steps * batch))
    sae = build(cfg, seed=seed)
    with torch.no_grad():
        sae.b_dec.copy_(acts_ND.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    last_fired = torch.zeros(d_sae, dtype=torch.long)
    sae.train()
    for step in range(steps):
        x = acts_ND[torch.randint(0, len(acts_ND), (batch,), generator=g)]
        dead = (step - last_fired) > 200
        out = sae(x, dead_mask=dead)
        opt.zero_grad(set_to_none=True)
        out.losses.total.backward()
        sae.remove_gradient_parallel_to_decoder_()
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, 2.0 * (1 - step / steps) + 0.05)
        opt.step()
        sae.set_decoder_norm_to_unit_()
        last_fired[out.fired] = step
    sae.eval()
    return sae, fvu(sae, acts_ND)


@torch.no_grad()
def fvu(sae: SAE, acts_ND: Tensor) -> float:
    """Fraction of variance unexplained."""
    recon = sae.reconstruct(acts_ND)
    return float((recon - acts_ND).pow(2).sum() / (acts_ND - acts_ND.mean(0)).pow(2).sum())
