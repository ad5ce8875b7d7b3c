"""`saekit train --acts acts/ --arch topk --k 32 --expansion 16 --out sae/ [--device cuda]`.

Flags come from `TrainConfig` and its nested `SAESpec` (one per field, with its docstring as help).
Rerunning the same command after an interruption resumes from `out/checkpoint/`. Under
`torchrun --nproc_per_node N -m saekit train ...` one store trains data-parallel over the ranks and
several stores (`--acts A,B,C`) are split across them; only rank 0 prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import tyro

from saekit.train.config import TrainConfig


def describe_sae(folder: Path, quiet: bool = False) -> str:
    """The line printed for each trained SAE (here and by `saekit demo`): its final train-sample metrics."""
    from saekit.train.trainer import summary

    doc = summary(folder)
    m = doc["final_metrics_on_train_sample"]
    if quiet:
        return json.dumps(m)
    window, trained = doc.get("dead_tokens"), m.get("tokens_trained")
    if window and trained and window >= trained:
        dead = "never fired in training"
    else:
        dead = f"dead (no fire in the last {window} tokens)" if window else "dead"
    line = (
        f"saved {folder}: FVU {m['fvu']:.4f}  L0 {m['l0']:.1f}  {dead} {m['dead_pct']:.2f}%  "
        f"shrinkage {m['shrinkage']:.3f}  ({m['tokens_trained']} tokens)"
    )
    note = (doc.get("convergence") or {}).get("note")
    return line + (f"\n  note: {note}" if note else "")


def split_comma_lists(argv: list[str], flags: tuple[str, ...] = ("--matryoshka",)) -> list[str]:
    """`--matryoshka 1024,2048,4096` as the space-separated list the flag parser takes (both spellings
    are in use: SAELens and dictionary_learning users write commas)."""
    out: list[str] = []
    expect = False
    for arg in argv:
        name, eq, value = arg.partition("=")
        if name in flags and eq:
            out.append(name)
            out += [v for v in value.split(",") if v]
            expect = False
            continue
        if expect and "," in arg and not arg.startswith("-"):
            out += [v for v in arg.split(",") if v]
        else:
            out.append(arg)
        expect = arg in flags
    return out


def main(argv: list[str]) -> int:
    cfg = tyro.cli(
        TrainConfig,
        args=split_comma_lists(argv),
        prog="saekit train",
        description="Train an SAE on an activation store (resumes when --out holds a checkpoint).",
    )
    if not cfg.acts:
        print("saekit train: --acts is required (an activation store folder made by `saekit harvest`)")
        return 2
    from saekit.train.distributed import from_env
    from saekit.train.multi import output_folders, split_stores
    from saekit.train.trainer import train

    train(cfg)
    if not from_env().is_main:
        return 0
    for folder in output_folders(split_stores(cfg.acts), cfg.out):  # every rank has finished by now
        print(describe_sae(folder, cfg.quiet))
    return 0
