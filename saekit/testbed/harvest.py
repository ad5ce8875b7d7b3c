"""Harvest block activations on the conditional branch while the testbed model samples."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from saekit.testbed.config import TestbedConfig
from saekit.testbed.flow import StepContext, sample
from saekit.testbed.model import FlowTransformer


class Harvest(NamedTuple):
    """Rows of one (block, stream): activations and where they came from."""

    acts: Tensor
    """`[n, d]` float32."""
    label: Tensor
    """`[n]` int64: the class the image was conditioned on."""
    step: Tensor
    """`[n]` int64: denoising step."""
    t: Tensor
    """`[n]` float32: flow time of that step (1 = noise)."""


@torch.no_grad()
def harvest_blocks(
    model: FlowTransformer,
    cfg: TestbedConfig,
    blocks: list[str],
    streams: list[str],
    *,
    n_images: int,
    seed: int,
    batch: int = 100,
) -> dict[tuple[str, str], Harvest]:
    """Sample `n_images` (classes cycled) and keep cond-branch outputs of `blocks` x `streams` at every step.

    With `cfg.tokens_per_step > 0` only that many random tokens per image and step are kept (the
    seed FLUX recipe keeps 256 of 4096); 0 keeps all.
    """
    g = torch.Generator().manual_seed(seed)
    rows: dict[tuple[str, str], list[tuple[Tensor, Tensor, int, float]]] = {
        (b, s): [] for b in blocks for s in streams
    }
    wanted = set(rows)

    for start in range(0, n_images, batch):
        n = min(batch, n_images - start)
        y = (torch.arange(start, start + n) % 10).long()
        noise = torch.randn(n, cfg.n_image_tokens, cfg.patch**2, generator=g)

        def record(ctx: StepContext, name: str, stream: str, x: Tensor, y: Tensor = y) -> Tensor:
            if ctx.branch == "cond" and (name, stream) in wanted:
                keep = x
                if cfg.tokens_per_step and cfg.tokens_per_step < x.shape[1]:
                    idx = torch.rand(x.shape[:2], generator=g).argsort(dim=1)[:, : cfg.tokens_per_step]
                    keep = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
                rows[(name, stream)].append(
                    (
                        keep.reshape(-1, x.shape[-1]).float().clone(),
                        y.repeat_interleave(keep.shape[1]),
                        ctx.step,
                        ctx.t,
                    )
                )
            return x

        sample(model, noise, y, steps=cfg.sample_steps, guidance=cfg.guidance, edit=record)

    out = {}
    for key, parts in rows.items():
        if not parts:  # e.g. ("cond", "image"): the conditioning site has one stream of its own
            continue
        acts = torch.cat([p[0] for p in parts])
        label = torch.cat([p[1] for p in parts])
        step = torch.cat([torch.full((len(p[1]),), p[2], dtype=torch.long) for p in parts])
        t = torch.cat([torch.full((len(p[1]),), p[3], dtype=torch.float32) for p in parts])
        out[key] = Harvest(acts, label, step, t)
    return out
