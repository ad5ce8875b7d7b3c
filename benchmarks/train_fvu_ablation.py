"""Which training choice makes saekit's FVU differ from sparsify's at the same tokens (issue 15, item 3).

Runs one variant per process on the real-data setup of `train_throughput.py` (same rows, order and LR
schedule) and prints held-out FVU and never-firing latents. Variants change one thing each:

- `default`: saekit's trainer as shipped; `sparsify`: sparsify 1.3.3 (run with its venv's python);
- `norm_none`: no input normalisation (biases then move in raw units, as in sparsify);
- `encscale<s>`: the tied encoder initialised at `s` x the decoder (sparsify's nn.Linear init gives rows
  of norm ~0.577, so Adam's per-step change is 1.7x larger relative to the weights);
- `lr<f>`: peak LR times f; `bdec_mean`: b_dec from the sample mean; `aux10M`: sparsify's 10M-token
  dead threshold (aux-k then never runs in a short run); `screened`: the screened encoder.

    python benchmarks/train_fvu_ablation.py --epochs 1 default norm_none encscale0.577 lr3
    /work/venvs/sparsify/bin/python benchmarks/train_fvu_ablation.py --epochs 1 sparsify
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_methods as tm  # noqa: E402

OVERRIDES = {
    "default": {},
    "norm_none": {"normalization": "none"},
    "bdec_mean": {"b_dec_init": "mean"},
    "aux10M": {"dead_tokens": 10_000_000},
}


def scaled_encoder_init(scale: float) -> None:
    """Patch the initialiser so the tied encoder starts at `scale` x the decoder transpose."""
    import saekit.sae.init as init

    original = init.reset_parameters_

    def patched(sae, generator=None):
        original(sae, generator)
        with torch.no_grad():
            sae.W_enc.mul_(scale)

    init.reset_parameters_ = patched


def run_variant(name: str, setup: tm.Setup, train, held) -> dict:
    if name == "sparsify":
        return tm.run_sparsify(setup, train, held)
    if name == "screened":
        return tm.run_saekit(setup, train, held, "screened")
    if name.startswith("encscale"):
        scaled_encoder_init(float(name.removeprefix("encscale")))
        return tm.run_saekit(setup, train, held, "exact")
    if name.startswith("lr"):
        return tm.run_saekit(setup, train, held, "exact", lr=tm.peak_lr(setup) * float(name[2:]))
    return tm.run_saekit(setup, train, held, "exact", **OVERRIDES[name])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--data", default="/work/data/demo/acts")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setup = tm.Setup(args.data, 1024, args.epochs, 5, None, "saekit")
    train, held = tm.load_rows(setup)
    for name in args.variants:
        t0 = time.time()
        rec = run_variant(name, setup, train, held)
        rec.update(variant=name, epochs=args.epochs, wall_s=time.time() - t0, load=os.getloadavg()[0])
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
