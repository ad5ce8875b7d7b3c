"""Several SAEs in one `saekit train` run: one per store (`--acts A,B,C`), split across torchrun's ranks.

A multi-hook harvest writes one store per hook point; training them is independent work, so each rank
takes a round-robin share of the stores and trains each one with the ordinary single-process `Trainer`
(sparsify's `--distribute_modules` idea, with no second training loop). With one store and several
ranks the run is data-parallel instead (`saekit.train.distributed`).
"""

from __future__ import annotations

from pathlib import Path

from saekit.errors import SAEConfigError
from saekit.train import distributed as dd
from saekit.train.config import TrainConfig


def split_stores(acts: str) -> list[str]:
    """`"A,B,C"` -> `["A", "B", "C"]` (blank entries refused)."""
    parts = [p.strip() for p in acts.split(",")]
    if not acts.strip() or any(not p for p in parts):
        raise SAEConfigError(f"--acts {acts!r}: expected a store folder or comma-separated folders A,B,C")
    return parts


def output_folders(stores: list[str], out: str | Path) -> list[Path]:
    """One SAE folder per store: `out` itself for one store, else `out/<store folder name>`."""
    out = Path(out)
    if len(stores) == 1:
        return [out]
    names = [Path(s).resolve().name for s in stores]
    if len(set(names)) != len(names):
        names = [f"{i}_{n}" for i, n in enumerate(names)]  # same folder name under different parents
    return [out / n for n in names]


def train_stores(cfg: TrainConfig, out: str | Path | None = None, **run_kw):
    """Train one SAE per store in `cfg.acts`; returns the last result of this rank (None if it had none)."""
    from saekit.train.source import open_source
    from saekit.train.trainer import Trainer

    stores = split_stores(cfg.acts)
    folders = output_folders(stores, out if out is not None else cfg.out)
    ctx = dd.from_env(cfg.distributed)
    if len(stores) == 1:
        result = Trainer(cfg, open_source(stores[0]), out=folders[0], dist=ctx).run(**run_kw)
        if ctx.active:
            dd.shutdown()
        return result
    jobs = dd.split_work(list(zip(stores, folders)), ctx)
    result = None
    for store, folder in jobs:
        sub = cfg.replace(acts=store, out=str(folder))
        result = Trainer(sub, open_source(store), out=folder, dist=dd.local_context(ctx)).run(**run_kw)
    if ctx.active:
        dd.init_process_group(ctx, dd.rank_device(cfg.device, ctx))
        dd.shutdown()  # every rank waits for the others' SAEs before the job ends
    return result
