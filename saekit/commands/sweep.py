"""`saekit sweep`: the steering protocol (train/test prompts, intervals), judged offline.

The flags are `saekit.sweep.config.SweepConfig`; `saekit.sweep.run.sweep_and_save` does the work.
"""

from __future__ import annotations


def describe_sweep(result, paths: dict) -> str:
    """What `saekit sweep` prints: the protocol tables, how many continuations, the files written."""
    from saekit.sweep.report import format_table

    return (
        f"{format_table(result)}\n\n{len(result.records)} continuations in {result.seconds:.0f} s; wrote "
        + ", ".join(str(p) for p in paths.values())
    )


def main(argv: list[str]) -> int:
    import tyro

    from saekit.sweep.config import SweepConfig
    from saekit.sweep.run import sweep_and_save

    print(describe_sweep(*sweep_and_save(tyro.cli(SweepConfig, args=argv, prog="saekit sweep"))))
    return 0
