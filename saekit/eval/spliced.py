"""Downstream loss with the SAE spliced into the model at its hook point.

For every evaluated position t (a real, non-special token at context position >= `exclude_first`
whose next token is real) we compare next-token predictions of four runs that differ only at the hook:
original, SAE-spliced (`x -> x_hat`), zero-ablated (`x -> 0`) and mean-ablated (`x -> mean x` over the
evaluated positions). The splice replaces only evaluated positions, so attention sinks (position 0 /
BOS, huge norms the SAE never trained on) stay intact. CE loss recovered = (H_abl - H_sae) /
(H_abl - H_orig) against each ablation; KL is KL(p_orig || p_sae) in nats.

Speed: the prefix up to the hook is computed once per context; when the hook is a layer of a decoder
stack, the four variants are batched through the layers after it only (saekit/eval/suffix.py), and the
first batch is checked against a full forward so a model that does not fit that picture falls back to
full passes instead of giving wrong numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from saekit.errors import SaekitError
from saekit.eval.suffix import layer_slot, replay_prefix, returns_tuple
from saekit.hooks import HookPoint, capture, intervene

VARIANTS = ("orig", "sae", "zero", "mean")


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
    ce_mean: float = float("nan")
    """... with the hooked activation replaced by its mean over the evaluated positions."""
    ce_recovered_mean: float = float("nan")
    """(ce_mean - ce_sae) / (ce_mean - ce_orig): recovery against mean ablation (a stronger baseline)."""
    shared_prefix: bool = False
    """Whether the fast path (prefix once, variants through the suffix only) was used."""


def eval_positions(token_id: Tensor, mask: Tensor, special_ids: set[int], exclude_first: int = 1) -> Tensor:
    """`[N, T]` bool: positions whose activation is spliced and whose next-token prediction is scored."""
    keep = mask.clone()
    keep[:, :exclude_first] = False
    nxt = torch.zeros_like(mask)
    nxt[:, :-1] = mask[:, 1:]
    if special_ids:
        special = torch.isin(token_id, torch.tensor(sorted(special_ids), dtype=token_id.dtype))
        keep &= ~special
        nxt[:, :-1] &= ~special[:, 1:]
    return keep & nxt


def _logits(model, ids: Tensor, attn: Tensor) -> Tensor:
    out = model(input_ids=ids, attention_mask=attn.long())
    return (out.logits if hasattr(out, "logits") else out[0]).float()


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _prefix(model, hp: HookPoint, ids: Tensor, attn: Tensor, slot) -> tuple[Tensor, bool]:
    """The hook-point activation `[b, T, d]` (forward stopped there) and whether the slot returns a tuple."""
    seen, handle = returns_tuple(*slot) if slot else ({}, None)
    try:
        with capture(model, hp, stop_after_last=True) as cap:
            model(input_ids=ids, attention_mask=attn.long())
    finally:
        if handle is not None:
            handle.remove()
    return cap.activations[str(hp)], seen.get("tuple", False)


def _variants(x: Tensor, pos: Tensor, reconstruct, mean: Tensor) -> Tensor:
    """`[4b, T, d]`: x spliced with itself, the SAE, zeros and the mean at `pos` (in VARIANTS order)."""
    out = x.unsqueeze(0).repeat(len(VARIANTS), 1, 1, 1)
    sel = pos.to(x.device)
    out[1][sel] = reconstruct(x[sel]).to(x.dtype)
    out[2][sel] = 0
    out[3][sel] = mean.to(x.dtype)
    return out.flatten(0, 1)


def _full_pass(model, hp, ids4, attn4, stacked: Tensor) -> Tensor:
    with intervene(model, hp, lambda x: stacked.to(x.dtype)):
        return _logits(model, ids4, attn4)


def _suffix_pass(model, slot, tuple_out, ids4, attn4, stacked: Tensor) -> Tensor:
    stack, index = slot
    with replay_prefix(stack, index, stacked, tuple_out) as calls:
        logits = _logits(model, ids4, attn4)
    if calls != list(range(index + 1)):
        raise SaekitError(f"suffix replay: the layer stack was walked as {calls}, not 0..{index} in order")
    return logits


class _Sums:
    def __init__(self) -> None:
        self.ce = dict.fromkeys(VARIANTS, 0.0)
        self.kl = 0.0
        self.count = 0

    def add(self, logits: Tensor, ids: Tensor, pos: Tensor) -> None:
        sel = pos[:, :-1]
        targets = ids[:, 1:][sel]
        lp = {}
        for name, lo in zip(VARIANTS, logits.chunk(len(VARIANTS)), strict=True):
            lp[name] = F.log_softmax(lo[:, :-1][sel], dim=-1)
            self.ce[name] += float(-lp[name].gather(-1, targets[:, None]).sum())
        self.kl += float((lp["orig"].exp() * (lp["orig"] - lp["sae"])).sum())
        self.count += int(targets.numel())

    def metrics(self, shared: bool) -> SplicedMetrics:
        if self.count == 0:
            raise SaekitError("no evaluable positions: give more tokens or longer contexts")
        ce = {k: v / self.count for k, v in self.ce.items()}
        return SplicedMetrics(
            ce["orig"],
            ce["sae"],
            ce["zero"],
            _recovered(ce["zero"], ce["sae"], ce["orig"]),
            self.kl / self.count,
            self.count,
            ce["mean"],
            _recovered(ce["mean"], ce["sae"], ce["orig"]),
            shared,
        )


def _recovered(ablated: float, spliced: float, orig: float) -> float:
    denom = ablated - orig
    return (ablated - spliced) / denom if abs(denom) > 1e-12 else float("nan")


@torch.no_grad()
def spliced_metrics(
    model,
    hook_point,
    reconstruct: Callable[[Tensor], Tensor],
    token_id: Tensor,
    mask: Tensor,
    positions: Tensor,
    *,
    batch_size: int = 4,
    on_activations: Callable[[Tensor], None] | None = None,
    progress=None,
    share_prefix: bool = True,
) -> SplicedMetrics:
    """CE (orig / spliced / zero / mean) and KL over `positions` of `token_id [N, T]`.

    `reconstruct(x [n, d]) -> x_hat [n, d]` maps raw activations (model dtype in, model dtype out).
    `on_activations` receives the original activations at the evaluated positions (for FVU etc.).
    `share_prefix=False` forces full forward passes (the reference the fast path is checked against).
    """
    hp = HookPoint.parse(hook_point)
    dev = _device(model)
    slot = layer_slot(model, hp) if share_prefix else None
    batches = [
        (
            token_id[lo : lo + batch_size].to(dev),
            mask[lo : lo + batch_size].to(dev),
            positions[lo : lo + batch_size],
        )
        for lo in range(0, token_id.shape[0], batch_size)
        if positions[lo : lo + batch_size].any()
    ]
    # phase 1: every context's activation at the hook (prefix only), and their mean for mean ablation
    prefixes, tuple_out = [], False
    total, n = None, 0
    for ids, attn, pos in batches:
        x, tuple_out = _prefix(model, hp, ids, attn, slot)
        xs = x[pos.to(x.device)]
        if on_activations is not None:
            on_activations(xs)
        total = xs.double().sum(0) if total is None else total + xs.double().sum(0)
        n += xs.shape[0]
        prefixes.append(x)
    if n == 0:
        raise SaekitError("no evaluable positions: give more tokens or longer contexts")
    mean = (total / n).float()
    # phase 2: the four variants, batched, through the suffix (or full passes)
    sums = _Sums()
    for i, ((ids, attn, pos), x) in enumerate(zip(batches, prefixes, strict=True)):
        stacked = _variants(x, pos, reconstruct, mean)
        ids4, attn4 = ids.repeat(len(VARIANTS), 1), attn.repeat(len(VARIANTS), 1)
        logits = _suffix_pass(model, slot, tuple_out, ids4, attn4, stacked) if slot else None
        if slot and i == 0 and not _matches_full(model, hp, ids4, attn4, stacked, logits):
            slot = None
        if logits is None or slot is None:
            logits = _full_pass(model, hp, ids4, attn4, stacked)
        sums.add(logits, ids, pos.to(dev))
        if progress is not None:
            progress.update(int(pos[:, :-1].sum()))
    return sums.metrics(shared=slot is not None)


def _matches_full(model, hp, ids4, attn4, stacked, logits) -> bool:
    """One-time guard: the suffix replay must give the full forward's logits (else fall back)."""
    b = ids4.shape[0] // len(VARIANTS)
    rows = [0, b]  # the first context, original and SAE-spliced: cheap, and covers the replayed edit
    ref = _full_pass(model, hp, ids4[rows], attn4[rows], stacked[rows])
    ok = torch.allclose(logits[rows], ref, rtol=1e-4, atol=1e-3 * float(ref.abs().max().clamp_min(1)))
    if not ok:
        warnings.warn(
            f"eval: replaying the model after {hp} did not reproduce a full forward; using full passes",
            stacklevel=3,
        )
    return ok
