"""Close a harvest: write the last shards, and under torchrun merge every rank's shards into one
store manifest once all ranks are done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.data.harvest.ranks import Ranks, rank_folder
from saekit.data.manifest import MANIFEST, SCHEMA_VERSION, read_manifest
from saekit.errors import StoreError


def merged_manifest(folder: Path, fields: dict[str, Any], world: int) -> dict[str, Any]:
    """The store manifest of a torchrun harvest: every rank's shards, rank by rank."""
    shards: list[dict[str, Any]] = []
    shard_rows = None
    for r in range(world):
        sub = folder / rank_folder(r)
        m = read_manifest(sub)
        if not m.get("complete"):
            raise StoreError(f"internal: rank {r} finished without completing {sub}")
        shard_rows = m["shard_rows"]
        shards += [dict(e, file=f"{rank_folder(r)}/{e['file']}") for e in m["shards"]]
    return {
        "schema_version": SCHEMA_VERSION,
        **fields,
        "shard_rows": shard_rows,
        "world_size": world,
        "count": sum(int(e["count"]) for e in shards),
        "complete": True,
        "resume_cursor": None,
        "progress": None,
        "shards": shards,
    }


def root_is_complete(folder: Path, fields: dict[str, Any], world: int) -> bool:
    """True when a torchrun harvest into `folder` already finished with these flags."""
    if not (folder / MANIFEST).is_file():
        return False
    m = read_manifest(folder)
    from saekit.data.manifest import identity_diff

    same = "harvest_config" not in identity_diff(fields, m) and m.get("world_size") == world
    if not same:
        raise StoreError(
            f"{folder} already holds a different activation store (other flags or world size "
            f"{m.get('world_size', 1)}); use another --out folder or --overwrite"
        )
    return bool(m.get("complete"))


def finish(sinks, ranks: Ranks, *, quiet: bool = False) -> list:
    """Close every sink's writer; under torchrun, rank 0 writes the merged manifests. Returns stores."""
    from saekit.atomic import write_json_atomic
    from saekit.data.store import ActivationStore

    for sink in sinks:
        was_complete = sink.writer.complete
        manifest = sink.writer.close()
        if was_complete and not quiet and ranks.rank == 0 and not ranks.distributed:
            print(
                f"saekit harvest: {sink.folder} already holds this complete store ({manifest['count']} rows)"
            )
    if ranks.distributed:
        ranks.barrier()
        if ranks.rank == 0:
            for sink in sinks:
                write_json_atomic(
                    sink.folder / MANIFEST, merged_manifest(sink.folder, sink.fields, ranks.world)
                )
        ranks.barrier()
    return [ActivationStore.open(sink.folder) for sink in sinks]
