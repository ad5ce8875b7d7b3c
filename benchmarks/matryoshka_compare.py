"""Matryoshka BatchTopK vs flat BatchTopK (and TopK) at the same k, tokens and schedule on one store.

Trains each architecture with the library's own trainer on the same rows in the same order, then reports
on held-out rows of the store: FVU of the full SAE and of its first m latents (the prefixes a Matryoshka
SAE is trained to make reconstruct on their own), inference L0, latents that never fire, and the
spliced CE loss recovered / KL on held-out Shakespeare through `saekit eval`. Intervals are bootstrap
95% over held-out rows (FVU) and over eval tokens (CE via the eval's own per-token values where given).

    python benchmarks/matryoshka_compare.py --acts runs/demo/acts --out runs/matryoshka
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def prefix_fvu(sae, x_ND: torch.Tensor, sizes: list[int], n_boot: int = 200) -> dict[str, list[float]]:
    """FVU keeping only the first m latents, for each m, with a bootstrap 95% interval over rows."""
    sae.eval()
    out = {}
    with torch.no_grad():
        lat = torch.cat([sae.encode(c) for c in x_ND.split(2048)])
        centred = (x_ND - x_ND.mean(0)).pow(2).sum(-1).double()
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(0, x_ND.shape[0], (n_boot, x_ND.shape[0]), generator=g)
        for m in sizes:
            kept = lat.clone()
            kept[:, m:] = 0
            pairs = zip(kept.split(2048), x_ND.split(2048))
            err = torch.cat([(sae.decode(c) - xc).pow(2).sum(-1) for c, xc in pairs]).double()
            point = float(err.sum() / centred.sum())
            boots = (err[idx].sum(1) / centred[idx].sum(1)).sort().values
            out[str(m)] = [point, float(boots[int(0.025 * n_boot)]), float(boots[int(0.975 * n_boot) - 1])]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--acts", required=True, help="activation store (the demo's: runs/demo/acts)")
    ap.add_argument("--out", default="runs/matryoshka")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--expansion", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=600_000)
    ap.add_argument("--heldout", type=int, default=10_000, help="last rows of the store, not trained on")
    ap.add_argument("--archs", default="batchtopk,matryoshka_batchtopk,topk")
    ap.add_argument("--eval-tokens", type=int, default=4096)
    args = ap.parse_args()

    from saekit.data import ActivationStore
    from saekit.eval.evaluate import EvalConfig, evaluate
    from saekit.train import TensorSource, TrainConfig, Trainer

    store = ActivationStore.open(args.acts)
    rows = store.read_rows(range(len(store)), ["acts"])["acts"]  # the whole store, in store order
    train, held = rows[: -args.heldout], rows[-args.heldout :]
    d_sae = args.expansion * rows.shape[1]
    sizes = [d_sae // 8, d_sae // 4, d_sae // 2, d_sae]
    results = {}
    for arch in args.archs.split(","):
        folder = Path(args.out) / arch
        extra = {"matryoshka": tuple(sizes)} if arch.startswith("matryoshka") else {}
        cfg = TrainConfig.flat(arch=arch, k=args.k, expansion=args.expansion, total_tokens=args.tokens,
                               batch_size=1024, lr=1e-3, quiet=True, seed=0, **extra)  # fmt: skip
        t0 = time.perf_counter()
        src = TensorSource(train, manifest=dict(store.manifest))
        res = Trainer(cfg, src, out=folder).run()
        t_train = time.perf_counter() - t0
        sae = res.sae.eval()
        with torch.no_grad():
            lat = torch.cat([sae.encode(c) for c in held.split(2048)])
        rep = evaluate(EvalConfig(sae=str(folder), tokens=args.eval_tokens, quiet=True, device="cpu"))
        s = rep["spliced"]
        results[arch] = {
            "prefix_fvu": prefix_fvu(sae, held, sizes),
            "l0": float((lat != 0).sum(-1).float().mean()),
            "never_fired_heldout": int((~(lat != 0).any(0)).sum()),
            "ce_recovered": s["ce_recovered"], "ce_recovered_mean": s["ce_recovered_mean"], "kl": s["kl"],
            "train_s": t_train,
        }  # fmt: skip
        print(json.dumps({arch: results[arch]}), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "matryoshka_compare.json").write_text(json.dumps(results, indent=2))
    head = " | ".join(f"FVU first {m}" for m in sizes)
    print(f"\n{rows.shape[1]}-d store {args.acts}, k={args.k}, d_sae={d_sae}, {args.tokens} tokens, "
          f"batch 1024, held out {args.heldout} rows; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"| arch | {head} | L0 | never fired | CE recovered (zero / mean abl.) | KL |")
    print("|---" * (len(sizes) + 5) + "|")
    for arch, r in results.items():
        cells = " | ".join(f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for v in r["prefix_fvu"].values())
        print(f"| {arch} | {cells} | {r['l0']:.1f} | {r['never_fired_heldout']} | "
              f"{r['ce_recovered']:.4f} / {r['ce_recovered_mean']:.4f} | {r['kl']:.4f} |")  # fmt: skip


if __name__ == "__main__":
    main()
