"""The training data order: a pure function of (seed, epoch, row offset), sliced per rank, read ahead.

Step `s` of a run reads global batch `s mod steps_per_epoch` of epoch `s // steps_per_epoch`, shuffled
with seed `seed + epoch`; so a resumed run, a prefetched run and a data-parallel run (each rank keeping
its share of every global batch) all see exactly the rows an uninterrupted single-process run sees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from saekit.train import distributed as dd
from saekit.train.prefetch import Prefetcher


def global_batches(
    source, batch_size: int, seed: int, start_step: int, ctx: dd.DistContext
) -> Iterator[Tensor]:
    """Host batches from step `start_step` on (endless; several epochs), this rank's share of each."""
    steps_per_epoch = len(source) // batch_size
    step = start_step
    while True:
        epoch, within = divmod(step, steps_per_epoch)
        rows = source.iter_batches(
            batch_size, shuffle=True, seed=seed + epoch, start_row=within * batch_size, drop_last=True,
            dtype=torch.float32,
        )  # fmt: skip
        for x in rows:
            yield dd.rank_slice(x, ctx)
            step += 1
            if step % steps_per_epoch == 0:
                break


def take(items: Iterator, n: int) -> Iterator:
    """The first `n` items as a generator (closable, unlike islice); counts first, so none is over-read."""
    for _, item in zip(range(n), items):
        yield item


def batch_stream(source, batch_size: int, seed: int, start_step: int, steps: int, ctx: dd.DistContext,
                 prefetch: int, pin: bool) -> contextlib.AbstractContextManager:  # fmt: skip
    """`with batch_stream(...) as batches:` the next `steps` batches, read `prefetch` ahead in a thread
    (pinned for a CUDA copy when `pin`), or in the caller's thread when `prefetch` is 0."""
    rows = take(global_batches(source, batch_size, seed, start_step, ctx), steps)
    if prefetch > 0:
        return Prefetcher(rows, prefetch, pin=pin)
    return contextlib.closing(rows)
