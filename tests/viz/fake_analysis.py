"""A synthetic analysis.json (schema of saekit/analysis/report.py), built without a model."""

from __future__ import annotations

EVIL_SCRIPT = "<script>alert(1)</script>"
EVIL_IMG = '"><img src=x onerror=alert(1)>'
EVIL_FEATURE = 7
"""The feature whose top context holds both attack strings (as one corpus line)."""
SEARCH_WORD = "quokka"
"""A word that occurs in exactly one feature's contexts (SEARCH_FEATURE)."""
SEARCH_FEATURE = 4321
WORDS = ["the", " sea", " and", " king", " of", " light", " Lord", " said", ",", " thou", "\n", " art"]


def _feature(j: int, rng, n_rows: int, n_top: int) -> dict:
    import math

    mx = float(rng.uniform(1.0, 20.0))
    edges = [mx * 2 ** (-(12 - i) / 2) for i in range(13)]  # 12 log-spaced bins up to the max
    counts = [int(rng.integers(0, 50)) for _ in range(12)]
    count = sum(counts)
    examples = []
    for e in range(n_top):
        act = mx * (1 - 0.05 * e)
        toks = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), 9)]
        if j == SEARCH_FEATURE and e == 0:
            toks[3] = " " + SEARCH_WORD
        if j == EVIL_FEATURE and e == 0:
            toks[2:5] = [" " + EVIL_SCRIPT, " and ", EVIL_IMG]
        acts = [0.0] * 9
        acts[4], acts[3], acts[6] = act, act * 0.4, act * 0.1
        examples.append(
            {
                "activation": act,
                "row": 1000 * e + j,
                "doc_id": e,
                "position": 4,
                "token_id": 100 + e,
                "token": toks[4],
                "context": {"tokens": toks, "token_ids": list(range(9)), "activations": acts, "focus": 4},
            }
        )
    qs = {str(q): edges[max(0, min(11, int(q * 12)))] for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)}
    mean = mx / math.e
    return {
        "index": j,
        "stats": {
            "count": count,
            "frequency": count / n_rows,
            "mean_when_active": mean,
            "max": mx,
            "quantiles": qs,
        },
        "histogram": {"edges": edges, "counts": counts, "scale": "log"},
        "top_examples": examples,
        "logit_effects": {
            "approximation": "direct path",
            "promoted": [
                {"token_id": 1, "token": " sea", "effect": 0.9},
                {"token_id": 2, "token": EVIL_SCRIPT, "effect": 0.5},
            ],
            "suppressed": [{"token_id": 3, "token": " land", "effect": -0.7}],
        },
    }


def _bucket_example(act: float, word: str) -> dict:
    ctx = {
        "tokens": ["the", word, " sea"],
        "token_ids": [1, 2, 3],
        "activations": [0.0, act, 0.0],
        "focus": 1,
    }
    return {
        "activation": act,
        "row": 5,
        "doc_id": 0,
        "position": 1,
        "token_id": 2,
        "token": word,
        "context": ctx,
    }


def make_analysis_doc(n_features: int, n_analysed: int | None = None, n_top: int = 5, seed: int = 0) -> dict:
    """An analysis document with `n_features` features, the first `n_analysed` (default all) analysed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_rows = 100_000
    n_analysed = n_features if n_analysed is None else n_analysed
    feats = {str(j): _feature(j, rng, n_rows, n_top) for j in range(n_analysed)}
    for j in (EVIL_FEATURE, SEARCH_FEATURE):
        if j < n_features and str(j) not in feats:
            feats[str(j)] = _feature(j, rng, n_rows, n_top)
    freq = [float(rng.uniform(0, 0.05)) for _ in range(n_features)]
    mx = [float(rng.uniform(0.5, 20)) for _ in range(n_features)]
    for k, f in feats.items():
        freq[int(k)], mx[int(k)] = f["stats"]["frequency"], f["stats"]["max"]
    if "1" in feats:  # store-wide samples per quantile bucket, as a newer analysis may write them
        f1 = feats["1"]
        f1["bucket_examples"] = [
            {
                "lo": 0.1,
                "hi": 0.5,
                "q_lo": 0.0,
                "q_hi": 0.5,
                "examples": [_bucket_example(0.3, " lowbucketword")],
            },
            {
                "lo": 0.5,
                "hi": 2.0,
                "q_lo": 0.5,
                "q_hi": 1.0,
                "examples": [_bucket_example(1.5, " highbucketword")],
            },
        ]
    if str(EVIL_FEATURE) in feats:  # hostile text in a bucket example too
        feats[str(EVIL_FEATURE)]["bucket_examples"] = [
            {"lo": 0.1, "hi": 9.0, "q_lo": 0.0, "q_hi": 1.0, "examples": [_bucket_example(0.7, EVIL_IMG)]}
        ]
    if "3" in feats:
        feats["3"]["nearest"] = [{"feature": 5, "cosine": 0.9}, {"feature": 6, "cosine": 0.8}]
    f0 = feats.get("0")
    if f0 is not None:
        f0["synthetic"] = {
            "real_max": f0["stats"]["max"],
            "objective": "SAE pre-activation at the last token",
            "sequences": [
                {
                    "tokens": ["the", " sea"],
                    "text": "the sea",
                    "activation": f0["stats"]["max"] * 1.2,
                    "ratio_to_real_max": 1.2,
                    "perplexity": 40.0,
                }
            ],
            "random_activations": [0.1, 0.2],
            "trajectories": [[0.1, 0.5]],
        }
        f0["comparison"] = {"ratio_to_real_max": 1.2}
    return {
        "schema_version": 1,
        "format": "saekit.analysis",
        "sae": {"path": "runs/my sae", "arch": "topk", "d_in": 16, "d_sae": n_features, "k": 4},
        "source": {"kind": "store", "model": "smollm2", "hook_point": "model.layers.15", "n_rows": n_rows},
        "config": {},
        "summary": {
            "n_rows": n_rows,
            "n_features": n_features,
            "n_dead": 0,
            "dead_features": [],
            "n_selected": len(feats),
        },
        "all_features": {"frequency": freq, "mean_when_active": [m / 3 for m in mx], "max": mx},
        "features": feats,
    }
