"""Core metrics with intervals: FVU (with and without norm outliers), L0, never-firing and dense latents,
CE and KL with the SAE spliced in, CE recovered against zero and mean ablation.

The definitions are `saekit eval`'s (`saekit.eval.spliced`, `saekit.eval.activations`): the same scored
positions (`eval_positions`), the same splice (only scored positions are replaced), the same mean
ablation (the mean activation over the scored positions), the same norm-outlier rule as
`inlier_metrics`, the same suffix replay (`saekit.eval.suffix`). The eval returns sums only, so this
module computes the per-token values itself and the interval comes from a bootstrap over those rows,
resampling whole contexts; each context is the start of a different document (round-robin over the
corpus' sources, from the end of each, as harvest reads from the start), so the resampled unit is a
document. Summed, the rows give exactly the eval's figures (tests/bench/test_core.py checks them
against `spliced_metrics` and `activation_metrics`).

Everything that does not depend on the SAE (the prefix activations, the original, zero- and
mean-ablated CEs) is computed once per bench run (`core_inputs`); each SAE then costs one pass of two
variants (original, for the KL, and spliced) through the layers after the hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from saekit.bench.bootstrap import Interval, bootstrap
from saekit.errors import SAEConfigError, SaekitError


@dataclass(frozen=True)
class CoreConfig:
    """Core metrics (`--core.*`)."""

    corpus: str = "default"
    """Held-out text: `default` (Shakespeare and the Bible), `shakespeare`, `bible`, or a .txt/.jsonl path.
    One context from the start of each document, documents taken from the end of each source."""
    tokens: int = 4096
    """Scored positions (whole contexts are kept until at least this many)."""
    context_len: int = 128
    """Tokens per context."""
    batch_size: int = 4
    """Contexts per forward pass."""
    exclude_first: int = 1
    """Context positions never spliced nor scored (the attention sink), as in `saekit eval`."""
    dense_threshold: float = 0.1
    """A latent firing on more than this fraction of rows is counted as dense."""
    acts: str | None = None
    """Optional activation store: never-firing and dense latents are then counted on `acts_rows` of its
    rows (a few thousand held-out tokens leave many rare latents silent) instead of the held-out tokens."""
    acts_rows: int = 32768
    """Rows of `acts` (a seeded random sample)."""

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.context_len <= self.exclude_first + 1 or self.batch_size < 1:
            raise SAEConfigError(
                "core: --core.tokens and --core.batch-size must be positive and --core.context-len larger "
                f"than --core.exclude-first + 1 (got {self.tokens}, {self.batch_size}, {self.context_len})"
            )
        if not 0 < self.dense_threshold < 1:
            raise SAEConfigError(
                f"core: --core.dense-threshold must be in (0, 1), got {self.dense_threshold}"
            )


class CoreInputs(NamedTuple):
    """The SAE-independent part, shared by every SAE of a bench run."""

    batches: list[tuple[Tensor, Tensor, Tensor]]
    """(token ids, attention mask, scored positions) per batch, `[b, T]` each."""
    prefix: list[Tensor]
    """Hook-point activation `[b, T, d]` of every batch (model dtype)."""
    mean: Tensor
    """`[d]` mean activation over the scored positions (mean ablation)."""
    slot: tuple | None
    """(layer stack, index) when the model after the hook is replayed, else None (full passes)."""
    tuple_out: bool
    ce_orig: Tensor
    """`[tokens]` float64 per scored position, in batch then row-major order (also `ce_zero`, `ce_mean`)."""
    ce_zero: Tensor
    ce_mean: Tensor
    context: Tensor
    """`[tokens]` int64 global index of the context (document) of each scored position."""
    inlier: Tensor
    """`[tokens]` bool: not a norm outlier (`inlier_metrics`' rule)."""
    firing_rows: Tensor | None
    """`[rows, d]` store rows for never-firing / dense counts (None: the held-out tokens are used)."""


def heldout_documents(docs: list) -> list:
    """Documents from the end of each source (the text before `:` in `source`), interleaved round-robin."""
    from itertools import zip_longest

    from saekit.data.corpus import Document

    by_source: dict[str, list] = {}
    for d in docs:
        by_source.setdefault(d.source.split(":", 1)[0], []).append(d)
    mixed = [d for tup in zip_longest(*(v[::-1] for v in by_source.values())) for d in tup if d is not None]
    return [Document(i, d.text, d.source) for i, d in enumerate(mixed)]


def heldout_contexts(docs: list, tokenizer, cfg: CoreConfig, special_ids: set[int]):
    """(token ids, mask, scored positions) `[n, T]`: the first context of documents in `heldout_documents`
    order until `cfg.tokens` positions are scored."""
    from saekit.data.corpus import Document
    from saekit.data.tokenize import tokenize_corpus
    from saekit.eval.spliced import eval_positions

    chars = cfg.context_len * 12  # plenty for one context; the rest of a long document is not tokenised
    ids, mask, pos, total = [], [], [], 0
    step = max(8, cfg.tokens // (cfg.context_len - cfg.exclude_first - 1) + 1)
    ordered = heldout_documents(docs)
    for lo in range(0, len(ordered), step):
        part = [Document(i, d.text[:chars], d.source) for i, d in enumerate(ordered[lo : lo + step])]
        batch = tokenize_corpus(part, tokenizer, cfg.context_len, min_context=cfg.context_len // 2)
        first = np.unique(batch.doc_id[:, 0].numpy(), return_index=True)[1]
        p = eval_positions(batch.token_id[first], batch.mask[first], special_ids, cfg.exclude_first)
        for r, row in enumerate(first):
            ids.append(batch.token_id[row])
            mask.append(batch.mask[row])
            pos.append(p[r])
            total += int(p[r].sum())
            if total >= cfg.tokens:
                return torch.stack(ids), torch.stack(mask), torch.stack(pos)
    if not ids:
        raise SaekitError(f"core: corpus {cfg.corpus!r} gave no context of {cfg.context_len // 2}+ tokens")
    return torch.stack(ids), torch.stack(mask), torch.stack(pos)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _logits(model, ids: Tensor, attn: Tensor) -> Tensor:
    out = model(input_ids=ids, attention_mask=attn.long())
    return out.logits if hasattr(out, "logits") else out[0]


def _edited_logits(model, hp, slot, tuple_out: bool, ids: Tensor, attn: Tensor, stacked: Tensor) -> Tensor:
    """Logits of the contexts `ids` repeated once per variant, with the hook-point activation replaced by
    `stacked [variants * b, T, d]`: replayed through the layers after the hook, or a full pass."""
    from saekit.eval.suffix import replay_prefix
    from saekit.hooks import intervene

    n = stacked.shape[0] // ids.shape[0]
    ids_v, attn_v = ids.repeat(n, 1), attn.repeat(n, 1)
    if slot is None:
        with intervene(model, hp, lambda x: stacked.to(x.dtype)):
            return _logits(model, ids_v, attn_v)
    with replay_prefix(*slot, stacked, tuple_out):
        return _logits(model, ids_v, attn_v)


def token_ce(logits_bTV: Tensor, ids_bT: Tensor, pos_bT: Tensor, chunk: int = 256) -> Tensor:
    """`[n]` float64 next-token cross-entropy at every scored position (row-major order)."""
    b_idx, t_idx = pos_bT[:, :-1].nonzero(as_tuple=True)
    targets = ids_bT[b_idx, t_idx + 1]
    out = []
    for lo in range(0, len(b_idx), chunk):
        z = logits_bTV[b_idx[lo : lo + chunk], t_idx[lo : lo + chunk]].float()
        out.append((torch.logsumexp(z, -1) - z.gather(-1, targets[lo : lo + chunk, None])[:, 0]).double())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def token_kl(p_logits: Tensor, q_logits: Tensor, pos_bT: Tensor, chunk: int = 256) -> Tensor:
    """`[n]` float64 KL(p || q) of the next-token distributions at every scored position."""
    b_idx, t_idx = pos_bT[:, :-1].nonzero(as_tuple=True)
    out = []
    for lo in range(0, len(b_idx), chunk):
        sel = (b_idx[lo : lo + chunk], t_idx[lo : lo + chunk])
        lp = torch.log_softmax(p_logits[sel].float(), -1)
        lq = torch.log_softmax(q_logits[sel].float(), -1)
        out.append((lp.exp() * (lp - lq)).sum(-1).double())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _splice(x: Tensor, pos: Tensor, values: Tensor | float) -> Tensor:
    out = x.clone()
    out[pos] = values if isinstance(values, float) else values.to(x.dtype)
    return out


@torch.no_grad()
def core_inputs(
    lm, hook_point, cfg: CoreConfig, *, max_norm_ratio: float = 50.0, quiet: bool = True
) -> CoreInputs:
    """Prefix activations and the original / zero / mean-ablated CEs of the held-out contexts (module
    docstring). The original CE comes from plain forward passes; the first batch also replays it
    through the layers after the hook, and a replay that does not reproduce it turns the replay off."""
    from saekit.data.corpus import load_corpus
    from saekit.eval.suffix import layer_slot, returns_tuple
    from saekit.hooks import HookPoint, capture
    from saekit.models.activations import norm_outliers

    model, hp = lm.model, HookPoint.parse(hook_point)
    specials = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    ids, mask, pos = heldout_contexts(load_corpus(cfg.corpus), lm.tokenizer, cfg, specials)
    dev, slot = _device(model), layer_slot(model, hp)
    bs = cfg.batch_size
    batches = [
        (ids[lo : lo + bs].to(dev), mask[lo : lo + bs].to(dev), pos[lo : lo + bs].to(dev))
        for lo in range(0, len(ids), bs)
    ]
    prefix, ce_orig, logits0, tuple_out = [], [], None, False
    bar = tqdm(total=2 * len(batches), desc="core: model passes", unit="batch", disable=quiet)
    for i, (b_ids, b_attn, b_pos) in enumerate(batches):
        seen, handle = returns_tuple(*slot) if slot else ({}, None)
        try:
            with capture(model, hp) as cap:
                logits = _logits(model, b_ids, b_attn)
        finally:
            if handle is not None:
                handle.remove()
        tuple_out = seen.get("tuple", tuple_out)
        prefix.append(cap.activations[str(hp)])
        ce_orig.append(token_ce(logits, b_ids, b_pos))
        logits0 = logits if i == 0 else logits0
        bar.update(1)
    scored = [x[p] for x, (_, _, p) in zip(prefix, batches, strict=True)]
    mean = torch.cat(scored).double().mean(0).to(prefix[0].dtype)
    if slot is not None:  # the replay must reproduce the plain forward before it is trusted
        b_ids, b_attn, b_pos = batches[0]
        replayed = _edited_logits(model, hp, slot, tuple_out, b_ids, b_attn, prefix[0])
        scale = float(logits0.abs().max().clamp_min(1))
        if not torch.allclose(replayed, logits0, rtol=1e-4, atol=1e-3 * scale):
            slot = None
    ce_zero, ce_mean = [], []
    for x, (b_ids, b_attn, b_pos) in zip(prefix, batches, strict=True):
        stacked = torch.cat([_splice(x, b_pos, 0.0), _splice(x, b_pos, mean.expand(int(b_pos.sum()), -1))])
        zero, mean_l = _edited_logits(model, hp, slot, tuple_out, b_ids, b_attn, stacked).chunk(2)
        ce_zero.append(token_ce(zero, b_ids, b_pos))
        ce_mean.append(token_ce(mean_l, b_ids, b_pos))
        bar.update(1)
    bar.close()
    context = torch.arange(len(ids))[:, None].expand_as(pos)[pos]  # the order of the per-token values
    scored_all = torch.cat(scored)
    keep = torch.ones(1, scored_all.shape[0], dtype=torch.bool)
    inlier = ~norm_outliers(scored_all[None].float(), keep, max_norm_ratio)[0].cpu()
    firing = None
    if cfg.acts:
        from saekit.train.source import open_source

        firing = open_source(cfg.acts).sample(cfg.acts_rows, 12345).float()
    return CoreInputs(
        batches,
        prefix,
        mean,
        slot,
        tuple_out,
        torch.cat(ce_orig),
        torch.cat(ce_zero),
        torch.cat(ce_mean),
        context,
        inlier,
        firing,
    )


@torch.no_grad()
def core_metrics(
    sae,
    lm,
    hook_point,
    inputs: CoreInputs,
    cfg: CoreConfig,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    quiet: bool = True,
) -> dict[str, Interval]:
    """Every core figure of one SAE with its interval (bootstrap over held-out documents; over blocks of
    256 store rows for the firing counts when `cfg.acts` is given)."""
    from saekit.eval.activations import check_width
    from saekit.hooks import HookPoint

    model, hp = lm.model, HookPoint.parse(hook_point)
    check_width(sae, inputs.prefix[0].shape[-1], f"the model at {hp}")
    dev = next(sae.parameters()).device
    rows, fired_rows, ce_sae, kl, ce_check = [], [], [], [], []
    bar = tqdm(total=len(inputs.batches), desc="core", unit="batch", disable=quiet)
    for x, (b_ids, b_attn, b_pos) in zip(inputs.prefix, inputs.batches, strict=True):
        xs = x[b_pos].float().to(dev)
        lat = sae.encode(xs)
        recon = sae.decode(lat, xs).float()
        nz = lat != 0
        rows.append(
            torch.cat(
                [
                    (xs - recon).double().pow(2).sum(-1, keepdim=True),
                    xs.double().pow(2).sum(-1, keepdim=True),
                    xs.double(),
                    nz.sum(-1, keepdim=True).double(),
                ],
                dim=1,
            ).cpu()
        )
        fired_rows.append(nz.cpu())
        stacked = torch.cat([x, _splice(x, b_pos, recon.to(x.device))])
        orig, spliced = _edited_logits(
            model, hp, inputs.slot, inputs.tuple_out, b_ids, b_attn, stacked
        ).chunk(2)
        ce_check.append(token_ce(orig, b_ids, b_pos))
        ce_sae.append(token_ce(spliced, b_ids, b_pos))
        kl.append(token_kl(orig, spliced, b_pos))
        bar.update(1)
    bar.close()
    ce_orig = torch.cat(
        ce_check
    )  # this SAE's batches (2 variants) may round differently from the shared pass
    drift = abs(float(ce_orig.mean() - inputs.ce_orig.mean()))
    if drift > 1e-3 * max(1.0, float(inputs.ce_orig.mean())):
        raise SaekitError(
            f"core: the model's original CE moved by {drift:.2e} nats between passes; was the model "
            "edited during the bench?"
        )
    ctx = inputs.context.numpy()
    out = _reconstruction(torch.cat(rows).numpy(), ctx, inputs.inlier.numpy(), n_boot, seed)
    ce = torch.stack(
        [ce_orig, torch.cat(ce_sae), inputs.ce_zero, inputs.ce_mean, torch.cat(kl), torch.ones_like(ce_orig)],
        dim=1,
    ).numpy()
    out |= _downstream(ce, ctx, n_boot, seed)
    if inputs.firing_rows is None:
        counts = _fired_counts(torch.cat(fired_rows), inputs.context)
    else:
        rows_f = inputs.firing_rows
        block = torch.arange(rows_f.shape[0]) // 256
        counts = sum(
            _fired_counts(
                (sae.encode(rows_f[lo : lo + 2048].to(dev)) != 0).cpu(),
                block[lo : lo + 2048],
                n_clusters=int(block[-1]) + 1,
            )
            for lo in range(0, rows_f.shape[0], 2048)
        )
    out |= _firing(counts, cfg.dense_threshold, n_boot, seed)
    return out


def _fired_counts(fired_ND: Tensor, cluster_N: Tensor, n_clusters: int | None = None) -> np.ndarray:
    """`[clusters, d_sae + 1]`: how often each latent fired in each cluster, and the cluster's rows."""
    n_clusters = int(cluster_N.max()) + 1 if n_clusters is None else n_clusters
    out = torch.zeros(n_clusters, fired_ND.shape[1] + 1, dtype=torch.float64)
    out[:, :-1].index_add_(0, cluster_N, fired_ND.double())
    out[:, -1].index_add_(0, cluster_N, torch.ones(len(cluster_N), dtype=torch.float64))
    return out.numpy()


def _reconstruction(stats: np.ndarray, ctx: np.ndarray, inlier: np.ndarray, n_boot: int, seed: int) -> dict:
    """FVU (all rows, inliers) and L0 from per-row [err, ||x||^2, x (d), l0] plus a count column."""
    s = np.concatenate([stats, np.ones((stats.shape[0], 1))], axis=1)

    def fvu(t):
        n = t[..., -1]
        var = t[..., 1] - (t[..., 2:-2] ** 2).sum(-1) / np.maximum(n, 1)
        return t[..., 0] / np.maximum(var, 1e-30)

    return {
        "fvu": bootstrap(s, fvu, clusters=ctx, n_boot=n_boot, seed=seed),
        "fvu_inliers": bootstrap(s[inlier], fvu, clusters=ctx[inlier], n_boot=n_boot, seed=seed),
        "l0": bootstrap(
            s[:, [-2, -1]], lambda t: t[..., 0] / t[..., 1], clusters=ctx, n_boot=n_boot, seed=seed
        ),
    }


def _downstream(ce: np.ndarray, ctx: np.ndarray, n_boot: int, seed: int) -> dict:
    """Columns: ce_orig, ce_sae, ce_zero, ce_mean, kl, count."""

    def mean(col):
        return lambda t: t[..., col] / t[..., 5]

    def recovered(ablated):
        return lambda t: (t[..., ablated] - t[..., 1]) / (t[..., ablated] - t[..., 0])

    names = {
        "ce_orig": mean(0),
        "ce_sae": mean(1),
        "ce_zero": mean(2),
        "ce_mean": mean(3),
        "kl": mean(4),
        "ce_recovered": recovered(2),
        "ce_recovered_mean": recovered(3),
    }
    return {k: bootstrap(ce, f, clusters=ctx, n_boot=n_boot, seed=seed) for k, f in names.items()}


def _firing(counts_CF: np.ndarray, dense: float, n_boot: int, seed: int) -> dict:
    """Percent of latents that never fire, and that fire on more than `dense` of the rows, from per-cluster
    counts (`_fired_counts`). The never-fired figure gets no interval: a bootstrap resample holds about
    63% of the distinct rows, so it can only find more latents silent, and its percentile interval lies
    wholly above the value (0.6 [1.2, 1.7] on the leaderboard): a biased answer, not an uncertainty."""
    counts_CF = counts_CF[counts_CF[:, -1] > 0]

    def never(t):
        return 100.0 * (t[..., :-1] == 0).mean(-1)

    def dense_pct(t):
        return 100.0 * (t[..., :-1] / t[..., -1:] > dense).mean(-1)

    return {
        "never_fired_pct": bootstrap(counts_CF, never, n_boot=0, seed=seed),
        "dense_pct": bootstrap(counts_CF, dense_pct, n_boot=n_boot, seed=seed),
    }
