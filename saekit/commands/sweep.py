"""`saekit sweep`: methods x layers x strengths x concepts, scored offline; JSON + table + PNGs."""

from __future__ import annotations

import sys

from saekit.errors import SaekitError
from saekit.steer.sweep import SweepConfig


def main(argv: list[str]) -> int:
    import tyro

    cfg = tyro.cli(SweepConfig, args=argv, prog="saekit sweep")
    try:
        import torch

        torch.set_num_threads(cfg.threads)
        from saekit.steer.sweep import format_table, run_sweep, save_result

        result = run_sweep(cfg)
        paths = save_result(result, cfg.out)
    except SaekitError as exc:
        print(f"saekit sweep: {exc}", file=sys.stderr)
        return 1
    print(format_table(result))
    print(
        f"\n{len(result.records)} continuations in {result.seconds:.0f} s; wrote "
        + ", ".join(str(p) for p in paths.values())
    )
    return 0
