"""`saekit train --acts acts/ --arch topk --k 32 --expansion 16 --out sae/`.

Flags come from `TrainConfig` (one per field, with its docstring as help). Rerunning the same command
after an interruption resumes from `out/checkpoint/`.
"""

from __future__ import annotations

import json

import tyro

from saekit.train.config import TrainConfig


def main(argv: list[str]) -> int:
    cfg = tyro.cli(
        TrainConfig,
        args=argv,
        prog="saekit train",
        description="Train an SAE on an activation store (resumes when --out holds a checkpoint).",
    )
    if not cfg.acts:
        print("saekit train: --acts is required (an activation store folder made by `saekit harvest`)")
        return 2
    from saekit.train.trainer import train

    result = train(cfg)
    if not cfg.quiet:
        m = result.metrics
        print(
            f"saved {cfg.out}: FVU {m['fvu']:.4f}  L0 {m['l0']:.1f}  dead {m['dead_pct']:.2f}%  "
            f"shrinkage {m['shrinkage']:.3f}  ({m['tokens_trained']} tokens)"
        )
    else:
        print(json.dumps(result.metrics))
    return 0
