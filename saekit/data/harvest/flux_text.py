"""T5 token rows of a FluxPipeline: `prompt_embeds` exactly as the pipeline's own `encode_prompt` makes them.

FLUX's transformer attends to every row of `prompt_embeds [P, L, d]` (L = the T5 sequence length, 512 by
default; rows past the caption are the T5 outputs at padding tokens, which still carry the caption through
attention). An SAE for steering that site (`saekit sweep --conditioning text`) is trained on these rows:
for each caption its first `tokens_per_caption` rows (the words, the end token and some padding rows),
one store row each, with `doc_id` = the caption's index and `position` = the token index.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.errors import SAEConfigError


@torch.no_grad()
def harvest_t5_rows(
    pipeline: str | Path,
    captions: list[str],
    out: str | Path,
    *,
    tokens_per_caption: int = 24,
    batch_size: int = 64,
    overwrite: bool = False,
) -> dict:
    """Write a store of T5 token rows of `captions` through `pipeline`'s `encode_prompt`; its manifest."""
    from saekit.data.store import StoreWriter
    from saekit.testbed.fluxbed.build import load_pipeline

    if not captions:
        raise SAEConfigError("harvest_t5_rows: no captions given")
    if tokens_per_caption < 1:
        raise SAEConfigError(f"tokens_per_caption must be >= 1, found {tokens_per_caption}")
    pipe = load_pipeline(str(pipeline))
    pe = pipe.encode_prompt(prompt=captions[:1], prompt_2=None)[0]
    if tokens_per_caption > pe.shape[1]:
        raise SAEConfigError(
            f"tokens_per_caption {tokens_per_caption} > the T5 sequence length {pe.shape[1]}"
        )
    fields = {
        "model": str(pipeline),
        "hook_point": "prompt_embeds",
        "stream": "text",
        "layer": None,
        "d": int(pe.shape[-1]),
        "dtype": "float32",
        "model_dtype": "float32",
        "corpus": f"{len(captions)} captions",
        "position": "T5 token index in prompt_embeds; doc_id = caption index",
        "tokens_per_caption": tokens_per_caption,
    }
    writer = StoreWriter(out, fields, resume=False, overwrite=overwrite)
    n = tokens_per_caption
    for b in range(0, len(captions), batch_size):
        chunk = captions[b : b + batch_size]
        rows = pipe.encode_prompt(prompt=chunk, prompt_2=None)[0][:, :n].float()  # [B, n, d]
        m = len(chunk)
        meta = {
            "doc_id": torch.arange(b, b + m).repeat_interleave(n),
            "position": torch.arange(n).repeat(m),
        }
        writer.add(rows.reshape(m * n, -1), meta, unit=b // batch_size)
    return writer.close()
