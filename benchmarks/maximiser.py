"""Synthetic maximisers vs the real max, per feature, at a given budget (fluency weight 0).

    python benchmarks/maximiser.py --analysis A --store S --sae P [--features 329,855] [--steps 20]
        [--restarts 1] [--seq-len 8] [--n-candidates 32] [--dtype float32] [--json out.json]

`A` is an analysis folder from `saekit analyze real` on store `S` (its top examples are the real
maxima and, with the store's token table, the real starts). Per feature it prints the store's real
max, the start's activation (the best real context recomputed by the search's own forward: the
like-with-like real max), the synthetic best, both ratios and the wall time, then the distribution.
Run it from an older checkout (same flags) to get the "before" column.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import time

import torch


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--analysis", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--features", default="", help="comma-separated (default: every analysed feature)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=0, help="0: the SyntheticConfig default")
    ap.add_argument("--n-candidates", type=int, default=0, help="0: the SyntheticConfig default")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--best-suffix", action="store_true", help="SyntheticConfig.best_suffix")
    ap.add_argument("--json", default="")
    return ap.parse_args()


def _config(a: argparse.Namespace):
    from saekit.analysis.synthetic import SyntheticConfig

    over = {"fluency_weight": 0.0, "n_steps": a.steps, "restarts": a.restarts}
    if a.seq_len:
        over["seq_len"] = a.seq_len
    if a.n_candidates:
        over["n_candidates"] = a.n_candidates
    if a.best_suffix:
        over["best_suffix"] = True
    return dataclasses.replace(SyntheticConfig(), **over)


def maximise_timed(lm, sae, hp, feat, cfg, starts):
    """(result, seconds) of one feature's maximiser from `starts` (shared with fluency_curve)."""
    from saekit.analysis.synthetic import maximise_feature

    t = time.perf_counter()
    res = maximise_feature(
        lm.model, sae, hp, feat["index"], cfg, tokenizer=lm.tokenizer, real_max=feat["stats"]["max"],
        init_contexts=starts,
    )  # fmt: skip
    return res, time.perf_counter() - t


def _row(lm, sae, hp, feat, cfg, starts) -> dict:
    real_max = feat["stats"]["max"]
    res, seconds = maximise_timed(lm, sae, hp, feat, cfg, starts)
    best = res.sequences[0]
    start = max((s.start_activation or 0.0) for s in res.sequences)
    return {
        "feature": feat["index"],
        "real_max": real_max,
        "start": start,
        "synthetic": best.activation,
        "ratio": best.activation / real_max,
        "ratio_to_start": best.activation / start if start > 0 else None,
        "start_ratio": start / real_max,
        "s": seconds,
        "text": lm.tokenizer.decode(best.token_ids[-12:]),
    }


def open_setup(analysis: str, sae_path: str, store_path: str, model_dtype: str):
    """(analysis doc, SAE, store, the store's model) for a maximiser benchmark (shared with fluency_curve)."""
    import saekit
    from saekit.analysis import report
    from saekit.data.store import ActivationStore
    from saekit.models import load_model

    store = ActivationStore.open(store_path)
    lm = load_model(store.manifest["model"], dtype=model_dtype, quiet=True)
    return report.load(analysis), saekit.load(sae_path).eval(), store, lm


def starts_for(feat: dict, n: int, store, lm) -> list:
    """The feature's `n` best real contexts as the model saw them (BOS as the harvest added it)."""
    from saekit.analysis.real_starts import real_starts

    man = store.manifest
    return real_starts(
        feat, n, tokens=store.tokens, context_len=man.get("context_len"),
        prepend_bos=bool(man.get("prepend_bos")), bos_id=getattr(lm.tokenizer, "bos_token_id", None),
    )  # fmt: skip


def main() -> None:
    a = _args()
    doc, sae, store, lm = open_setup(a.analysis, a.sae, a.store, a.dtype)
    man = store.manifest
    cfg = _config(a)
    keys = a.features.split(",") if a.features else list(doc["features"])
    print(f"threads {torch.get_num_threads()}, load {subprocess.getoutput('uptime')}")
    print("| feature | real max (store) | start / real | synthetic / real | synthetic / start | s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for k in keys:
        feat = doc["features"][k]
        if not feat["stats"]["max"]:
            continue
        starts = starts_for(feat, cfg.restarts, store, lm)
        r = _row(lm, sae, man["hook_point"], feat, cfg, starts)
        rows.append(r)
        rs = "-" if r["ratio_to_start"] is None else f"{r['ratio_to_start']:.3f}"
        cells = f"| {k} | {r['real_max']:.3g} | {r['start_ratio']:.3f} | {r['ratio']:.3f} | {rs} |"
        print(f"{cells} {r['s']:.0f} |", repr(r["text"]), flush=True)
    ratios = [r["ratio"] for r in rows]
    print(
        f"{sum(x >= 1.0 for x in ratios)}/{len(rows)} features reach the store's real max; "
        f"{sum((r['ratio_to_start'] or 0) >= 1.0 for r in rows)}/{len(rows)} reach their start; ratio "
        f"median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}; "
        f"total {sum(r['s'] for r in rows):.0f} s; load {subprocess.getoutput('uptime')}"
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"config": dataclasses.asdict(cfg), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
