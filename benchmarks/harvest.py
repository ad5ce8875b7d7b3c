"""Harvest throughput on SmolLM2: (a) bare forward truncated at the hook layer, (b) saekit harvest
writing shards, (c) full forward, (d) one harvest of several hook points (`--hook a,b,c`, one store
each, the deepest = the layer of (b)) -- in float32 and bfloat16, medians of a few repeats, measured
interleaved in one run, with the load average before and after.

Tokens/s count the real (non-padding) input tokens of the same contexts in every mode. Targets:
b/a >= 0.95 (harvest overhead = hooks + exclusions + shard writes + tokenisation + a tiny probe) and
d/b cost <= 1.2 (many hook points cost about one pass to the deepest).

A harvest has a fixed cost (tokenising the corpus slice, opening the store, the token table, closing
it: a fraction of a second) that a 2-batch harvest of 1,024 tokens weighs as heavily as the forward
itself, while the demo's 200k-token harvest does not feel it. So (b) is also run on a quarter of the
contexts, and the two give the harvest's steady per-token rate (the slope, `b steady`) and its fixed
cost in seconds; `b/a steady` compares that rate with the bare forward.

    python benchmarks/harvest.py [--batches 16] [--batch-size 4] [--repeats 3] [--dtypes float32 bfloat16]
        [--multi 5,10,15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--context-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--multi", default="5,10,15", help="layers of the multi-hook harvest (d)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)

    from saekit.models import cpu_has_fast_bf16

    rows = [measure(args, dtype) for dtype in args.dtypes]

    read_rows_per_s = store_read_speed(d=576)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"SmolLM2-135M, hook model.layers.{args.layer}, {args.batches * args.batch_size} contexts "
        f"x {args.context_len} tokens "
        f"({args.batch_size} per batch), {args.threads} threads, median of {args.repeats}; "
        f"CPU native bf16: {cpu_has_fast_bf16()}; (d) = hooks at layers {args.multi}"
    )
    print(
        f"{'dtype':<10}{'(a) trunc tok/s':>16}{'(b) harvest tok/s':>19}{'(c) full tok/s':>16}"
        f"{'b/a':>7}{'a/c':>7}{'d/b cost':>10}{'b steady tok/s':>16}{'b/a steady':>12}{'fixed s':>9}"
    )
    for dtype, a, b, c, ba, ac, db, steady, fixed in rows:
        print(f"{dtype:<10}{a:>16.1f}{b:>19.1f}{c:>16.1f}{ba:>7.3f}{ac:>7.2f}{db:>10.3f}"
              f"{steady:>16.1f}{steady / a:>12.3f}{fixed:>9.2f}")  # fmt: skip
    print(
        "store read (trainer path), 131072 rows x 576 float32 in 4 shards, batch 4096: "
        + ", ".join(f"{name} {v / 1e6:.2f} M rows/s" for name, v in read_rows_per_s.items())
    )
    print(f"peak RSS {peak_mib:.0f} MiB")
    load_after = os.getloadavg()
    print(
        "load average (1, 5, 15 min) before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + " / after "
        + ", ".join(f"{x:.2f}" for x in load_after)
    )


def measure(args, dtype: str) -> tuple:
    """Tokens/s of modes a-d for one dtype (interleaved repeats, medians)."""
    from saekit.data import keep_mask, load_corpus, tokenize_corpus
    from saekit.data.harvest import LMHarvestConfig, harvest
    from saekit.models import load_model

    n_ctx = args.batches * args.batch_size
    lm = load_model("smollm2", dtype=dtype, quiet=True)
    docs = load_corpus("shakespeare")
    tb = tokenize_corpus(docs, lm.tokenizer, args.context_len, max_tokens=(n_ctx + 4) * args.context_len)
    ids, mask = tb.token_id[:n_ctx], tb.mask[:n_ctx]
    real_tokens = int(mask.sum())
    keep = keep_mask(tb, special_ids=lm.tokenizer.all_special_ids)[:n_ctx]
    target = int(keep.sum())
    base = lm.model.model
    all_layers = base.layers

    def forward(truncate: bool) -> None:
        if truncate:
            base.layers = nn.ModuleList(list(all_layers)[: args.layer + 1])
        try:
            with torch.inference_mode():
                for s in range(0, n_ctx, args.batch_size):
                    (base if truncate else lm.model)(input_ids=ids[s : s + args.batch_size], use_cache=False)
        finally:
            base.layers = all_layers

    quarter = max(1, n_ctx // 4)
    target_q, real_q = int(keep[:quarter].sum()), int(mask[:quarter].sum())

    def run_harvest(hook: str = f"model.layers.{args.layer}", tokens: int = target) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = LMHarvestConfig(
                hook_point=hook,
                corpus="shakespeare",
                tokens=tokens,
                out=Path(tmp) / "acts",
                context_len=args.context_len,
                batch_size=args.batch_size,
                dtype=dtype,
                quiet=True,
                max_norm_ratio=0,
            )
            stores = harvest(cfg, loaded=lm)
            stores = stores if isinstance(stores, list) else [stores]
            assert all(len(st) == tokens for st in stores)

    forward(True)  # warm-up
    multi = ",".join(f"model.layers.{i}" for i in args.multi.split(","))
    times = {"a": [], "b": [], "c": [], "d": [], "bq": []}
    for _ in range(args.repeats):
        for key, fn in (
            ("a", lambda: forward(True)),
            ("b", run_harvest),
            ("c", lambda: forward(False)),
            ("d", lambda: run_harvest(multi)),
            ("bq", lambda: run_harvest(tokens=target_q)),
        ):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    tps = {k: real_tokens / statistics.median(v) for k, v in times.items() if k != "bq"}
    t_b, t_q = statistics.median(times["b"]), statistics.median(times["bq"])
    steady = (real_tokens - real_q) / max(t_b - t_q, 1e-9)  # tokens per second past the fixed cost
    fixed = t_b - real_tokens / steady
    return (
        dtype,
        tps["a"],
        tps["b"],
        tps["c"],
        tps["b"] / tps["a"],
        tps["a"] / tps["c"],
        tps["b"] / tps["d"],
        steady,
        fixed,
    )


def store_read_speed(
    d: int, rows: int = 131072, shard_rows: int = 32768, batch: int = 4096
) -> dict[str, float]:
    """Rows/s of ActivationStore.iter_batches, shuffled vs sequential (median of 3 passes)."""
    from saekit.data import ActivationStore, StoreWriter

    with tempfile.TemporaryDirectory() as tmp:
        w = StoreWriter(tmp, {"d": d}, shard_rows=shard_rows)
        g = torch.Generator().manual_seed(0)
        for _ in range(rows // shard_rows):
            w.add(
                torch.randn(shard_rows, d, generator=g),
                {"doc_id": torch.zeros(shard_rows, dtype=torch.int32)},
            )
        w.close()
        st = ActivationStore.open(tmp)
        out = {}
        for name, shuffle in (("shuffled", True), ("sequential", False)):
            times = []
            for seed in range(3):
                t0 = time.perf_counter()
                n = sum(x.shape[0] for x in st.iter_batches(batch, shuffle=shuffle, seed=seed))
                times.append(time.perf_counter() - t0)
            out[name] = n / statistics.median(times)
        return out


if __name__ == "__main__":
    main()
