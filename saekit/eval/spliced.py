"""Downstream loss with the SAE spliced into the model at its hook point.

For every evaluated position t (a real, non-special token at context position >= `exclude_first`
whose next token is real) we compare next-token predictions of four runs that differ only at the hook:
original, SAE-spliced (`x -> x_hat`), zero-ablated (`x -> 0`) and mean-ablated (`x -> mean x` over the
evaluated positions). The splice replaces only evaluated positions, so attention sinks (position 0 /
BOS, huge norms the SAE never trained on) stay intact. CE loss recovered = (H_abl - H_sae) /
(H_abl - H_orig) against each ablation; KL is KL(p_orig || p_sae) in nats.

A transcoder is spliced in place of the module it predicts (`source_hook`): the hooked activation (the
module's output) is replaced by the transcoder's prediction from the module's input, read at `source_hook`
in the same forward pass; the ablations zero / mean-ablate that output as for an SAE.

Speed: the prefix up to the hook is computed once per context; when the hook is a layer of a decoder
stack, the four variants are batched through the layers after it only (saekit/eval/suffix.py), and the
first batch is checked against a full forward so a model that does not fit that picture falls back to
full passes instead of giving wrong numbers.

The prefix activations and the zero / mean ablation CEs do not depend on the SAE: they are returned as a
`Baseline`, and a later eval of another SAE at the same hook on the same tokens that is given it runs only
the original and spliced variants through the suffix, and no prefix (saekit/eval/baseline_cache.py keeps
them on disk). The original variant still runs: the KL needs its full next-token distributions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from saekit.errors import SaekitError
from saekit.eval.suffix import layer_slot, replay_prefix, returns_tuple
from saekit.hooks import HookPoint, capture, intervene

VARIANTS = ("orig", "sae", "zero", "mean")
SAE_DEPENDENT = ("orig", "sae")
"""The variants a cached `Baseline` still has to run ("orig" for the KL, and as a check on the cache)."""


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
    baseline_reused: bool = False
    """Whether the SAE-independent part (prefix, ablation CEs) came from a `Baseline` given by the caller."""


class Baseline(NamedTuple):
    """The SAE-independent part of a spliced eval, valid for one model, hook, token set and batch size."""

    prefix: list[Tensor]
    """Hook-point activation `[b, T, d]` of every evaluated batch, in order (model dtype, on the model's
    device when computed; `save_baseline` copies to the host only when it writes)."""
    ce_orig_sum: float
    """Summed CE of the unmodified model: checked against the rerun original variant on reuse."""
    ce_zero_sum: float
    ce_mean_sum: float
    count: int


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
    """Logits in the model's dtype (the reductions upcast a few rows at a time, not the whole tensor)."""
    out = model(input_ids=ids, attention_mask=attn.long())
    return out.logits if hasattr(out, "logits") else out[0]


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _prefix(
    model, hp: HookPoint, ids: Tensor, attn: Tensor, slot, source: HookPoint | None = None
) -> tuple[Tensor, bool, Tensor | None]:
    """The hook-point activation `[b, T, d]` (forward stopped there), whether the slot returns a tuple, and
    the activation at `source` (a transcoder's input, same pass) when one is given."""
    seen, handle = returns_tuple(*slot) if slot else ({}, None)
    hooks = [hp] if source is None else [source, hp]
    try:
        with capture(model, hooks, stop_after_last=True) as cap:
            model(input_ids=ids, attention_mask=attn.long())
    finally:
        if handle is not None:
            handle.remove()
    src = None if source is None else cap.activations[str(source)]
    return cap.activations[str(hp)], seen.get("tuple", False), src


def _variants(
    x: Tensor, pos: Tensor, reconstruct, mean: Tensor, names: tuple[str, ...], src: Tensor | None = None
) -> Tensor:
    """`[len(names) * b, T, d]`: x spliced at `pos` with itself, the SAE, zeros or the mean, per name (the
    SAE variant maps `src`, a transcoder's input, when given, else `x` itself)."""
    out = x.unsqueeze(0).repeat(len(names), 1, 1, 1)
    sel = pos.to(x.device)
    feed = x if src is None else src
    for i, name in enumerate(names):
        if name == "sae":
            out[i][sel] = reconstruct(feed[sel]).to(x.dtype)
        elif name == "zero":
            out[i][sel] = 0
        elif name == "mean":
            out[i][sel] = mean.to(x.dtype)
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


_CHUNK_ELEMENTS = 1 << 19
"""Logit elements per variant reduced at a time: a few rows of the vocabulary, small enough to stay in
cache while their log-sum-exp, target logit and KL terms are taken (one pass over the logits instead of
materialising log-softmax copies of all of them, which cost as much as the LM head itself)."""


class _Sums:
    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.ce = dict.fromkeys(VARIANTS, 0.0)
        self.kl = 0.0
        self.count = 0

    def add(self, logits: Tensor, ids: Tensor, pos: Tensor) -> None:
        """Accumulate CE per variant and KL(orig || sae) over the scored positions of one batch.

        Per row: CE = logsumexp(z) - z[target]; KL = sum_v p_orig,v (z_orig,v - z_sae,v) - lse_orig + lse_sae,
        which is sum p_orig (log p_orig - log p_sae) rewritten so that no log-softmax is stored.
        """
        per = dict(zip(self.names, logits.chunk(len(self.names)), strict=True))
        b_idx, t_idx = pos[:, :-1].nonzero(as_tuple=True)
        targets = ids[b_idx, t_idx + 1]
        step = max(1, _CHUNK_ELEMENTS // logits.shape[-1])
        # sums stay on the device until the batch is done: one host sync per batch, not per chunk
        ce = {name: logits.new_zeros((), dtype=torch.float64) for name in per}
        kl = logits.new_zeros((), dtype=torch.float64)
        for lo in range(0, int(b_idx.numel()), step):
            bi, ti, tg = b_idx[lo : lo + step], t_idx[lo : lo + step], targets[lo : lo + step, None]
            rows, lse = {}, {}
            for name, z in per.items():
                rows[name] = z[bi, ti].float()
                lse[name] = torch.logsumexp(rows[name], dim=-1)
                ce[name] += (lse[name] - rows[name].gather(-1, tg)[:, 0]).double().sum()
            p_orig = torch.exp(rows["orig"] - lse["orig"][:, None])
            cross = (p_orig * (rows["orig"] - rows["sae"])).sum(-1)
            kl += (cross - lse["orig"] + lse["sae"]).double().sum()
        for name, value in ce.items():
            self.ce[name] += float(value)
        self.kl += float(kl)
        self.count += int(targets.numel())

    def metrics(self, shared: bool, reused: bool = False) -> SplicedMetrics:
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
            reused,
        )


def _recovered(ablated: float, spliced: float, orig: float) -> float:
    denom = ablated - orig
    return (ablated - spliced) / denom if abs(denom) > 1e-12 else float("nan")


def spliced_metrics(
    model, hook_point, reconstruct: Callable[[Tensor], Tensor], token_id: Tensor, mask: Tensor,
    positions: Tensor, **options: Any,
) -> SplicedMetrics:  # fmt: skip
    """CE (orig / spliced / zero / mean) and KL over `positions` of `token_id [N, T]`.

    `reconstruct(x [n, d]) -> x_hat [n, d]` maps raw activations (model dtype in, model dtype out).
    `options` are `spliced_metrics_and_baseline`'s: `batch_size`, `on_activations` (receives the original
    activations at the evaluated positions, for FVU etc.), `progress`, `share_prefix=False`, which
    forces full forward passes (the reference the fast path is checked against), and `source_hook` (a
    transcoder: `reconstruct` maps that hook's activations to `hook_point`'s).
    """
    metrics, _ = spliced_metrics_and_baseline(
        model, hook_point, reconstruct, token_id, mask, positions, **options
    )
    return metrics


@torch.no_grad()
def spliced_metrics_and_baseline(
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
    baseline: Baseline | None = None,
    source_hook=None,
) -> tuple[SplicedMetrics, Baseline]:
    """`spliced_metrics`, plus its SAE-independent part; given a `baseline` from an earlier call on the
    same model, hook, tokens and batch size, only the original and spliced variants run.

    A baseline is trusted only after two checks: the first context's prefix is recomputed and must match
    it, and the rerun original CE must match its `ce_orig_sum`. If either fails it is dropped with a
    warning and everything is recomputed, so a stale cache costs time, never correctness.

    `source_hook` (a transcoder's input hook point): the SAE variant replaces `hook_point`'s activation with
    `reconstruct(activation at source_hook)`, both read in one pass; `on_activations(x, src)` then also
    receives the source rows. A baseline holds no source activations, so none is reused then.
    """
    hp = HookPoint.parse(hook_point)
    source = None if source_hook is None else HookPoint.parse(source_hook)
    if source is not None:
        baseline = None
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
    tuple_out = False
    if baseline is not None:
        fits, tuple_out = _baseline_fits(model, hp, batches, slot, baseline)
        baseline = baseline if fits else None
    prefixes, mean, tuple_out, sources = _collect_prefixes(
        model, hp, batches, slot, baseline, on_activations, tuple_out, source
    )
    # phase 2: the variants, batched, through the suffix (or full passes)
    names = SAE_DEPENDENT if baseline is not None else VARIANTS
    sums = _Sums(names)
    for i, ((ids, attn, pos), x, src) in enumerate(zip(batches, prefixes, sources, strict=True)):
        stacked = _variants(x, pos, reconstruct, mean, names, src)
        ids_v, attn_v = ids.repeat(len(names), 1), attn.repeat(len(names), 1)
        logits = _suffix_pass(model, slot, tuple_out, ids_v, attn_v, stacked) if slot else None
        # on first use the replay is checked against a full forward; a reused baseline is checked by its
        # original CE instead (computed by a checked replay or full passes), so the guard is not repeated
        guard = slot and i == 0 and baseline is None
        if guard and not _matches_full(model, hp, ids_v, attn_v, stacked, logits, len(names)):
            slot = None
        if logits is None or slot is None:
            logits = _full_pass(model, hp, ids_v, attn_v, stacked)
        sums.add(logits, ids, pos.to(dev))
        if progress is not None:
            progress.update(int(pos[:, :-1].sum()))
    if baseline is not None:
        if not _close(sums.ce["orig"], baseline.ce_orig_sum, sums.count) or sums.count != baseline.count:
            warnings.warn(
                f"eval: the cached baseline's original CE does not match this model at {hp}; recomputing",
                stacklevel=2,
            )
            return spliced_metrics_and_baseline(
                model, hp, reconstruct, token_id, mask, positions, batch_size=batch_size,
                on_activations=None, progress=None, share_prefix=share_prefix, source_hook=source,
            )  # fmt: skip
        sums.ce["zero"], sums.ce["mean"] = baseline.ce_zero_sum, baseline.ce_mean_sum
    base = Baseline(list(prefixes), sums.ce["orig"], sums.ce["zero"], sums.ce["mean"], sums.count)
    return sums.metrics(shared=slot is not None, reused=baseline is not None), base


def _collect_prefixes(model, hp, batches, slot, baseline, on_activations, tuple_out: bool, source=None):
    """Phase 1: every batch's activation at the hook (computed, or taken from the baseline), the mean
    over the evaluated positions (for mean ablation), whether the hooked layer returns a tuple, and the
    activations at `source` (a transcoder's input; Nones without one)."""
    dev = _device(model)
    prefixes, sources, total, n = [], [], None, 0
    for i, (ids, attn, pos) in enumerate(batches):
        src = None
        if baseline is None:
            x, tuple_out, src = _prefix(model, hp, ids, attn, slot, source)
        else:
            x = baseline.prefix[i].to(dev)
        sources.append(src)
        xs = x[pos.to(x.device)]
        if on_activations is not None and src is None:
            on_activations(xs)
        elif on_activations is not None:
            on_activations(xs, src[pos.to(src.device)])
        total = xs.double().sum(0) if total is None else total + xs.double().sum(0)
        n += xs.shape[0]
        prefixes.append(x)
    if n == 0:
        raise SaekitError("no evaluable positions: give more tokens or longer contexts")
    return prefixes, (total / n).float(), tuple_out, sources


def _close(a: float, b: float, count: int) -> bool:
    """Summed CEs agree to 1e-4 nats per token (reduction order and thread counts move the last bits)."""
    return abs(a - b) <= 1e-4 * max(count, 1) * max(1.0, abs(b) / max(count, 1))


def _baseline_fits(model, hp: HookPoint, batches, slot, baseline: Baseline) -> tuple[bool, bool]:
    """Whether the baseline covers these batches and its first prefix is what the model computes now;
    and whether the hooked layer returns a tuple (learnt from that recomputed prefix)."""
    shapes_ok = len(baseline.prefix) == len(batches) and all(
        tuple(p.shape[:2]) == tuple(ids.shape)
        for p, (ids, _, _) in zip(baseline.prefix, batches, strict=False)
    )
    if shapes_ok:
        ids, attn, _ = batches[0]
        x, tuple_out, _ = _prefix(model, hp, ids[:1], attn[:1], slot)  # one context: cheap, and enough
        ref = baseline.prefix[0][:1].to(x.device, x.dtype)
        if x.shape == ref.shape and torch.allclose(
            x, ref, rtol=1e-4, atol=1e-4 * float(x.abs().max().clamp_min(1))
        ):
            return True, tuple_out
    warnings.warn(
        f"eval: the cached baseline does not match this model and tokens at {hp}; recomputing", stacklevel=3
    )
    return False, False


def _matches_full(model, hp, ids4, attn4, stacked, logits, n_variants: int) -> bool:
    """One-time guard: the suffix replay must give the full forward's logits (else fall back)."""
    rows = [ids4.shape[0] // n_variants]  # the first context, SAE-spliced: one row covers the replayed edit
    ref = _full_pass(model, hp, ids4[rows], attn4[rows], stacked[rows])
    ok = torch.allclose(logits[rows], ref, rtol=1e-4, atol=1e-3 * float(ref.abs().max().clamp_min(1)))
    if not ok:
        warnings.warn(
            f"eval: replaying the model after {hp} did not reproduce a full forward; using full passes",
            stacklevel=3,
        )
    return ok
