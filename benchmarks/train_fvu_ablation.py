"""Which training choice makes saekit's FVU differ from sparsify's at the same tokens (issue 15, item 3).

Runs variants on the real-data setup of `train_throughput.py` (same rows, order and LR schedule) and
prints held-out FVU and never-firing latents, one JSON line per variant. A variant is `base+change+...`
with base `saekit` (the trainer as shipped) or `sparsify` (sparsify 1.3.3's SparseCoder with Adam; run
with its venv's python), each change one knob:

- saekit: `norm_none` (raw inputs, as sparsify), `bdec_mean` / `bdec_zeros`, `aux10M` (sparsify's
  10M-token dead threshold: aux-k never runs in a short run), `aux0` (no aux-k), `auxc<c>` (aux-k
  weight c), `auxk<n>` (n dead latents per row in aux-k), `dead<n>` (dead after n
  rows), `encscale<s>` (tied encoder initialised at s x the decoder; sparsify's nn.Linear init gives rows
  of norm ~0.577), `untied`, `lr<f>` (peak LR x f), `warm<n>` (LR warm-up steps), `decay<f>` (LR decay
  starts at fraction f of the run), `screened`, `enclr<f>` (encoder LR x f), and the revival knobs
  (`saekit.train.revive`): `revt<n>` (dormant after n rows), `rs<n>` (resample every n steps; 0 = off),
  `rsenc<s>` (resampled encoder at s x the live norm), `rsuntil<f>` (resample before fraction f),
  `revb<s>` (dormant encoder-bias step; 0 = off);
- sparsify: `encscale<s>` (its encoder rows rescaled to norm s at init), `dead<n>`, `lr<f>`.

    python benchmarks/train_fvu_ablation.py --epochs 1 saekit saekit+norm_none saekit+encscale0.577
    /work/venvs/sparsify/bin/python benchmarks/train_fvu_ablation.py --epochs 1 sparsify sparsify+dead18900
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

FLAGS = {
    "norm_none": {"normalization": "none"},
    "bdec_mean": {"b_dec_init": "mean"},
    "bdec_zeros": {"b_dec_init": "zeros"},
    "aux10M": {"dead_tokens": 10_000_000},
    "aux0": {"aux_k_coefficient": 0.0},
    "untied": {"init_tied": False},
}
NUMERIC = {  # prefix -> (TrainConfig field, converter)
    "dead": ("dead_tokens", int),
    "warm": ("lr_warmup_steps", int),
    "decay": ("lr_decay_start", float),
    "encscale": ("init_encoder_scale", float),
    "auxc": ("aux_k_coefficient", float),
    "auxk": ("aux_k", int),
    "enclr": ("encoder_lr_scale", float),
    "revt": ("revive_tokens", int),
    "revb": ("revive_bias_step", float),
    "rsenc": ("resample_encoder_scale", float),
    "rsuntil": ("resample_until", float),
    "rs": ("resample_every", int),
}


def saekit_overrides(changes: list[str], setup: tm.Setup) -> tuple[dict, str]:
    """TrainConfig overrides and the encoder for a list of saekit changes."""
    kw: dict = {}
    encoder = "exact"
    for c in changes:
        if c in FLAGS:
            kw.update(FLAGS[c])
        elif c == "screened":
            encoder = "screened"
        elif c.startswith("lr"):
            kw["lr"] = tm.peak_lr(setup) * float(c[2:])
        else:
            prefix = next((p for p in NUMERIC if c.startswith(p)), None)
            if prefix is None:
                raise SystemExit(f"unknown saekit change {c!r}")
            field, conv = NUMERIC[prefix]
            kw[field] = conv(c.removeprefix(prefix))
    return kw, encoder


def run_variant(name: str, setup: tm.Setup, train, held) -> dict:
    base, *changes = name.split("+")
    if base == "sparsify":
        kw: dict = {}
        for c in changes:
            if c.startswith("encscale"):
                kw["encoder_scale"] = float(c.removeprefix("encscale"))
            elif c.startswith("dead"):
                kw["dead_threshold"] = int(c.removeprefix("dead"))
            elif c.startswith("lr"):
                setup = tm.Setup(setup.data, setup.batch, setup.epochs, setup.warmup,
                                 tm.peak_lr(setup) * float(c[2:]), setup.schedule)  # fmt: skip
            else:
                raise SystemExit(f"unknown sparsify change {c!r}")
        return tm.run_sparsify(setup, train, held, **kw)
    if base != "saekit":
        raise SystemExit(f"variant {name!r} must start with saekit or sparsify")
    overrides, encoder = saekit_overrides(changes, setup)
    return tm.run_saekit(setup, train, held, encoder, **overrides)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--data", default="/work/data/demo/acts")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=None, help="peak LR of the base (default: the shared rule)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setup = tm.Setup(args.data, 1024, args.epochs, 5, args.lr, "saekit")
    train, held = tm.load_rows(setup)
    for name in args.variants:
        t0 = time.time()
        rec = run_variant(name, setup, train, held)
        rec.update(variant=name, epochs=args.epochs, wall_s=round(time.time() - t0, 1))
        rec["load"] = round(os.getloadavg()[0], 2)
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
