"""`saekit bench --sae A B C --out bench/`: SAEBench-style metrics with intervals, as JSON, markdown, PNG.

The flags are `saekit.bench.config.BenchConfig`; `saekit.bench.run.run_bench` does the work.
"""

from __future__ import annotations


def describe_bench(report: dict) -> str:
    """What `saekit bench` prints: the markdown tables and where the files went."""
    from saekit.bench.report import markdown

    files = report["files"]
    return f"{markdown(report)}\nwrote {files['json']}, {files['markdown']}, {files['png']}"


def main(argv: list[str]) -> int:
    import tyro

    from saekit.bench.config import BenchConfig
    from saekit.bench.run import run_bench

    cfg = tyro.cli(
        BenchConfig,
        args=argv,
        prog="saekit bench",
        description="Compare SAEs at one hook point: core metrics, sparse probing and feature absorption, "
        "each figure with a bootstrap 95% interval.",
    )
    print(describe_bench(run_bench(cfg)))
    return 0
