"""Examples from every activation bucket, not only the top ones.

During the one streaming pass each feature keeps a uniform random sample of its firings (`pool`
of them): every firing gets a random priority and a `TopKTracker` keeps the `pool` largest, which is
a sample without replacement (bottom-k sampling), O(d_sae x pool) memory whatever the store size.
After the pass the feature's quantiles are known; the sampled firings are re-read from the source,
re-encoded (so the shown values are exact) and grouped into the quantile buckets
[min, p10), [p10, p25), ..., [p99, max]; each bucket shows up to `per_bucket` of them, spread over
the bucket (highest, middle, lowest). The top bucket is thin in a uniform sample (1% of it), so the
feature's top examples join the pool: the p99-max bucket then shows top examples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saekit.analysis.topk_merge import TopKTracker


class FiringSample:
    """A uniform sample of up to `pool` firing rows per feature, fed batch by batch."""

    def __init__(self, n_features: int, pool: int, seed: int = 0):
        self.tracker = TopKTracker(n_features, pool)
        self.g = torch.Generator().manual_seed(seed)

    def _priority(self, shape: torch.Size) -> Tensor:
        return torch.rand(shape, generator=self.g).clamp_min(1e-12)  # > 0: the tracker keeps only > 0

    def update_sparse(self, values_BK: Tensor, indices_BK: Tensor, keys_B: Tensor) -> None:
        pri = torch.where(values_BK.cpu() > 0, self._priority(values_BK.shape), torch.zeros(()))
        self.tracker.update_sparse(pri, indices_BK.cpu(), keys_B.cpu())

    def update_triples(self, feat_M: Tensor, val_M: Tensor, key_M: Tensor) -> None:
        self.tracker.update_triples(feat_M.cpu(), self._priority(val_M.shape), key_M.cpu())

    def rows(self, feature: int) -> list[int]:
        """The sampled rows of `feature`, in row order."""
        return sorted(k for _, k in self.tracker.examples(feature))


def _spread(items: list, n: int) -> list:
    """`n` items evenly spaced over a list sorted high to low (its first and last included)."""
    if len(items) <= n:
        return items
    if n == 1:
        return items[:1]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def bucket_examples(
    examples: list[dict], quantiles: dict[str, float | None], max_value: float, per_bucket: int
) -> list[dict]:
    """Group example entries (each with `activation`) into quantile buckets, top bucket first.

    `quantiles`: {"0.1": v, ...} as in the document's stats. Returns
    `[{q_lo, q_hi, lo, hi, examples: [...]}, ...]` (buckets with equal bounds are merged away)."""
    qs = sorted((float(q), v) for q, v in quantiles.items() if v is not None)
    top = float(max_value)  # sketch quantiles are approximate: keep them at or below the exact max
    bounds = [(0.0, 0.0)] + [(q, min(float(v), top)) for q, v in qs] + [(1.0, top)]
    out = []
    for i in range(len(bounds) - 1):
        (q_lo, lo), (q_hi, hi) = bounds[i], bounds[i + 1]
        if hi <= lo and i < len(bounds) - 2:
            continue
        last = i == len(bounds) - 2
        inside = [e for e in examples if lo <= e["activation"] and (e["activation"] < hi or last)]
        inside.sort(key=lambda e: -e["activation"])
        out.append({"q_lo": q_lo, "q_hi": q_hi, "lo": lo, "hi": hi, "examples": _spread(inside, per_bucket)})
    return out[::-1]


def add_bucket_examples(doc: dict, sae, source, sample: FiringSample, features, cfg, tokenizer) -> None:
    """`bucket_examples` for every selected feature: its sampled firings, re-read with their contexts
    (text sources only), and its top examples, grouped by the feature's quantiles (see module doc)."""
    from saekit.analysis import report
    from saekit.analysis.real import contexts_from_rows
    from saekit.analysis.real_doc import example_entry

    rows = {f: sample.rows(f) for f in features}
    ctx = contexts_from_rows(sae, source, rows, cfg.context_before, cfg.context_after, cfg.batch_size)
    centre = source.read([r for f in features for r in rows[f]])
    c = 0
    for f in features:
        entries = []
        for j, r in enumerate(rows[f]):
            cx = ctx[f][j]
            val = cx.activations[cx.focus]
            entries.append(example_entry(val, r, centre, c, cx, lambda t: report.token_text(tokenizer, t)))
            c += 1
        feat = doc["features"][str(f)]
        sampled = set(rows[f])
        entries += [e for e in feat.get("top_examples") or [] if e["row"] not in sampled]
        st = feat["stats"]
        feat["bucket_examples"] = bucket_examples(entries, st["quantiles"], st["max"], cfg.bucket_examples)
