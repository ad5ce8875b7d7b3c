"""Row-wise top-k at TopK-training shapes: torch.topk (the reference) vs saekit's native CPU kernel.

The inputs are the real thing where a store is given (pre-activations `x_c W_enc + b_enc` of a freshly
initialised SAE on real rows: what the first steps select from), else Gaussian rows; fp32 (the exact
encoder) and bf16 (the screen's keys). Medians of `--repeats`, interleaved, with the load average.

    python benchmarks/topk.py [--data /work/data/demo/acts] [--batch 1024,4096] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from saekit.sae import native_topk


def _rows(data: str | None, batch: int, d_sae: int) -> torch.Tensor:
    if data is None:
        return torch.randn(batch, d_sae, generator=torch.Generator().manual_seed(0))
    from saekit.data.store import ActivationStore

    x = ActivationStore.open(data).sample(batch, seed=0).float()
    x = (x - x.mean(0)) / x.norm(dim=1).mean() * x.shape[1] ** 0.5
    W = torch.randn(x.shape[1], d_sae, generator=torch.Generator().manual_seed(1)) / x.shape[1] ** 0.5
    return x @ W


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--batch", default="1024,4096")
    ap.add_argument("--d-sae", type=int, default=9216)
    ap.add_argument("--k", type=int, default=36, help="k + the screen's margin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not native_topk.kernel():
        raise SystemExit("the native kernel could not be built here (see the warning above)")
    print(f"load average before {os.getloadavg()[0]:.2f}; {args.threads} threads; k={args.k}")
    print(f"{'batch':>6s} {'dtype':>9s} {'torch.topk ms':>14s} {'native ms':>10s} {'speed-up':>9s}  same set")
    for batch in (int(b) for b in args.batch.split(",")):
        base = _rows(args.data, batch, args.d_sae)
        for dt in (torch.float32, torch.bfloat16):
            x = base.to(dt)
            ref = x.topk(args.k, dim=-1, sorted=False)
            got = native_topk.topk_rows(x, args.k)
            same = torch.equal(native_topk._ranked(ref.values), native_topk._ranked(got[0]))
            t_ref, t_nat = [], []
            n = args.repeats // 2 + 1
            for _ in range(2):  # interleaved halves: drift in load hits both alike
                t_ref += _time(lambda x=x: x.topk(args.k, dim=-1, sorted=False), n)
                t_nat += _time(lambda x=x: native_topk.topk_rows(x, args.k), n)
            a, b = statistics.median(t_ref) * 1e3, statistics.median(t_nat) * 1e3
            name = str(dt).removeprefix("torch.")
            print(f"{batch:6d} {name:>9s} {a:14.1f} {b:10.1f} {a / b:8.2f}x  {same}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
