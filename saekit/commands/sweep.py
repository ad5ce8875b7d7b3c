"""`saekit sweep`: the steering protocol (train/test prompts, intervals), judged offline."""

from __future__ import annotations

from saekit.sweep.run import SweepConfig


def main(argv: list[str]) -> int:
    import torch
    import tyro

    from saekit.sweep.report import format_table, save_result
    from saekit.sweep.run import run_sweep

    cfg = tyro.cli(SweepConfig, args=argv, prog="saekit sweep")
    torch.set_num_threads(cfg.threads)
    result = run_sweep(cfg)
    paths = save_result(result, cfg.out)
    print(format_table(result))
    print(
        f"\n{len(result.records)} continuations in {result.seconds:.0f} s; wrote "
        + ", ".join(str(p) for p in paths.values())
    )
    return 0
