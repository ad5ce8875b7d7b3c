"""`saekit eval SAE [--model smollm2] [--corpus shakespeare] [--tokens N]`: JSON report + PNG."""

from __future__ import annotations

import tyro

from saekit.eval.evaluate import EvalConfig


def describe_report(report: dict) -> str:
    """What `saekit eval` (and `saekit demo`) prints: the metrics line and where the report went."""
    from saekit.eval.evaluate import summary_line

    return f"{summary_line(report)}\nreport: {report['png'].rsplit('/', 1)[0]}/eval.json, {report['png']}"


def main(argv: list[str]) -> int:
    # the SAE folder may be given positionally, as in `saekit eval sae/ --tokens 4096`
    if argv and not argv[0].startswith("-"):
        argv = ["--sae", argv[0], *argv[1:]]
    cfg = tyro.cli(
        EvalConfig,
        args=argv,
        prog="saekit eval",
        description="FVU, L0, dead %, shrinkage and spliced CE loss recovered / KL of an SAE.",
    )
    from saekit.eval.evaluate import evaluate

    print(describe_report(evaluate(cfg)))
    return 0
