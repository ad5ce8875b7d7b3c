"""Harvest under torchrun: which rank am I, and the few collectives the drive loop needs.

`torchrun --nproc_per_node N -m saekit harvest ...` sets RANK / WORLD_SIZE / LOCAL_RANK; each rank
then takes every N-th batch of the one-process batch order (disjoint contexts / images / prompts),
writes its own shards into OUT/rank_RRRRR/, and rank 0 writes OUT/manifest.json once every rank is
done (a gloo barrier). Collectives run over gloo on CPU tensors, so the same code runs on CPU-only
machines (how it is tested) and next to NCCL-using GPU code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from saekit.device import HOST, resolve_device


@dataclass(frozen=True)
class Ranks:
    """This process's place in the harvest: rank `rank` of `world` (1 = no torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def gather_counts(self, counts: list[int]) -> list[list[int]]:
        """Every rank's `counts` (one int per store), as `[world][n_stores]`, identical on all ranks."""
        if not self.distributed:
            return [list(counts)]
        import torch.distributed as dist

        mine = torch.tensor(counts, dtype=torch.int64, device=HOST)
        out = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(out, mine)
        return [t.tolist() for t in out]

    def min_int(self, value: int) -> int:
        """The smallest `value` over all ranks."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device=HOST)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def device(self, spec: str) -> torch.device:
        """`--device` for this rank: `auto` on a multi-GPU torchrun picks cuda:LOCAL_RANK."""
        if spec == "auto" and self.distributed and torch.cuda.is_available():
            return resolve_device(f"cuda:{self.local_rank % torch.cuda.device_count()}")
        return resolve_device(spec)


def current_ranks() -> Ranks:
    """Read torchrun's environment; join (or start) the gloo process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_folder(rank: int) -> str:
    """Sub-folder of a store that one rank's shards and progress manifest live in."""
    return f"rank_{rank:05d}"
