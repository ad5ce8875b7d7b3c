"""Why TopK latents never fire on held-out rows (docs/results/fvu_vs_sparsify.md, issue 15 item 3).

Trains one run of the `train_fvu_ablation.py` setup (TrainConfig overrides as JSON) and prints, for the
latents that never fire on the 10k held-out rows and for the rest: max pre-activation, gap to the row's
k-th largest pre-activation, b_enc, encoder norm, rows since last firing in training, and the resamplings.

    python benchmarks/dormant_latents.py --epochs 1 '{"resample_every": 0, "revive_bias_step": 0}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_methods as tm  # noqa: E402


def quantiles(t: torch.Tensor) -> list[float]:
    return [round(float(v), 3) for v in t.detach().float().quantile(torch.tensor([0.05, 0.5, 0.95]))]


def main() -> None:
    from saekit.train import TensorSource, TrainConfig, Trainer
    from saekit.train.metrics import read_log

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("overrides", nargs="?", default="{}")
    ap.add_argument("--data", default="/work/data/demo/acts")
    ap.add_argument("--epochs", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    setup = tm.Setup(args.data, 1024, args.epochs, 5, None, "saekit")
    train, held = tm.load_rows(setup)
    steps = tm.total_steps(setup, len(train))
    captured = {}

    class Capturing(Trainer):
        def _after_step(self, run, *a, **kw):
            captured["run"] = run
            return super()._after_step(run, *a, **kw)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.flat(
            arch="topk", k=tm.K, d_sae=tm.D_SAE, batch_size=1024, total_tokens=steps * 1024,
            lr=tm.peak_lr(setup), log_every=5, checkpoint_every=10**9, quiet=True, init_sample=4096,
            **json.loads(args.overrides),
        )  # fmt: skip
        sae = Capturing(cfg, TensorSource(train), out=tmp).run().sae.eval()
        log = read_log(f"{tmp}/train_log.jsonl")
    print("resampled (step, n):", [(r["step"], r["resampled"]) for r in log if "resampled" in r])
    since = captured["run"].tracker.since_fired.float()
    with torch.no_grad():
        pre = torch.cat([sae.pre_activation(sae.normalize_input(c)) for c in held.split(4096)])
        vals, idx = pre.topk(tm.K, dim=-1)
        fired = torch.zeros(tm.D_SAE, dtype=torch.bool)
        fired[idx[vals > 0]] = True
        gap = (pre - vals[:, -1:]).max(0).values
        enc = sae.W_enc.norm(dim=0)
    print(f"k-th pre-activation per row (5/50/95%): {quantiles(vals[:, -1])}")
    for name, m in (("never fired", ~fired), ("fired", fired)):
        print(f"{name} ({int(m.sum())}): max pre {quantiles(pre.max(0).values[m])}, gap to k-th "
              f"{quantiles(gap[m])}, b_enc {quantiles(sae.b_enc[m])}, |W_enc| {quantiles(enc[m])}, "
              f"negative everywhere {float((pre.max(0).values[m] < 0).float().mean()):.3f}, "
              f"rows since fired in training {quantiles(since[m])}")  # fmt: skip


if __name__ == "__main__":
    main()
