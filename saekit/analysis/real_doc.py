"""The `analyze real` part of the analysis document, from a finished pass (see report.py for the schema).

Text sources give each top example its token and context window; image and diffusion sources (no
`token_id`) give `context: null` and, where the rows carry them, `step` and `timestep`; diffusion
features also get `timesteps` (per-step series, see timesteps.py).
"""

from __future__ import annotations

import torch

from saekit.analysis import report
from saekit.analysis.real import QUANTILES, RealConfig, RealPass
from saekit.analysis.store_rows import Rows, RowSource


def _source_info(source: RowSource, rp: RealPass) -> dict:
    man = source.manifest
    info = {
        "kind": getattr(source, "kind", "store"),
        "path": str(getattr(source, "folder", "") or "") or None,
        "model": man.get("model"),
        "hook_point": man.get("hook_point"),
        "n_rows": rp.n_rows,
    }
    if "corpus" in man and info["kind"] == "corpus":
        info["corpus"] = man["corpus"]
    return info


def example_entry(val: float, row: int, centre: Rows, c: int, cx, tok) -> dict:
    ex = {"activation": val, "row": row, "doc_id": int(centre.doc_id[c]), "position": int(centre.position[c])}
    for name in ("step", "timestep"):
        if name in centre.meta:
            v = centre.meta[name][c]
            ex[name] = float(v) if v.is_floating_point() else int(v)
    if "token_id" in centre.meta:
        t = int(centre.token_id[c])
        ex["token_id"], ex["token"] = t, tok(t)
    ex["context"] = (
        None
        if cx is None
        else {
            "tokens": [tok(t) for t in cx.token_ids],
            "token_ids": cx.token_ids,
            "activations": cx.activations,
            "focus": cx.focus,
        }
    )
    return ex


def _logit_entry(le, tok) -> dict | None:
    from saekit.analysis.logits import APPROXIMATION

    if le is None:
        return None
    return {
        "approximation": APPROXIMATION,
        "promoted": [{"token_id": t, "token": tok(t), "effect": v} for t, v in le.promoted],
        "suppressed": [{"token_id": t, "token": tok(t), "effect": v} for t, v in le.suppressed],
    }


def build_document(
    sae, source: RowSource, rp: RealPass, features: list[int], ctx, centre: Rows, cfg: RealConfig,
    tokenizer, unembed, sae_path,
) -> dict:  # fmt: skip
    """The analysis document of one pass: summary and arrays for all features, entries for `features`."""
    from saekit.analysis.logits import logit_effects

    doc = report.new_document(report.sae_info(sae, sae_path), _source_info(source, rp), _config(cfg, ctx))
    st = rp.stats
    freq, mean = st.frequency(), st.mean_when_active()
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

    def tok(i: int) -> str:
        return report.token_text(tokenizer, i)

    c = 0
    for fi, f in enumerate(features):
        examples = []
        for j, (val, row) in enumerate(rp.tracker.examples(f)):
            examples.append(example_entry(val, row, centre, c, None if ctx is None else ctx[f][j], tok))
            c += 1
        edges, counts = st.histogram(f)
        entry = {
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
            "logit_effects": _logit_entry(effects.get(f), tok),
        }
        if rp.steps is not None:
            entry["timesteps"] = rp.steps.feature(f)
        doc["features"][str(f)] = entry
    return doc


def _config(cfg: RealConfig, ctx) -> dict:
    return {
        "n_top": cfg.n_top,
        "context_before": cfg.context_before,
        "context_after": cfg.context_after,
        "batch_size": cfg.batch_size,
        "max_rows": cfg.max_rows,
        "sketch_alpha": cfg.sketch.alpha,
        "bucket_examples": cfg.bucket_examples,
        "bucket_pool": cfg.bucket_pool,
        "n_nearest": cfg.n_nearest,
        "quantile_method": "log-bucket sketch, relative error <= alpha vs numpy inverted_cdf",
        "context_method": "rows re-encoded with the SAE (same document only)"
        if ctx is not None
        else "none: the source has no tokens (image rows)",
    }
