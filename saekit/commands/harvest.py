"""`saekit harvest [lm|clip|diffusion]`: activations of a model into a sharded store.

    saekit harvest --model smollm2 --hook-point model.layers.15 --corpus shakespeare --tokens 200000 \
        --out acts/
    saekit harvest --model smollm2 --hook-point model.layers.5,model.layers.10,model.layers.15 --out acts/
    saekit harvest --model smollm2 --hook-point model.layers.8.mlp --paired --out mlp8/   # transcoders
    saekit harvest clip --model openai/clip-vit-large-patch14 --images skimage --site vision:-2:cls \
        --out clip/
    saekit harvest diffusion --model black-forest-labs/FLUX.1-schnell \
        --hook-point transformer_blocks.3@image \
        --prompts prompts.txt --steps 0-3 --tokens-per-step 256 --out flux/
    torchrun --nproc_per_node 2 -m saekit harvest --model smollm2 --out acts/

Without a kind, the kind follows from --model (CLIP: `clip` in the name or a CLIP config.json;
diffusion: a folder with model_index.json or `flux` in the name; else lm). The flags are the fields
of the kind's library config (saekit.data.harvest.*Config); rerunning the same command after an
interruption resumes from the last complete shard in --out.
"""

from __future__ import annotations

from typing import Annotated

import tyro

from saekit.data.harvest import KINDS, ClipHarvestConfig, DiffusionHarvestConfig, LMHarvestConfig

Command = (
    Annotated[LMHarvestConfig, tyro.conf.subcommand("lm")]
    | Annotated[ClipHarvestConfig, tyro.conf.subcommand("clip")]
    | Annotated[DiffusionHarvestConfig, tyro.conf.subcommand("diffusion")]
)


def with_kind(argv: list[str]) -> list[str]:
    """Prepend the kind read from `--model` when the user gave none (`saekit harvest --model ...`)."""
    if argv and (argv[0] in KINDS or argv[0] in ("-h", "--help")):
        return argv
    from saekit.data.harvest import kind_of_model

    model = "smollm2"
    for i, arg in enumerate(argv):
        if arg == "--model" and i + 1 < len(argv):
            model = argv[i + 1]
        elif arg.startswith("--model="):
            model = arg.split("=", 1)[1]
    return [kind_of_model(model), *argv]


def describe_store(store) -> str:
    """The line printed for each store a harvest wrote (here and by `saekit demo`)."""
    m = store.manifest
    pair = f" -> {m['target_hook_point']} (d_out={m['d_out']}, paired)" if m.get("paired") else ""
    return (
        f"saved {store.folder}: {len(store)} rows x d={store.d} ({m['dtype']}) from {m['model']} "
        f"{m['hook_point']}{pair} ({m['model_dtype']}), {len(m['shards'])} shard(s)"
    )


def main(argv: list[str]) -> int:
    cfg = tyro.cli(
        Command,
        args=with_kind(argv),
        prog="saekit harvest",
        description="Collect activations at hook points (lm), a CLIP site (clip) or a FLUX block over the "
        "denoising loop (diffusion) into a sharded store (resumes an interrupted --out).",
    )
    import os

    from saekit.data.harvest import harvest_stores

    for store in harvest_stores(cfg):
        if not cfg.quiet and os.environ.get("RANK", "0") == "0":
            print(describe_store(store))
    return 0
