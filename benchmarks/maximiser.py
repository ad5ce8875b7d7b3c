"""Synthetic maximisers vs the real max: before (random starts) and after (real starts) per feature,
and the activation-vs-perplexity trade-off of the fluency weight.

    python benchmarks/maximiser.py --analysis A --store S --sae P [--features 0,5] [--weights 0,0.05,0.2]

`A` is an analysis folder from `saekit analyze real` on store `S` (its top examples are the real
maxima and the real starts). Prints markdown tables; `--json` also writes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch


def _run(model, sae, hp, feat, cfg, tok, starts):
    from saekit.analysis.synthetic import maximise_feature

    real_max = feat["stats"]["max"]
    t = time.perf_counter()
    res = maximise_feature(
        model, sae, hp, feat["index"], cfg, tokenizer=tok, real_max=real_max, init_contexts=starts
    )
    best = res.sequences[0]
    start = max((s.start_activation or 0.0) for s in res.sequences)
    return {"ratio": best.activation / real_max, "start_ratio": start / real_max, "ppl": best.perplexity,
            "s": time.perf_counter() - t, "text": lm_text(tok, best.token_ids)}  # fmt: skip


def lm_text(tok, ids):
    return tok.decode(ids) if tok is not None else str(ids)


def main() -> None:
    import saekit
    from saekit.analysis import report
    from saekit.analysis.real_starts import real_starts
    from saekit.analysis.synthetic import SyntheticConfig
    from saekit.data.store import ActivationStore
    from saekit.models import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--analysis", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--features", default="")
    ap.add_argument("--weights", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--before", default="", help="features also run with the old random-start settings")
    ap.add_argument("--steps", type=int, default=0, help="override n_steps (0: the default)")
    ap.add_argument("--restarts", type=int, default=0, help="override restarts (0: the default)")
    a = ap.parse_args()
    doc = report.load(a.analysis)
    sae = saekit.load(a.sae).eval()
    store = ActivationStore.open(a.store)
    man = store.manifest
    lm = load_model(man["model"], dtype="float32")
    hp = man["hook_point"]
    keys = a.features.split(",") if a.features else list(doc["features"])
    before = SyntheticConfig(
        init="random", restarts=2, n_candidates=48, top_k_tokens=64, patience=1000, fluency_weight=0
    )
    after = SyntheticConfig(fluency_weight=0)
    if a.steps:
        after = dataclasses.replace(after, n_steps=a.steps)
    if a.restarts:
        after = dataclasses.replace(after, restarts=a.restarts)
    rows = []
    for k in keys:
        feat = doc["features"][k]
        if not feat["stats"]["max"]:
            continue
        starts = real_starts(
            feat,
            after.restarts,
            tokens=store.tokens,
            context_len=man.get("context_len"),
            prepend_bos=bool(man.get("prepend_bos")),
        )
        b = _run(lm.model, sae, hp, feat, before, lm.tokenizer, []) if k in a.before.split(",") else None
        f = _run(lm.model, sae, hp, feat, after, lm.tokenizer, starts)
        rows.append({"feature": int(k), "real_max": feat["stats"]["max"], "before": b, "after": f})
        bt = f"{b['ratio']:.2f} | {b['s']:.0f}" if b else "- | -"
        row = f"| {k} | {feat['stats']['max']:.3g} | {bt} | {f['start_ratio']:.2f} | {f['ratio']:.2f} "
        row += f"| {f['s']:.0f} |"
        print(row, repr(f["text"][-60:]), flush=True)
    ok = sum(r["after"]["ratio"] >= 1.0 for r in rows)
    print(
        f"after: {ok}/{len(rows)} features reach the real max; median ratio after "
        f"{statistics.median(r['after']['ratio'] for r in rows):.2f}"
    )
    curve = []
    for w in [float(x) for x in a.weights.split(",") if x]:
        cfg = SyntheticConfig(fluency_weight=w)
        res = []
        for r in rows:
            feat = doc["features"][str(r["feature"])]
            starts = real_starts(feat, cfg.restarts, tokens=store.tokens, context_len=man.get("context_len"))
            res.append(_run(lm.model, sae, hp, feat, cfg, lm.tokenizer, starts))
        med_r = statistics.median(x["ratio"] for x in res)
        med_p = statistics.median(x["ppl"] for x in res)
        curve.append({"fluency_weight": w, "median_ratio": med_r, "median_ppl": med_p})
        print(f"| {w:g} | {med_r:.2f} | {med_p:.0f} |", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "curve": curve, "threads": torch.get_num_threads()}, fh, indent=1)


if __name__ == "__main__":
    main()
