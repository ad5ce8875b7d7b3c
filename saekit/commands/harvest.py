"""`saekit harvest --model smollm2 --hook model.layers.15 --corpus shakespeare --tokens 200000 --out acts/`.

Flags come from `HarvestConfig` (one per field, its docstring as help). Rerunning the same command
after an interruption resumes from the last complete shard in --out.
"""
from __future__ import annotations

import tyro

from saekit.data.harvest import HarvestConfig


def main(argv: list[str]) -> int:
    cfg = tyro.cli(HarvestConfig, args=argv, prog="saekit harvest",
                   description="Collect activations at a hook point into a sharded store (resumes an interrupted --out).")
    from saekit.data.harvest import harvest

    store = harvest(cfg)
    m = store.manifest
    if not cfg.quiet:
        print(f"saved {store.folder}: {len(store)} rows x d={store.d} ({m['dtype']}) from {m['model']} "
              f"{m['hook_point']} ({m['model_dtype']}), {len(m['shards'])} shard(s)")
    return 0
