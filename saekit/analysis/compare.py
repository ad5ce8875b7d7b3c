"""`analyze compare`: real vs synthetic per feature.

For each feature with both parts in the analysis document:
* `ratio_to_real_max`: best synthetic activation / largest activation seen in real data (> 1 means
  the optimiser pushed the feature beyond anything in the corpus);
* `ratio_to_real_start`: the same against the best real context *recomputed by the maximiser's own
  forward* (the like-with-like real max: a store harvested in bf16, in batches, differs from a
  float32 single-sequence forward by ~1%); >= 1 by construction at fluency weight 0;
* `focus_token_overlap`: Jaccard overlap between the token ids of the synthetic sequences and the
  tokens *at which* the real top examples fire (the focus tokens);
* `context_token_overlap`: the same against every token of the real top contexts;
* `last_token_in_real_focus`: fraction of synthetic sequences whose last token (where the feature is
  read) is one of the real focus tokens.
"""

from __future__ import annotations

from saekit.errors import SaekitError


def _jaccard(a: set, b: set) -> float | None:
    return len(a & b) / len(a | b) if (a or b) else None


def compare_feature(feat: dict) -> dict:
    """Comparison metrics for one feature entry of the analysis document."""
    syn = feat.get("synthetic")
    if syn is None or "top_examples" not in feat:
        raise SaekitError(
            f"feature {feat.get('index')}: compare needs both `analyze real` and `analyze synthetic` results"
        )
    real_max = feat["stats"]["max"]
    seqs = syn["sequences"]
    best = seqs[0]["activation"] if seqs else 0.0
    focus = {e["token_id"] for e in feat["top_examples"]}
    context = {t for e in feat["top_examples"] for t in e["context"]["token_ids"]}
    syn_tokens = {t for s in seqs for t in s["token_ids"]}
    last = [s["token_ids"][-1] for s in seqs]
    rand = syn.get("random_activations") or []
    real_starts = [s["start_activation"] for s in seqs if str(s.get("start", "")).startswith("real")]
    real_starts = [a for a in real_starts if a is not None]
    start = max(real_starts) if real_starts else None
    return {
        "real_max": real_max,
        "synthetic_best": best,
        "ratio_to_real_max": best / real_max if real_max > 0 else None,
        "real_start_activation": start,
        "ratio_to_real_start": best / start if start else None,
        "random_max": max(rand) if rand else None,
        "focus_token_overlap": _jaccard(syn_tokens, focus),
        "context_token_overlap": _jaccard(syn_tokens, context),
        "last_token_in_real_focus": sum(t in focus for t in last) / len(last) if last else None,
    }


def compare_document(doc: dict) -> dict[str, dict]:
    """Add `comparison` to every feature that has both parts; returns {feature: comparison}."""
    out = {}
    for key, feat in doc["features"].items():
        if "synthetic" in feat and "top_examples" in feat:
            feat["comparison"] = compare_feature(feat)
            out[key] = feat["comparison"]
    if not out:
        raise SaekitError(
            "no feature has both real and synthetic results; run `analyze real` and `analyze synthetic` "
            "with the same --out and --features first"
        )
    return out
