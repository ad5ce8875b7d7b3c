"""A testbed activation store with the image metadata `analyze real` reads (PREAMBLE conventions).

The testbed's own harvest (testbed/harvest.py) keeps rows in memory without where they came from;
this one writes a store whose rows say which generated digit (`doc_id`), image token (`position`),
denoising `step` and flow `timestep` they are, plus `documents.json` entries
`{"prompt": "digit C", "seed": S, "class": C}` (image i: class i % 10, noise seeded with seed + i),
so `analyze real` can regenerate each image exactly (image_render.testbed_renderer).
"""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.analysis.image_render import TESTBED_PREFIX


@torch.no_grad()
def harvest_testbed_store(
    model, cfg, model_path: str | Path, block: str, stream: str, out: str | Path, *, n_images: int, seed: int
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
    docs = []
    with StoreWriter(out, fields, resume=False, overwrite=True) as writer:
        for i in range(n_images):
            c, s = i % 10, seed + i
            docs.append({"prompt": f"digit {c}", "seed": s, "class": c})
            g = torch.Generator().manual_seed(s)
            noise = torch.randn(1, cfg.n_image_tokens, cfg.patch**2, generator=g)

            def record(ctx, name, strm, x, _i=i):
                if ctx.branch == "cond" and name == block and strm == stream:
                    n = x.shape[1]
                    meta = {
                        "doc_id": torch.full((n,), _i, dtype=torch.int32),
                        "position": torch.arange(n, dtype=torch.int32),
                        "step": torch.full((n,), ctx.step, dtype=torch.int32),
                        "timestep": torch.full((n,), float(ctx.t)),
                    }
                    writer.add(x[0].float(), meta)
                return x

            sample(
                model, noise, torch.tensor([c]), steps=cfg.sample_steps, guidance=cfg.guidance, edit=record
            )
    write_json_atomic(out / "documents.json", docs)
    return out
