"""`analyze real`: one streaming pass of an SAE over activations, keeping per-feature top examples
and statistics for *all* features, then contexts for the selected ones.

Cost model: the pass does the SAE encode (the dominant cost) plus O(active latents) bookkeeping per
batch — a TopK SAE is consumed in its sparse `(values, indices)` form, never densified — so it runs
close to an encode-only pass (see benchmarks/analyze.py). Memory is O(d_sae x n_top + d_sae x
sketch buckets), independent of the number of tokens.

Contexts are built afterwards from the source's rows (see `store_rows.py`): the window around each
top example is read back (or recomputed, for a model + corpus source) and re-encoded with the SAE,
which reproduces the pass's activations exactly. Sources without tokens (image stores) get no text
contexts; `image_report.py` shows their top examples as images instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from saekit.analysis.buckets import FiringSample
from saekit.analysis.stats import FeatureStats, SketchConfig
from saekit.analysis.store_rows import RowSource, StoreRows
from saekit.analysis.timesteps import StepStats
from saekit.analysis.topk_merge import TopKTracker
from saekit.errors import SaekitError

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


@dataclass(frozen=True)
class RealConfig:
    """Settings of the real-activation pass."""

    n_top: int = 20
    """Top activating examples kept per feature."""
    batch_size: int = 4096
    """Rows per SAE encode."""
    context_before: int = 12
    """Tokens shown before each top example."""
    context_after: int = 4
    """Tokens shown after each top example."""
    max_rows: int | None = None
    """Stop after this many rows (None: the whole store)."""
    sketch: SketchConfig = field(default_factory=SketchConfig)
    """Quantile sketch resolution (relative error alpha)."""
    bucket_examples: int = 3
    """Examples shown per activation-quantile bucket (`bucket_examples` in analysis.json; 0: none)."""
    bucket_pool: int = 64
    """Firings sampled uniformly per feature during the pass, the pool the buckets draw from."""
    n_nearest: int = 8
    """Nearest features by decoder cosine listed per analysed feature (`nearest`; 0: none)."""

    def __post_init__(self) -> None:
        if self.bucket_examples < 0 or self.bucket_pool < 1 or self.n_nearest < 0:
            raise SaekitError(
                "real: --bucket-examples and --n-nearest must be >= 0 and --bucket-pool >= 1, got "
                f"{self.bucket_examples}, {self.n_nearest}, {self.bucket_pool}"
            )


@dataclass
class RealPass:
    """Result of the streaming pass (all features)."""

    tracker: TopKTracker
    stats: FeatureStats
    n_rows: int
    steps: StepStats | None = None
    """Per-denoising-step counters (only for rows that carry a `step`, i.e. diffusion stores)."""
    sample: FiringSample | None = None
    """A uniform sample of each feature's firing rows (for examples from every bucket)."""


def _active(sae, acts_BD: Tensor) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor] | None]:
    """Active latents of a batch as (row, feature, value) triples, plus the TopK sparse form if any."""
    if getattr(sae, "sparse_native", False):
        vals, idx = sae.encode_sparse(acts_BD)
        rows = torch.arange(vals.shape[0], device=vals.device).repeat_interleave(vals.shape[1])
        return rows, idx.reshape(-1), vals.reshape(-1).float(), (vals, idx)
    lat = sae.activation_magnitude(sae.encode(acts_BD))  # |f| for signed SAEs: negatives are active
    flat = lat.reshape(-1)
    idx = flat.nonzero().squeeze(1)  # latents are >= 0, so non-zero = active; no mask tensor
    vals = flat[idx].float()
    keep = vals > 0
    if not bool(keep.all()):  # an architecture with negative latents: only positive ones count
        idx, vals = idx[keep], vals[keep]
    return idx // lat.shape[1], idx % lat.shape[1], vals, None


def encode_into(
    sae,
    acts_BD: Tensor,
    keys_B: Tensor,
    tracker: TopKTracker | None,
    stats: FeatureStats,
    steps: StepStats | None = None,
    meta: dict | None = None,
    sample: FiringSample | None = None,
) -> None:
    """Encode one batch and feed the tracker, the statistics, the per-step counters, the sample."""
    rows, feats, vals, sparse = _active(sae, acts_BD)
    if sparse is not None:  # the TopK fast path: never densified
        stats.update_sparse(*sparse)
        if tracker is not None:
            tracker.update_sparse(*sparse, keys_B)
        if sample is not None:
            sample.update_sparse(*sparse, keys_B)
    else:
        stats.update_triples(feats, vals, acts_BD.shape[0])
        if tracker is not None:
            tracker.update_triples(feats, vals, keys_B[rows])
        if sample is not None:
            sample.update_triples(feats, vals, keys_B[rows])
    if steps is not None and meta is not None:
        keep = vals > 0
        steps.update(meta["step"], rows[keep], feats[keep], vals[keep], meta.get("timestep"))


@torch.inference_mode()
def real_pass(
    sae,
    batches: Iterable[Tensor | tuple],
    cfg: RealConfig = RealConfig(),
    total: int | None = None,
    *,
    quiet: bool = True,
) -> RealPass:
    """Stream `batches` (tensors `[B, d_in]` or `(acts, meta)` pairs, in source order) through the SAE.

    Keys of top examples are global row numbers in iteration order. Batches whose meta has a `step`
    (diffusion) also feed per-step counters.
    """
    tracker = TopKTracker(sae.d_sae, cfg.n_top)
    stats = FeatureStats(sae.d_sae, cfg.sketch)
    steps: StepStats | None = None
    sample = FiringSample(sae.d_sae, cfg.bucket_pool) if cfg.bucket_examples > 0 else None
    seen, limit = 0, cfg.max_rows
    bar = tqdm(
        total=min(total or 0, limit or 1 << 62) or None, unit="tok", disable=quiet, desc="analyze real"
    )
    for item in batches:
        acts, meta = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
        if limit is not None and seen + acts.shape[0] > limit:
            acts = acts[: limit - seen]
            meta = None if meta is None else {k: v[: acts.shape[0]] for k, v in meta.items()}
        if acts.shape[0] == 0:
            break
        if steps is None and meta is not None and "step" in meta:
            steps = StepStats(sae.d_sae)
        keys = torch.arange(seen, seen + acts.shape[0])
        encode_into(sae, acts, keys, tracker, stats, steps, meta, sample)
        seen += acts.shape[0]
        bar.update(acts.shape[0])
        if limit is not None and seen >= limit:
            break
    bar.close()
    return RealPass(tracker, stats, seen, steps, sample)


def store_batches(folder, batch_size: int) -> Iterator[tuple[Tensor, dict]]:
    """Sequential `(acts, meta)` batches of a store, in storage order."""
    yield from StoreRows(folder).batches(batch_size)


@dataclass
class Context:
    """Tokens around one top example with the feature's activation on each."""

    token_ids: list[int]
    activations: list[float]
    focus: int
    """Index of the top example inside the window."""


@torch.inference_mode()
def contexts_from_rows(
    sae,
    source: RowSource,
    feature_rows: dict[int, list[int]],
    before: int,
    after: int,
    batch_size: int = 4096,
) -> dict[int, list[Context]]:
    """For each feature's top rows, read the window (same document only) and re-encode it."""
    n = len(source)
    windows: list[tuple[int, int, list[int]]] = []  # (feature, centre row, window rows)
    for f, rs in feature_rows.items():
        for r in rs:
            windows.append((f, r, list(range(max(0, r - before), min(n, r + after + 1)))))
    needed = sorted({r for _, _, w in windows for r in w})
    if not needed:
        return {f: [] for f in feature_rows}
    data = source.read(needed)
    doc_ids, token_ids = data.doc_id.tolist(), data.token_id.tolist()
    pos_of = {r: i for i, r in enumerate(needed)}
    feats = torch.tensor(sorted(feature_rows))
    col_of = {int(f): i for i, f in enumerate(feats.tolist())}
    acts_NS = torch.cat(
        [
            sae.encode(data.acts[s : s + batch_size])[:, feats].float()
            for s in range(0, len(needed), batch_size)
        ]
    )
    out: dict[int, list[Context]] = {f: [] for f in feature_rows}
    for f, centre, w in windows:
        doc = doc_ids[pos_of[centre]]
        w = [r for r in w if doc_ids[pos_of[r]] == doc]
        idx = [pos_of[r] for r in w]
        out[f].append(
            Context([token_ids[i] for i in idx], [float(acts_NS[i, col_of[f]]) for i in idx], w.index(centre))
        )
    return out


contexts_from_store = contexts_from_rows  # the name older callers use


def top_rows(rp: RealPass, features: list[int]) -> dict[int, list[int]]:
    return {f: [k for _, k in rp.tracker.examples(f)] for f in features}


def analyze_source(
    sae,
    source: RowSource,
    features_spec: str | list[int],
    cfg: RealConfig = RealConfig(),
    *,
    tokenizer=None,
    unembed=None,
    sae_path: str | None = None,
    prompt_scores=None,
    quiet: bool = True,
) -> dict:
    """The whole `analyze real` on a row source: pass, selection, contexts, logit effects -> JSON doc."""
    from saekit.analysis.features import resolve_features
    from saekit.analysis.real_doc import build_document

    rp = real_pass(sae, source.batches(cfg.batch_size), cfg, total=len(source), quiet=quiet)
    features = resolve_features(
        features_spec, sae.d_sae, firing_counts=rp.stats.count_F, n_rows=rp.stats.n_rows,
        prompt_scores=prompt_scores,
    )
    rows = top_rows(rp, features)
    ctx = None
    if "token_id" in source.meta_fields():
        ctx = contexts_from_rows(sae, source, rows, cfg.context_before, cfg.context_after, cfg.batch_size)
    centre = source.read([r for f in features for r in rows[f]])
    doc = build_document(sae, source, rp, features, ctx, centre, cfg, tokenizer, unembed, sae_path)
    if rp.sample is not None and ctx is not None:
        from saekit.analysis.buckets import add_bucket_examples

        add_bucket_examples(doc, sae, source, rp.sample, features, cfg, tokenizer)
    if cfg.n_nearest > 0:
        from saekit.analysis.nearest import nearest_entries

        near = nearest_entries(sae.decoder_directions(), features, cfg.n_nearest)
        for f in features:
            doc["features"][str(f)]["nearest"] = near[f]
    return doc


def analyze_store(
    sae, store_folder, features_spec: str | list[int], cfg: RealConfig = RealConfig(), **kw
) -> dict:
    """`analyze_source` on an activation store folder (see analyze_source for the keywords)."""
    doc = analyze_source(sae, StoreRows(store_folder), features_spec, cfg, **kw)
    doc["source"]["path"] = str(store_folder)
    return doc
