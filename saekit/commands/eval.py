"""`saekit eval SAE [--model smollm2] [--corpus shakespeare] [--tokens N]`: JSON report + PNG."""

from __future__ import annotations

import tyro

from saekit.eval.evaluate import EvalConfig


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
    from saekit.eval.evaluate import evaluate, summary_line

    report = evaluate(cfg)
    print(summary_line(report))
    print(f"report: {report['png'].rsplit('/', 1)[0]}/eval.json, {report['png']}")
    return 0
