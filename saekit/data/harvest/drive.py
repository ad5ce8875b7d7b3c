"""The one drive loop every harvest driver uses: batches in, rows into one store per hook point.

A driver supplies `compute(b) -> [(acts [n, d], meta), ...]` (one pair per store, any device) for
batch `b` of a fixed, deterministic batch order; this loop decides which rows of it each store
keeps, so that:

- a store holds exactly the first `target` rows of that order (the last batch is cut);
- an interrupted run resumes at the cursor each store's manifest records and ends byte-identical;
- under torchrun, rank r computes batches r, r + N, r + 2N, ... (round k = batches kN..kN+N-1);
  after each round the ranks exchange their row counts (one small all_gather), so every rank knows
  how many rows precede its batch and cuts exactly where a one-process run would. The counts of
  every round are kept in the manifest (`progress`, dropped once complete), so a killed run resumes
  without recomputing the batches it (or another rank) already stored;
- rows leave the device through pinned, non-blocking copies and are written one round later on
  CUDA, so shard writes overlap the next forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saekit.data.harvest.ranks import Ranks, rank_folder
from saekit.data.store_writer import StoreWriter
from saekit.device import to_host

Rows = tuple[torch.Tensor, dict[str, torch.Tensor]]
Compute = Callable[[int], list[Rows]]


@dataclass
class Sink:
    """One store being written: its root folder, this rank's writer and the rows it wants."""

    folder: Path
    writer: StoreWriter
    target: int
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> list[list[int]]:
        """Row counts of every rank per round so far (`[round][rank]`), kept in the manifest."""
        return self.writer.progress.setdefault("rows_per_round", [])

    def skip(self, b: int, n: int) -> int:
        """Rows of batch `b` (of `n`) already stored by an earlier, interrupted run."""
        if self.writer.complete:
            return n
        cursor = self.writer.resume_cursor
        if cursor is None:
            return n if self.writer.count else 0
        unit, offset = cursor
        return n if b < unit else (offset if b == unit else 0)


def open_sink(folder: Path, fields: dict[str, Any], target: int, cfg, ranks: Ranks) -> Sink:
    """A resumable writer for this rank (OUT itself, or OUT/rank_RRRRR under torchrun)."""
    if ranks.distributed and not cfg.overwrite:
        from saekit.data.harvest.finish import root_is_complete

        root_is_complete(folder, fields, ranks.world)  # refuses a different store in OUT
    where = folder / rank_folder(ranks.rank) if ranks.distributed else folder
    rank_fields = dict(fields, rank=ranks.rank, world_size=ranks.world) if ranks.distributed else fields
    writer = StoreWriter(
        where,
        rank_fields,
        shard_rows=cfg.shard_rows,
        resume=True,
        overwrite=cfg.overwrite,
        repair=cfg.repair,
    )
    return Sink(folder, writer, target, fields)


class _HostCopies:
    """Hand rows to writers on the host; on CUDA via pinned non-blocking copies, one round late."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: list[tuple[Any, StoreWriter, Rows, int, int]] = []

    def put(self, writer: StoreWriter, rows: Rows, unit: int, offset: int) -> None:
        acts, meta = rows
        if not self.cuda:
            writer.add(acts, meta, unit=unit, offset=offset)
            return
        host = (to_host(acts, pinned={}), {k: to_host(v, pinned={}) for k, v in meta.items()})
        event = torch.cuda.Event()
        event.record()
        self.pending.append((event, writer, host, unit, offset))

    def flush(self, before_unit: int | None = None) -> None:
        """Write the pending rows of units < `before_unit` (all when None)."""
        while self.pending and (before_unit is None or self.pending[0][3] < before_unit):
            event, writer, (acts, meta), unit, offset = self.pending.pop(0)
            event.synchronize()
            writer.add(acts, meta, unit=unit, offset=offset)


def _known_rounds(sinks: list[Sink], ranks: Ranks) -> int:
    """Rounds whose row counts every rank has on record (from an interrupted run)."""
    mine = min((len(s.history) for s in sinks if not s.writer.complete), default=1 << 40)
    return ranks.min_int(mine)


def drive(
    sinks: list[Sink],
    n_batches: int,
    compute: Compute,
    ranks: Ranks,
    device: torch.device,
    *,
    desc: str = "harvest",
    quiet: bool = False,
) -> list[int]:
    """Run the batches and fill every sink (see the module docstring); returns rows per store."""
    from tqdm.auto import tqdm

    world, r = ranks.world, ranks.rank
    if ranks.min_int(int(all(s.writer.complete for s in sinks))):
        return [s.target for s in sinks]
    known = _known_rounds(sinks, ranks)
    total = [0] * len(sinks)  # rows of all ranks before the current round, per store
    copies = _HostCopies(device)
    bar = tqdm(total=sinks[0].target, unit="row", unit_scale=True, desc=desc, disable=quiet or r != 0)
    try:
        for k in range((n_batches + world - 1) // world):
            if all(t >= s.target for t, s in zip(total, sinks)):
                break
            counts = _round(sinks, compute, ranks, k, k < known, total, copies, n_batches)
            copies.flush(before_unit=k * world)
            before = total[0]
            for s in range(len(sinks)):
                total[s] += sum(c[s] for c in counts)
            bar.update(min(total[0], sinks[0].target) - min(before, sinks[0].target))
        copies.flush()
    except BaseException:
        copies.flush()  # rows already computed are good: keep them for the resume
        raise
    finally:
        bar.close()
    return [min(t, s.target) for t, s in zip(total, sinks)]


def _round(sinks, compute, ranks, k, known, total, copies, n_batches) -> list[list[int]]:
    """One round: compute this rank's batch if needed, agree on counts, add the kept rows."""
    world, r = ranks.world, ranks.rank
    b = k * world + r
    want = [
        b < n_batches and total[s] < sink.target and sink.skip(b, 1 << 62) < 1 << 62
        for s, sink in enumerate(sinks)
    ]
    out = compute(b) if b < n_batches and (any(want) or not known) else None
    mine = [0 if out is None else int(out[s][0].shape[0]) for s in range(len(sinks))]
    if known:
        counts = [[sink.history[k][q] for sink in sinks] for q in range(world)]
        if out is not None and mine != counts[r]:
            from saekit.errors import StoreError

            raise StoreError(
                f"harvest is not deterministic: batch {b} gave {mine} rows now but {counts[r]} in the "
                "interrupted run; restart with --overwrite"
            )
    else:
        counts = ranks.gather_counts(mine)
        for s, sink in enumerate(sinks):
            sink.history.append([c[s] for c in counts])
    for s, sink in enumerate(sinks):
        if out is None or not want[s]:
            continue
        before = total[s] + sum(counts[q][s] for q in range(r))
        n = mine[s]
        lo, hi = sink.skip(b, n), min(n, sink.target - before)
        if hi > lo:
            acts, meta = out[s]
            copies.put(sink.writer, (acts[lo:hi], {m: v[lo:hi] for m, v in meta.items()}), b, lo)
    return counts
