"""Partial results of a long sweep: sweep.partial.json + table.partial.md after every concept, so a
run that is stopped still leaves its measured records and the protocol tables over them."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from saekit.sweep.config import SweepConfig, SweepResult


def save_partial(result: SweepResult, cfg: SweepConfig, t0: float) -> None:
    """Refresh `result`'s protocol table and summary and write both partial files (atomically)."""
    from saekit.atomic import write_json_atomic, write_text_atomic
    from saekit.sweep.protocol import protocol_table
    from saekit.sweep.report import format_table, summarize

    if not cfg.out:
        return
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    result.protocol, result.summary = protocol_table(result.records, seed=cfg.seed), summarize(result.records)
    result.seconds = time.perf_counter() - t0
    write_json_atomic(
        out / "sweep.partial.json", {"schema_version": 2, "format": "saekit.sweep", **asdict(result)}
    )
    write_text_atomic(out / "table.partial.md", format_table(result) + "\n")
