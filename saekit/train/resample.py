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
    row_loss_B: Tensor | None = None,
    target_BD: Tensor | None = None,
) -> int:
    """Resample the latents in `dead_F` using rows of the raw batch `x_BD`; returns how many.

    `row_loss_B`: each row's squared reconstruction error, when the caller has it (the trainer passes the
    step's own, which saves a second encode + decode of the batch: at batch 4096 TopK resamples every
    step early on, and that forward cost more than the step itself); else it is computed here.

    A transcoder (`target_BD`: the raw target rows of the batch) reads its inputs and writes its outputs,
    so a resampled latent's encoder column points at the chosen row's normalised input and its decoder row
    at that row's normalised target less b_dec (for an SAE both are the centred input)."""
    dead_idx = dead_F.nonzero().flatten()
    n = dead_idx.numel()
    if n == 0:
        return 0
    x_n = sae.normalize_input(x_BD)
    transcoder = target_BD is not None
    y_n = target_BD.to(sae.dtype) * sae.output_scale.to(sae.dtype) if transcoder else x_n
    if row_loss_B is None:
        recon_n = sae.decode_normalized(sae.encode_normalized(x_n))
        skip = sae.skip_term(x_n)
        row_loss_B = (recon_n + (0 if skip is None else skip) - y_n).pow(2).sum(-1)
    probs = row_loss_B.double().pow(2)
    if float(probs.sum()) <= 0:
        probs = torch.ones_like(probs)
    # drawn on the host: the checkpointed resampling generator is a host generator, so a run draws the
    # same rows on any device and resumes identically
    rows = torch.multinomial(probs.to(HOST), n, replacement=n > x_BD.shape[0], generator=generator)
    rows = rows.to(x_BD.device)
    dirs_ND = _unit(y_n[rows] - sae.b_dec)  # decoder rows (output space)
    enc_dirs_ND = _unit(x_n[rows]) if transcoder else dirs_ND  # encoder columns (input space)
    alive = ~dead_F
    # column norms first, then the live ones: no copy of the live part of W_enc
    enc_norm = sae.W_enc.norm(dim=0)[alive].mean() if alive.any() else sae.W_enc.new_tensor(1.0)
    sae.W_dec[dead_idx] = dirs_ND.to(sae.dtype)
    sae.W_enc[:, dead_idx] = (enc_dirs_ND.T * encoder_scale * enc_norm).to(sae.dtype)
    sae.b_enc[dead_idx] = 0
    _reset_adam_(optimizer, sae.W_dec, (dead_idx,))
    _reset_adam_(optimizer, sae.W_enc, (slice(None), dead_idx))
    _reset_adam_(optimizer, sae.b_enc, (dead_idx,))
    return n


def _unit(rows_ND: Tensor) -> Tensor:
    return rows_ND / rows_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _reset_adam_(optimizer: torch.optim.Optimizer, param: Tensor, index) -> None:
    state = optimizer.state.get(param)
    if not state:
        return
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][index] = 0
