"""`analyze real`: one streaming pass of an SAE over activations, keeping per-feature top examples
and statistics for *all* features, then contexts for the selected ones.

Cost model: the pass does the SAE encode (the dominant cost) plus O(active latents) bookkeeping per
batch — a TopK SAE is consumed in its sparse `(values, indices)` form, never densified — so it runs
close to an encode-only pass (see benchmarks/analyze.py). Memory is O(d_sae x n_top + d_sae x
sketch buckets), independent of the number of tokens.

Contexts are built afterwards from the stored rows (see `store_rows.py`): the window around each top
example is read back and re-encoded with the SAE, which reproduces the pass's activations exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from saekit.analysis.stats import FeatureStats, SketchConfig
from saekit.analysis.store_rows import StoreRows
from saekit.analysis.topk_merge import TopKTracker

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
    quiet: bool = False
    """No progress bar."""


@dataclass
class RealPass:
    """Result of the streaming pass (all features)."""

    tracker: TopKTracker
    stats: FeatureStats
    n_rows: int


def encode_into(
    sae, acts_BD: Tensor, keys_B: Tensor, tracker: TopKTracker | None, stats: FeatureStats
) -> None:
    """Encode one batch and feed the tracker and the statistics (sparse form for TopK SAEs)."""
    if getattr(sae, "sparse_native", False):
        vals, idx = sae.encode_sparse(acts_BD)
        stats.update_sparse(vals, idx)
        if tracker is not None:
            tracker.update_sparse(vals, idx, keys_B)
    else:  # one scan of the dense latents feeds both
        lat = sae.activation_magnitude(sae.encode(acts_BD))  # |f| for signed SAEs: negatives are active
        flat = lat.reshape(-1)
        idx = flat.nonzero().squeeze(1)  # latents are >= 0, so non-zero = active; no mask tensor
        vals = flat[idx].float()
        keep = vals > 0
        if not bool(keep.all()):  # an architecture with negative latents: only positive ones count
            idx, vals = idx[keep], vals[keep]
        rows, feats = idx // lat.shape[1], idx % lat.shape[1]
        stats.update_triples(feats, vals, lat.shape[0])
        if tracker is not None:
            tracker.update_triples(feats, vals, keys_B[rows])


@torch.inference_mode()
def real_pass(
    sae, batches: Iterable[Tensor | tuple], cfg: RealConfig = RealConfig(), total: int | None = None
) -> RealPass:
    """Stream `batches` (tensors `[B, d_in]` or `(acts, meta)` pairs, in store order) through the SAE.

    Keys of top examples are global row numbers in iteration order.
    """
    tracker = TopKTracker(sae.d_sae, cfg.n_top)
    stats = FeatureStats(sae.d_sae, cfg.sketch)
    seen = 0
    limit = cfg.max_rows
    bar = tqdm(
        total=min(total or 0, limit or 1 << 62) or None, unit="tok", disable=cfg.quiet, desc="analyze real"
    )
    for item in batches:
        acts = item[0] if isinstance(item, (tuple, list)) else item
        if limit is not None and seen + acts.shape[0] > limit:
            acts = acts[: limit - seen]
        if acts.shape[0] == 0:
            break
        keys = torch.arange(seen, seen + acts.shape[0])
        encode_into(sae, acts, keys, tracker, stats)
        seen += acts.shape[0]
        bar.update(acts.shape[0])
        if limit is not None and seen >= limit:
            break
    bar.close()
    return RealPass(tracker, stats, seen)


def store_batches(folder, batch_size: int) -> Iterator[tuple[Tensor, dict]]:
    """Sequential `(acts, meta)` batches: the store's own iterator when saekit.data is available,
    else a direct shard reader (same order: shard by shard, row by row)."""
    try:
        from saekit.data.store import ActivationStore
    except ImportError:
        ActivationStore = None
    if ActivationStore is not None:
        yield from ActivationStore.open(folder).iter_rows_with_meta(batch_size)
        return
    rows = StoreRows(folder)
    for s in range(0, len(rows), batch_size):
        r = rows.read(torch.arange(s, min(s + batch_size, len(rows))))
        yield r.acts, {"doc_id": r.doc_id, "position": r.position, "token_id": r.token_id}


@dataclass
class Context:
    """Tokens around one top example with the feature's activation on each."""

    token_ids: list[int]
    activations: list[float]
    focus: int
    """Index of the top example inside the window."""


@torch.inference_mode()
def contexts_from_store(
    sae, rows: StoreRows, feature_rows: dict[int, list[int]], before: int, after: int, batch_size: int = 4096
) -> dict[int, list[Context]]:
    """For each feature's top rows, read the window (same document only) and re-encode it."""
    n = len(rows)
    windows: list[tuple[int, int, list[int]]] = []  # (feature, centre row, window rows)
    for f, rs in feature_rows.items():
        for r in rs:
            windows.append((f, r, list(range(max(0, r - before), min(n, r + after + 1)))))
    needed = sorted({r for _, _, w in windows for r in w})
    if not needed:
        return {f: [] for f in feature_rows}
    data = rows.read(needed)
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
        doc = int(data.doc_id[pos_of[centre]])
        w = [r for r in w if int(data.doc_id[pos_of[r]]) == doc]
        # keep the contiguous run through the centre (a document can be split into chunks)
        idx = [pos_of[r] for r in w]
        out[f].append(
            Context(
                token_ids=[int(data.token_id[i]) for i in idx],
                activations=[float(acts_NS[i, col_of[f]]) for i in idx],
                focus=w.index(centre),
            )
        )
    return out


def top_rows(rp: RealPass, features: list[int]) -> dict[int, list[int]]:
    return {f: [k for _, k in rp.tracker.examples(f)] for f in features}


def analyze_store(
    sae,
    store_folder,
    features_spec: str | list[int],
    cfg: RealConfig = RealConfig(),
    *,
    tokenizer=None,
    unembed=None,
    sae_path: str | None = None,
    prompt_scores=None,
) -> dict:
    """The whole `analyze real` on a store: pass, feature selection, contexts, logit effects -> JSON doc."""
    from saekit.analysis import report
    from saekit.analysis.features import resolve_features
    from saekit.analysis.logits import APPROXIMATION, logit_effects

    rows = StoreRows(store_folder)
    rp = real_pass(sae, store_batches(store_folder, cfg.batch_size), cfg, total=len(rows))
    st = rp.stats
    features = resolve_features(
        features_spec, sae.d_sae, firing_counts=st.count_F, prompt_scores=prompt_scores
    )
    ctx = contexts_from_store(
        sae, rows, top_rows(rp, features), cfg.context_before, cfg.context_after, cfg.batch_size
    )
    centre = rows.read([k for f in features for _, k in rp.tracker.examples(f)])
    man = rows.manifest
    doc = report.new_document(
        report.sae_info(sae, sae_path),
        {
            "kind": "store",
            "path": str(store_folder),
            "model": man.get("model"),
            "hook_point": man.get("hook_point"),
            "n_rows": rp.n_rows,
        },
        {
            "n_top": cfg.n_top,
            "context_before": cfg.context_before,
            "context_after": cfg.context_after,
            "batch_size": cfg.batch_size,
            "max_rows": cfg.max_rows,
            "sketch_alpha": cfg.sketch.alpha,
            "quantile_method": "log-bucket sketch, relative error <= alpha vs numpy inverted_cdf",
            "context_method": "stored rows re-encoded with the SAE (same document only)",
        },
    )
    freq = st.frequency()
    mean = st.mean_when_active()
    dead = (st.count_F == 0).nonzero().flatten().tolist()
    doc["summary"] = {
        "n_rows": rp.n_rows,
        "n_features": sae.d_sae,
        "n_dead": len(dead),
        "dead_features": dead,
        "n_selected": len(features),
        "sketch_alpha": cfg.sketch.alpha,
    }
    doc["all_features"] = {
        "frequency": [float(x) for x in freq.tolist()],
        "mean_when_active": [report.finite_or_none(x) for x in mean.tolist()],
        "max": [float(x) for x in st.max_F.tolist()],
    }
    qs = st.quantiles(list(QUANTILES), torch.tensor(features, dtype=torch.long)) if features else None
    effects = {}
    if unembed is not None and features:
        effects = {e.feature: e for e in logit_effects(sae.decoder_directions(), unembed, features)}

    def tok(i):
        return report.token_text(tokenizer, i)

    c = 0
    for fi, f in enumerate(features):
        examples = []
        for (val, row), cx in zip(rp.tracker.examples(f), ctx[f]):
            examples.append(
                {
                    "activation": val,
                    "row": row,
                    "doc_id": int(centre.doc_id[c]),
                    "position": int(centre.position[c]),
                    "token_id": int(centre.token_id[c]),
                    "token": tok(int(centre.token_id[c])),
                    "context": {
                        "tokens": [tok(t) for t in cx.token_ids],
                        "token_ids": cx.token_ids,
                        "activations": cx.activations,
                        "focus": cx.focus,
                    },
                }
            )
            c += 1
        edges, counts = st.histogram(f)
        le = effects.get(f)
        doc["features"][str(f)] = {
            "index": f,
            "stats": {
                "count": int(st.count_F[f]),
                "frequency": float(freq[f]),
                "mean_when_active": report.finite_or_none(mean[f]),
                "max": float(st.max_F[f]),
                "quantiles": {str(q): report.finite_or_none(qs[fi, j]) for j, q in enumerate(QUANTILES)},
            },
            "histogram": {"edges": edges, "counts": counts, "scale": "log"},
            "top_examples": examples,
            "logit_effects": None
            if le is None
            else {
                "approximation": APPROXIMATION,
                "promoted": [{"token_id": t, "token": tok(t), "effect": v} for t, v in le.promoted],
                "suppressed": [{"token_id": t, "token": tok(t), "effect": v} for t, v in le.suppressed],
            },
        }
    return doc
