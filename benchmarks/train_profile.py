"""Per-phase profile of one TopK SAE training step, as the trainer runs it.

Builds a `Trainer`, starts its run and batch stream, then runs the trainer's own step
(`saekit.train.step.train_step`: forward with the dead mask, backward, decoder-gradient projection, Adam,
decoder renormalisation, dead-latent bookkeeping) under `torch.profiler`; the step labels its phases
itself, so what is profiled is what trains. The encoder's own labels (`saekit.encoder_matmul`,
`saekit.topk`, ... in `saekit.sae.screened_topk` / `screened`) split the forward; the autograd node of
the sparse kernel and the gradient accumulation split the backward. Times are ms per step (median over
steps, the configurations interleaved step by step) and % of the step.

    python benchmarks/train_profile.py --data /work/data/demo/acts --batch 1024,4096 --encoder exact,screened

`--decoder-step fused,torch` runs each configuration twice: with the one-pass C decoder step
(`saekit.train.fused_decoder`, the default where it builds) and with torch's projection, Adam and renorm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from saekit.train import TrainConfig
from saekit.train.step import PHASES

TOP = ("data",) + PHASES
NESTED = {
    "forward": (
        "saekit.encoder_matmul",
        "saekit.screen",
        "saekit.rescore",
        "saekit.topk",
        "saekit.aux_select",
        "saekit.screen_check",
    ),
    "backward": ("_TopKFunctionBackward", "_ScreenedTopKBackward", "torch::autograd::AccumulateGrad"),
}


def make_trainer(data: str, batch: int, encoder: str, prefetch: int):
    from saekit.train import TensorSource, TrainConfig, Trainer

    if data == "synthetic":
        import sys

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from train_methods import make_synthetic

        source = TensorSource(make_synthetic(40_000))
    else:
        from saekit.train.source import open_source

        source = open_source(data)
    cfg = TrainConfig.flat(
        arch="topk", k=32, d_sae=9216, batch_size=batch, quiet=True, init_sample=4096, encoder=encoder,
        prefetch=prefetch,
    )  # fmt: skip
    return Trainer(cfg, source, out=tempfile.mkdtemp())


class Run:
    """One configuration (batch, encoder): the trainer's own run state, step and batch stream."""

    def __init__(self, data: str, batch: int, encoder: str, dead_frac: float, prefetch: int,
                 decoder_step: str = "fused"):  # fmt: skip
        self.batch, self.encoder, self.decoder_step = batch, encoder, decoder_step
        self.tr = make_trainer(data, batch, encoder, prefetch)
        self.run = self.tr._start()
        self.run.sae.train()
        if dead_frac > 0:  # force that fraction dead (aux-k on), as late in a run with dead latents
            tracker = self.run.tracker
            n = int(dead_frac * self.tr.d_sae)
            tracker.threshold = 10**15
            tracker.since_fired[torch.randperm(self.tr.d_sae)[:n]] = 10**16
        self._stream = self.tr._batch_stream(0)
        self.batches = iter(self._stream.__enter__())
        self.samples: list[dict[str, float]] = []

    def close(self) -> None:
        self._stream.__exit__(None, None, None)

    def _once(self) -> None:
        from saekit.train import fused_decoder

        with record_function("saekit.data"):
            x = next(self.batches)
        kernel = fused_decoder.kernel()
        if self.decoder_step == "torch":
            fused_decoder._kernel = False  # this configuration takes torch's three calls
        try:
            self.tr._step(self.run, self.run.sae, x)
        finally:
            fused_decoder._kernel = kernel

    def step(self, profiled: bool) -> None:
        if not profiled:
            self._once()
            return
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            self._once()
            wall = time.perf_counter() - t0
        totals = {"step": 1000 * wall}
        for ev in prof.key_averages():
            totals[ev.key.removeprefix("saekit.") if ev.key.removeprefix("saekit.") in TOP else ev.key] = (
                ev.cpu_time_total / 1000
            )
        self.samples.append(totals)

    def medians(self) -> dict[str, float]:
        keys = set().union(*self.samples)
        return {k: statistics.median(s.get(k, 0.0) for s in self.samples) for k in keys}


def print_profile(batch: int, encoder: str, t: dict[str, float], decoder_step: str = "fused") -> None:
    step = t["step"]
    print(f"\nbatch {batch}, encoder {encoder}, decoder step {decoder_step}: {step:.1f} ms/step = "
          f"{batch / step * 1000:.0f} tok/s")
    for phase in TOP:
        ms = t.get(phase, 0.0)
        print(f"  {phase:34s} {ms:8.1f} ms {100 * ms / step:5.1f}%")
        for sub in NESTED.get(phase, ()):
            if sub in t:
                print(f"    {sub:32s} {t[sub]:8.1f} ms {100 * t[sub] / step:5.1f}%")
    rest = step - sum(t.get(p, 0.0) for p in TOP)
    print(f"  {'(loop, profiler)':34s} {rest:8.1f} ms {100 * rest / step:5.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="synthetic", help="`synthetic` or an activation store folder")
    ap.add_argument("--batch", default="1024,4096")
    ap.add_argument("--encoder", default="exact,screened")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--decoder-step", default="fused", help="fused, torch, or both: fused,torch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dead-frac", type=float, default=0.0, help="force this fraction of latents dead")
    ap.add_argument("--prefetch", type=int, default=None, help="batches read ahead (default: the trainer's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for batch in map(int, args.batch.split(",")):
        pf = args.prefetch if args.prefetch is not None else TrainConfig.prefetch
        runs = [
            Run(args.data, batch, e, args.dead_frac, pf, d)
            for e in args.encoder.split(",")
            for d in args.decoder_step.split(",")
        ]
        for i in range(args.warmup + args.steps):  # interleaved, so load from others hits all alike
            for run in runs:
                run.step(profiled=i >= args.warmup)
        for run in runs:
            run.close()
            print_profile(batch, run.encoder, run.medians(), run.decoder_step)
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
