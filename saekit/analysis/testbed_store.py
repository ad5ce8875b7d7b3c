"""A testbed activation store with the image metadata `analyze real` reads (PREAMBLE conventions).

The testbed's own harvest (testbed/harvest.py) keeps rows in memory without where they came from;
this one writes a store whose rows say which generated digit (`doc_id`), image token (`position`),
denoising `step` and flow `timestep` they are, plus `documents.json` entries
`{"prompt": "digit C", "seed": S, "class": C}` (image i: class i % 10, noise seeded with seed + i),
so `analyze real` can regenerate each image (image_render.digits_renderer; images are sampled in
batches here and one at a time there, equal to float rounding).
"""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.analysis.image_render import TESTBED_PREFIX


@torch.no_grad()
def harvest_testbed_store(
    model,
    cfg,
    model_path: str | Path,
    block: str,
    stream: str,
    out: str | Path,
    *,
    n_images: int,
    seed: int,
    batch: int = 50,
) -> Path:
    """Generate `n_images` digits and store every cond-branch token of (`block`, `stream`) at every step."""
    from saekit.atomic import write_json_atomic
    from saekit.data.store_writer import StoreWriter
    from saekit.testbed.flow import sample

    out = Path(out)
    side = int(round(cfg.n_image_tokens**0.5))
    fields = {
        "model": f"{TESTBED_PREFIX}{Path(model_path).resolve()}",
        "hook_point": f"{block}@{stream}",
        "stream": stream,
        "d": cfg.d_model,
        "dtype": "float32",
        "patch_grid": [side, side],
        "height": 8,
        "width": 8,
        "num_inference_steps": cfg.sample_steps,
        "guidance_scale": cfg.guidance,
    }
    docs = [{"prompt": f"digit {i % 10}", "seed": seed + i, "class": i % 10} for i in range(n_images)]
    with StoreWriter(out, fields, resume=False, overwrite=True) as writer:
        for lo in range(0, n_images, batch):
            ids = list(range(lo, min(lo + batch, n_images)))
            noise = torch.cat([_noise(cfg, seed + i) for i in ids])
            y = torch.tensor([i % 10 for i in ids])

            def record(ctx, name, strm, x, _ids=ids):
                if ctx.branch == "cond" and name == block and strm == stream:
                    B, n = x.shape[:2]
                    meta = {
                        "doc_id": torch.tensor(_ids, dtype=torch.int32).repeat_interleave(n),
                        "position": torch.arange(n, dtype=torch.int32).repeat(B),
                        "step": torch.full((B * n,), ctx.step, dtype=torch.int32),
                        "timestep": torch.full((B * n,), float(ctx.t)),
                    }
                    writer.add(x.reshape(B * n, -1).float(), meta)
                return x

            sample(model, noise, y, steps=cfg.sample_steps, guidance=cfg.guidance, edit=record)
    write_json_atomic(out / "documents.json", docs)
    return out


def _noise(cfg, seed: int) -> torch.Tensor:
    """The starting noise of one image `[1, tokens, patch^2]` (image_render.digits_renderer repeats it)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, cfg.n_image_tokens, cfg.patch**2, generator=g)
