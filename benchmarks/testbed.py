"""Cost of steering inside the testbed's denoising loop, vs unsteered sampling measured in the same run.

Prints a table: images/s (median of repeats), ratio vs unsteered, peak RSS. Uses a randomly
initialised default-size generator and SAE (speed does not depend on the weights).

    python benchmarks/testbed.py [--repeats 5] [--batch 200]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from saekit.sae import SAEConfig, build
from saekit.testbed.config import TestbedConfig
from saekit.testbed.features import class_features
from saekit.testbed.flow import sample
from saekit.testbed.model import FlowTransformer
from saekit.testbed.steering import make_edit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = TestbedConfig()
    model = FlowTransformer(cfg).eval()
    sae = build(
        SAEConfig(d_in=cfg.d_model, d_sae=cfg.sae_expansion * cfg.d_model, arch="topk", k=cfg.sae_k), seed=0
    )
    feats = class_features(sae, torch.randn(2000, cfg.d_model), torch.arange(2000) % 10)
    B = args.batch - args.batch % 10
    noise = torch.randn(B, cfg.n_image_tokens, cfg.patch**2)
    y = torch.arange(B) % 10
    s = torch.full((10, B // 10), 2.0)

    def run(method: str | None) -> float:
        edit = None
        if method:
            edit = make_edit(
                block=cfg.block_name("late"),
                stream="image",
                method=method,
                sae=sae,
                feats=feats,
                targets=list(range(10)),
                rows_per_target=B // 10,
                strengths_native=s,
                steps=set(range(cfg.sample_steps)),
            )
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            sample(model, noise, y, steps=cfg.sample_steps, guidance=cfg.guidance, edit=edit)
            times.append(time.perf_counter() - t)
        return B / statistics.median(times)

    base = run(None)
    rows = [("unsteered", base)] + [(m, run(m)) for m in ("additive", "surgery", "clamp", "boost_active")]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"testbed sampling, {cfg.sample_steps} Euler steps with CFG, batch {B}, 1 thread, "
        f"median of {args.repeats}"
    )
    print(f"{'edit':<14}{'images/s':>10}{'vs unsteered':>14}")
    for name, ips in rows:
        print(f"{name:<14}{ips:>10.1f}{ips / base:>14.2f}")
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
