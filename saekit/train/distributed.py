"""Data-parallel training over torchrun's ranks, with PyTorch's own collectives (gloo on CPU, NCCL on CUDA).

The trainer stays one loop; this module is the only place that talks to `torch.distributed`. Every rank
reads the same global batch order from the store and keeps a disjoint slice of each global batch; the
gradients are averaged with an explicit all-reduce (each rank's loss is a mean over an equal share of
rows, so the average is the global-batch gradient), and the fired-latent masks are OR-ed so the
dead-latent counters stay identical on every rank. With identical weights, gradients and counters,
Adam, the decoder-gradient projection and the decoder renorm give the same result on every rank without
further communication. A single-process run is `DistContext()` (world 1): every helper is then a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from saekit.device import resolve_device
from saekit.errors import SAEConfigError, SaekitError


class DistributedError(SaekitError, RuntimeError):
    """A distributed launch is missing, malformed, or asks for something data-parallel cannot do."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when there are other ranks to talk to."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and the final SAE."""
        return self.rank == 0


SINGLE = DistContext()


def from_env(required: bool = False) -> DistContext:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; `required` refuses a plain launch."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ:
        if required:
            raise DistributedError(
                "--distributed needs a torchrun launch, e.g. "
                "`torchrun --nproc_per_node 2 -m saekit train --acts STORE ...`"
            )
        return SINGLE
    return DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(spec: str, ctx: DistContext) -> torch.device:
    """The device this rank computes on: `auto`/`cuda` mean cuda:LOCAL_RANK under torchrun."""
    dev = resolve_device(spec)
    if dev.type != "cuda":
        return dev
    if spec.strip().lower() in ("auto", "cuda"):
        return resolve_device(f"cuda:{ctx.local_rank}")
    if ctx.active:
        raise DistributedError(
            f"--device {spec} names one GPU, but torchrun runs {ctx.world} ranks; use --device cuda "
            "(each rank takes cuda:LOCAL_RANK) or set CUDA_VISIBLE_DEVICES"
        )
    return dev


def local_context(ctx: DistContext) -> DistContext:
    """A world of one on this rank's device: for jobs this rank does alone (one SAE of several)."""
    return DistContext(rank=0, world=1, local_rank=ctx.local_rank)


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """Join the job's process group once (NCCL for CUDA ranks, gloo otherwise)."""
    import torch.distributed as dist

    if not ctx.active or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def check_batch(batch_size: int, ctx: DistContext) -> int:
    """Rows per rank; the global batch must split evenly so the averaged gradient is the global one."""
    if batch_size % ctx.world:
        raise SAEConfigError(
            f"--batch-size {batch_size} does not split over {ctx.world} ranks; use a multiple of {ctx.world}"
        )
    return batch_size // ctx.world


def rank_slice(x_BD: Tensor, ctx: DistContext) -> Tensor:
    """This rank's contiguous share `[B / world, d]` of a global batch (a copy, so the rest can be freed)."""
    if not ctx.active:
        return x_BD
    per = x_BD.shape[0] // ctx.world
    return x_BD[ctx.rank * per : (ctx.rank + 1) * per].clone()


def average_gradients_(params: list[Tensor], ctx: DistContext) -> None:
    """All-reduce every gradient to its mean over ranks (launched together, then awaited)."""
    if not ctx.active:
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    # collectives need contiguous buffers; a latent-major W_enc has a transposed (non-contiguous) grad
    bufs = [g if g.is_contiguous() else g.contiguous() for g in grads]
    handles = [dist.all_reduce(b, op=dist.ReduceOp.SUM, async_op=True) for b in bufs]
    for h in handles:
        h.wait()
    for g, b in zip(grads, bufs):
        if b is not g:
            g.copy_(b)
        g.div_(ctx.world)


def any_rank(mask_F: Tensor, ctx: DistContext) -> Tensor:
    """Element-wise OR of a bool mask over ranks (e.g. 'latent fired anywhere in the global batch')."""
    if not ctx.active:
        return mask_F
    import torch.distributed as dist

    m = mask_F.to(torch.int32)  # int32: every backend reduces it (gloo and NCCL)
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    return m.bool()


def mean_over_ranks(values: Tensor, ctx: DistContext) -> Tensor:
    """Mean of a small float tensor over ranks (per-rank means of equal shares = the global mean)."""
    if not ctx.active:
        return values
    import torch.distributed as dist

    v = values.clone()
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return v / ctx.world


def gather_rows(x_BD: Tensor, ctx: DistContext) -> Tensor:
    """The global batch back from every rank's share, in rank order (for logged metrics)."""
    if not ctx.active:
        return x_BD
    import torch.distributed as dist

    parts = [torch.empty_like(x_BD) for _ in range(ctx.world)]
    dist.all_gather(parts, x_BD.contiguous())
    return torch.cat(parts)


def broadcast_module_(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (guards against any init that is not bitwise
    reproducible across processes, e.g. on GPUs)."""
    if not ctx.active:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def broadcast_buffers_(module: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (statistics a forward updates, e.g. BatchTopK's threshold) on every rank."""
    if not ctx.active:
        return
    import torch.distributed as dist

    for t in module.buffers():
        dist.broadcast(t.data, src=0)


def broadcast_index(i: int, ctx: DistContext) -> int:
    """Rank 0's integer on every rank (a choice made once, e.g. the encoder path rank 0 measured)."""
    if not ctx.active:
        return i
    import torch.distributed as dist

    t = torch.tensor([i], dtype=torch.int64)
    dist.broadcast(t, src=0)  # gloo and NCCL both take host int64 here (NCCL via the default device)
    return int(t[0])


class RankGroup:
    """The collectives a batch-dependent SAE (BatchTopK) selects with (`saekit.sae.batchtopk.BatchGroup`)."""

    def __init__(self, ctx: DistContext):
        self.ctx = ctx
        self.world = ctx.world

    def cat(self, t: Tensor) -> Tensor:
        return gather_rows(t, self.ctx)

    def min(self, t: Tensor) -> Tensor:
        import torch.distributed as dist

        v = t.clone()
        dist.all_reduce(v, op=dist.ReduceOp.MIN)
        return v


def bind_batch_group_(module: torch.nn.Module, ctx: DistContext) -> None:
    """Make a batch-dependent SAE select over the global batch (a no-op for other SAEs and one rank)."""
    if getattr(module, "batch_dependent", False):
        module.bind_batch_group(RankGroup(ctx) if ctx.active else None)


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()


def split_work(items: list, ctx: DistContext) -> list:
    """Round-robin share of independent jobs (one SAE per store) for this rank."""
    return items[ctx.rank :: ctx.world]
