"""`saekit harvest`: language models, CLIP and FLUX into the same sharded store.

    saekit harvest --model smollm2 --hook model.layers.15 --corpus shakespeare --tokens 200000 --out acts/
    saekit harvest --model openai/clip-vit-large-patch14 --images skimage --site vision:-2:cls --out clip_acts/
    saekit harvest --model black-forest-labs/FLUX.1-schnell --hook transformer_blocks.3@image \
        --prompts prompts.txt --steps 0-3 --tokens-per-step 256 --out flux_acts/

The model kind (CLIP: `clip` in the name or a CLIP config.json; diffusers: a folder with
model_index.json or `flux` in the name) picks the driver; flags of another kind are refused. Flags
come from `HarvestConfig` (one per field, its docstring as help). Rerunning the same command after
an interruption resumes from the last complete shard in --out.
"""

from __future__ import annotations

import tyro

from saekit.data.harvest import HarvestConfig


def main(argv: list[str]) -> int:
    cfg = tyro.cli(
        HarvestConfig,
        args=argv,
        prog="saekit harvest",
        description="Collect activations at a hook point (LM), a CLIP site (--images/--captions --site) or a "
        "FLUX block over the denoising loop (--hook --prompts --steps) into a sharded store "
        "(resumes an interrupted --out).",
    )
    from saekit.data.harvest import harvest

    store = harvest(cfg)
    m = store.manifest
    if not cfg.quiet:
        print(
            f"saved {store.folder}: {len(store)} rows x d={store.d} ({m['dtype']}) from {m['model']} "
            f"{m['hook_point']} ({m['model_dtype']}), {len(m['shards'])} shard(s)"
        )
    return 0
