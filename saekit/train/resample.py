"""Resampling dead latents of ReLU SAEs (Anthropic, "Towards Monosemanticity", 2023).

Dead latents are re-initialised towards inputs the SAE reconstructs badly: sample rows with probability
proportional to their squared reconstruction loss, point the dead decoder row at the (centred, unit)
input, set the encoder column to that direction scaled to 0.2x the mean live encoder norm, zero the
encoder bias, and reset the Adam moments of every touched entry so stale momentum does not undo it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saekit.device import HOST


@torch.no_grad()
def resample_dead_(
    sae,
    optimizer: torch.optim.Optimizer,
    dead_F: Tensor,
    x_BD: Tensor,
    generator: torch.Generator,
    encoder_scale: float = 0.2,
) -> int:
    """Resample the latents in `dead_F` using rows of the raw batch `x_BD`; returns how many."""
    dead_idx = dead_F.nonzero().flatten()
    n = dead_idx.numel()
    if n == 0:
        return 0
    x_n = sae.normalize_input(x_BD)
    recon_n = sae.decode_normalized(sae.encode_normalized(x_n))
    loss_B = (recon_n - x_n).pow(2).sum(-1).double()
    probs = loss_B.pow(2)
    if float(probs.sum()) <= 0:
        probs = torch.ones_like(probs)
    # drawn on the host: the checkpointed resampling generator is a host generator, so a run draws the
    # same rows on any device and resumes identically
    rows = torch.multinomial(probs.to(HOST), n, replacement=n > x_BD.shape[0], generator=generator)
    rows = rows.to(x_BD.device)
    dirs_ND = x_n[rows] - sae.b_dec
    dirs_ND = dirs_ND / dirs_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    alive = ~dead_F
    enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else sae.W_enc.new_tensor(1.0)
    sae.W_dec[dead_idx] = dirs_ND.to(sae.dtype)
    sae.W_enc[:, dead_idx] = (dirs_ND.T * encoder_scale * enc_norm).to(sae.dtype)
    sae.b_enc[dead_idx] = 0
    _reset_adam_(optimizer, sae.W_dec, (dead_idx,))
    _reset_adam_(optimizer, sae.W_enc, (slice(None), dead_idx))
    _reset_adam_(optimizer, sae.b_enc, (dead_idx,))
    return n


def _reset_adam_(optimizer: torch.optim.Optimizer, param: Tensor, index) -> None:
    state = optimizer.state.get(param)
    if not state:
        return
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][index] = 0
