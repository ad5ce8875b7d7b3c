"""Steering overhead: forward throughput of SmolLM2 (bf16) plain vs steered with each method (fp32 SAE).

Prints a table: tokens/s (median of repeats), ratio vs the plain forward measured in the same run,
and peak RSS. Usage: `python benchmarks/steer.py [--tokens 512] [--repeats 5] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=512, help="tokens per forward (batch 4 x tokens/4)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--d-sae", type=int, default=4608)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from saekit.models import load_model
    from saekit.sae import Provenance, SAEConfig, build
    from saekit.steer.apply import steer_sae
    from saekit.steer.methods import METHODS

    lm = load_model("smollm2", dtype="bfloat16")
    sae = build(
        SAEConfig(
            d_in=lm.d_model,
            d_sae=args.d_sae,
            arch="topk",
            k=32,
            provenance=Provenance(hook_point="model.layers.15"),
        ),
        seed=0,
    )
    ids = torch.randint(100, 40000, (4, args.tokens // 4), generator=torch.Generator().manual_seed(0))

    def timed(ctx_factory) -> float:
        times = []
        with torch.no_grad():
            for _ in range(args.repeats + 1):
                with ctx_factory():
                    t = time.perf_counter()
                    lm.model(input_ids=ids)
                    times.append(time.perf_counter() - t)
        return statistics.median(times[1:])

    import contextlib

    base = timed(contextlib.nullcontext)
    rows = [("plain", base)]
    for m in METHODS:
        rows.append((m, timed(lambda m=m: steer_sae(lm.model, sae, m, [7], 3.0))))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"SmolLM2 bf16, SAE fp32 d_sae={args.d_sae} at model.layers.15, {ids.numel()} tokens/forward, "
        f"{args.threads} threads, median of {args.repeats}; peak RSS {peak_mb:.0f} MiB"
    )
    print(f"{'method':<14}{'tok/s':>10}{'vs plain':>10}")
    for name, t in rows:
        print(f"{name:<14}{ids.numel() / t:>10.0f}{base / t:>10.2f}")


if __name__ == "__main__":
    main()
