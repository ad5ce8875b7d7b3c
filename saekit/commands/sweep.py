"""`saekit sweep`: the steering protocol (train/test prompts, intervals), judged offline.

The flags are `saekit.sweep.config.SweepConfig`; `saekit.sweep.run.sweep_and_save` does the work. With
`--model` naming a diffusers pipeline (the `saekit testbed build` FluxPipeline), the sweep is the image
factor sweep instead: `saekit.sweep.image_factors.FactorSweepConfig` / `run_factor_sweep`; with
`--loras <folders>` as well, the same sweep with a LoRA arm (`saekit.sweep.image_lora.LoraSweepConfig` /
`run_lora_sweep`); with `--concept WORDS` (any FluxPipeline, FLUX.1 included: prompts from a file, a CLIP
judge) the concept sweep (`saekit.sweep.image_concept.ConceptImageSweepConfig` / `run_concept_sweep`).
"""

from __future__ import annotations


def describe_sweep(result, paths: dict) -> str:
    """What `saekit sweep` prints: the protocol tables, how many continuations, the files written."""
    from saekit.sweep.report import format_table

    return (
        f"{format_table(result)}\n\n{len(result.records)} continuations in {result.seconds:.0f} s; wrote "
        + ", ".join(str(p) for p in paths.values())
    )


def _has_flag(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def _model_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--model" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--model="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str]) -> int:
    import tyro

    from saekit.steer.image.run import is_image_model

    if is_image_model(_model_arg(argv)) and _has_flag(argv, "--concept"):
        from saekit.sweep.image_concept import (
            ConceptImageSweepConfig,
            concept_table_markdown,
            run_concept_sweep,
        )

        ccfg = tyro.cli(ConceptImageSweepConfig, args=argv, prog="saekit sweep (image concept, CLIP judge)")
        print(concept_table_markdown(run_concept_sweep(ccfg)) + f"\nwrote {ccfg.out}/results.json, table.md")
        return 0
    if is_image_model(_model_arg(argv)) and _has_flag(argv, "--loras"):
        from saekit.sweep.image_lora import LoraSweepConfig, lora_table_markdown, run_lora_sweep

        lcfg = tyro.cli(LoraSweepConfig, args=argv, prog="saekit sweep (image factors, with LoRA arm)")
        print(lora_table_markdown(run_lora_sweep(lcfg)) + f"\nwrote {lcfg.sweep.out}/results.json, table.md")
        return 0
    if is_image_model(_model_arg(argv)):
        from saekit.sweep.image_factors import FactorSweepConfig, run_factor_sweep, table_markdown

        cfg = tyro.cli(FactorSweepConfig, args=argv, prog="saekit sweep (image factors)")
        print(table_markdown(run_factor_sweep(cfg)) + f"\nwrote {cfg.out}/results.json, table.md")
        return 0
    from saekit.sweep.config import SweepConfig
    from saekit.sweep.run import sweep_and_save

    print(describe_sweep(*sweep_and_save(tyro.cli(SweepConfig, args=argv, prog="saekit sweep"))))
    return 0
