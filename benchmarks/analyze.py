"""Throughput of `analyze real` vs an encode-only pass over the same store (target ratio <= 1.2).

Both passes read the same store with the same iterator and encode every row; the full pass also
keeps the exact top-N examples and the statistics sketch for ALL features (TopK SAEs in sparse form).
Prints tokens/s (median of --repeats), the ratio, and the analysis state's memory.

    python benchmarks/analyze.py                   # synthetic store, TopK + ReLU SAEs at SmolLM2 width
    python benchmarks/analyze.py --store S --sae P # a real store and SAE
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from saekit.analysis.real import RealConfig, real_pass, store_batches


def make_store(folder: Path, n: int, d: int) -> Path:
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    shards, rows = [], 32768
    for i, s in enumerate(range(0, n, rows)):
        m = min(rows, n - s)
        name = f"shard_{i:05d}.safetensors"
        save_file(
            {
                "acts": torch.randn(m, d, generator=g).to(torch.bfloat16),
                "doc_id": (torch.arange(s, s + m) // 256).int(),
                "position": (torch.arange(s, s + m) % 256).int(),
                "token_id": torch.randint(0, 49152, (m,), generator=g).int(),
            },
            str(folder / name),
        )
        shards.append({"file": name, "count": m})
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "complete": True,
                "dtype": "bfloat16",
                "model": "synthetic",
                "d": d,
                "count": n,
                "shards": shards,
            }
        )
    )
    return folder


@torch.inference_mode()
def encode_only(sae, store, batch_size: int) -> int:
    n = 0
    for acts, _ in store_batches(store, batch_size):
        if getattr(sae, "sparse_native", False):
            sae.encode_sparse(acts)
        else:
            sae.encode(acts)
        n += acts.shape[0]
    return n


def full(sae, store, batch_size: int, n_top: int) -> tuple[int, int]:
    rp = real_pass(sae, store_batches(store, batch_size), RealConfig(n_top=n_top, batch_size=batch_size))
    st, tr = rp.stats, rp.tracker
    state = sum(
        t.numel() * t.element_size()
        for t in (st.sum_F, st.max_F, st.sketch_FB, tr.values_FN, tr.keys_FN, tr.threshold_F)
    )
    return rp.n_rows, state


def bench(name: str, sae, store, args) -> None:
    enc, ful, state = [], [], 0
    encode_only(sae, store, args.batch_size)  # warm-up (page cache, allocator)
    for _ in range(args.repeats):  # interleaved so drift hits both equally
        t = time.perf_counter()
        n = encode_only(sae, store, args.batch_size)
        enc.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        n, state = full(sae, store, args.batch_size, args.n_top)
        ful.append(n / (time.perf_counter() - t))
    e, f = statistics.median(enc), statistics.median(ful)
    print(f"| {name:<28} | {n:>9,} | {e:>14,.0f} | {f:>14,.0f} | {e / f:>10.3f} | {state / 2**20:>9.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store")
    ap.add_argument("--sae")
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--d-in", type=int, default=576)
    ap.add_argument("--d-sae", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--n-top", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, top-{args.n_top}, "
        f"all features tracked; median of {args.repeats}"
    )
    print(
        "| SAE                          |    tokens | encode-only t/s | full analysis t/s | time ratio "
        "| state MiB |"
    )
    print(
        "|------------------------------|-----------|----------------|----------------|------------|-----------|"
    )
    if args.store:
        import saekit

        bench(f"{args.sae}", saekit.load(args.sae).eval(), args.store, args)
        return
    from saekit.sae import SAEConfig, build

    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "store", args.rows, args.d_in)
        for arch, k in (("topk", args.k), ("relu", None)):
            sae = build(SAEConfig(d_in=args.d_in, d_sae=args.d_sae, arch=arch, k=k), seed=0).eval()
            if arch == "relu":  # as sparse as a trained ReLU SAE: each feature fires on ~1% of rows
                with torch.no_grad():
                    x = torch.randn(2048, args.d_in, generator=torch.Generator().manual_seed(1))
                    pre = (x - sae.b_dec) @ sae.W_enc
                    sae.b_enc.copy_(-torch.quantile(pre, 0.99, dim=0))
            label = f"{arch} d_sae={args.d_sae}" + (f" k={k}" if k else "")
            bench(label, sae, store, args)


if __name__ == "__main__":
    main()
