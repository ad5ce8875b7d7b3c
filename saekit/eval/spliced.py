"""Downstream loss with the SAE spliced into the model at its hook point.

For every evaluated position t (a real, non-special token at context position >= `exclude_first`
whose next token is real) we compare next-token predictions of three runs:
original, SAE-spliced (`x -> x_hat` at the hook point) and zero-ablated (`x -> 0`). The splice replaces
only evaluated positions, so attention sinks (position 0 / BOS, huge norms the SAE never trained on)
stay intact. CE loss recovered = (H_zero - H_sae) / (H_zero - H_orig); KL is KL(p_orig || p_sae) in nats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class SplicedMetrics(NamedTuple):
    ce_orig: float
    """Mean next-token cross-entropy of the unmodified model (nats)."""
    ce_sae: float
    """... with the SAE reconstruction spliced in."""
    ce_zero: float
    """... with the hooked activation zero-ablated."""
    ce_recovered: float
    """(ce_zero - ce_sae) / (ce_zero - ce_orig): 1 = as good as the original, 0 = as bad as ablation."""
    kl: float
    """Mean KL(original || spliced) of the next-token distributions (nats)."""
    n_tokens: int


def eval_positions(token_id: Tensor, mask: Tensor, special_ids: set[int], exclude_first: int = 1) -> Tensor:
    """`[N, T]` bool: positions whose activation is spliced and whose next-token prediction is scored."""
    keep = mask.clone()
    keep[:, :exclude_first] = False
    if special_ids:
        keep &= ~torch.isin(token_id, torch.tensor(sorted(special_ids), dtype=token_id.dtype))
    nxt = torch.zeros_like(mask)
    nxt[:, :-1] = mask[:, 1:]
    if special_ids:
        nxt[:, :-1] &= ~torch.isin(token_id[:, 1:], torch.tensor(sorted(special_ids), dtype=token_id.dtype))
    return keep & nxt


def _logits(model, ids: Tensor, attn: Tensor) -> Tensor:
    out = model(input_ids=ids, attention_mask=attn.long())
    return (out.logits if hasattr(out, "logits") else out[0]).float()


@torch.no_grad()
def spliced_metrics(
    model,
    hook_point,
    reconstruct: Callable[[Tensor], Tensor],
    token_id: Tensor,
    mask: Tensor,
    positions: Tensor,
    *,
    batch_size: int = 8,
    on_activations: Callable[[Tensor], None] | None = None,
    progress=None,
) -> SplicedMetrics:
    """CE (orig / spliced / zero) and KL over `positions` of `token_id [N, T]`.

    `reconstruct(x [n, d]) -> x_hat [n, d]` maps raw activations (model dtype in, model dtype out).
    `on_activations` receives the original activations at the evaluated positions (for FVU etc.).
    """
    from saekit.hooks import intervene

    sums = {"orig": 0.0, "sae": 0.0, "zero": 0.0, "kl": 0.0}
    count = 0
    for lo in range(0, token_id.shape[0], batch_size):
        ids, attn, pos = (
            token_id[lo : lo + batch_size],
            mask[lo : lo + batch_size],
            positions[lo : lo + batch_size],
        )
        if not pos.any():
            continue
        targets = ids[:, 1:][pos[:, :-1]]

        def splice(x: Tensor, fn) -> Tensor:
            new = x.clone()
            sel = pos.to(x.device)
            new[sel] = fn(x[sel])
            return new

        def capture(x: Tensor) -> Tensor:
            if on_activations is not None:
                on_activations(x[pos.to(x.device)])
            return x

        with intervene(model, hook_point, capture):
            lo_orig = _logits(model, ids, attn)
        with intervene(model, hook_point, lambda x: splice(x, reconstruct)):
            lo_sae = _logits(model, ids, attn)
        with intervene(model, hook_point, lambda x: splice(x, torch.zeros_like)):
            lo_zero = _logits(model, ids, attn)
        sel = pos[:, :-1]
        lp = {
            k: F.log_softmax(v[:, :-1][sel], dim=-1)
            for k, v in (("orig", lo_orig), ("sae", lo_sae), ("zero", lo_zero))
        }
        for k in ("orig", "sae", "zero"):
            sums[k] += float(-lp[k].gather(-1, targets[:, None]).sum())
        sums["kl"] += float((lp["orig"].exp() * (lp["orig"] - lp["sae"])).sum())
        count += int(targets.numel())
        if progress is not None:
            progress.update(int(targets.numel()))
    if count == 0:
        raise ValueError("no evaluable positions: give more tokens or longer contexts")
    ce = {k: sums[k] / count for k in ("orig", "sae", "zero")}
    denom = ce["zero"] - ce["orig"]
    recovered = (ce["zero"] - ce["sae"]) / denom if abs(denom) > 1e-12 else float("nan")
    return SplicedMetrics(ce["orig"], ce["sae"], ce["zero"], recovered, sums["kl"] / count, count)
