"""Activations of a loaded model for one batch: pure functions (no stores, no files).

The harvest drivers in `saekit.data.harvest` call these and decide what to keep; eval, analysis and
benchmarks can call them too. Reading goes through `saekit.hooks.capture`, so the forward pass stops
right after the deepest hooked module (a mid-depth layer skips half the layers and the LM head).
"""

from __future__ import annotations

import torch

from saekit.errors import ShapeError


def lm_activations(
    lm, hook_points: list, ids: torch.Tensor, mask: torch.Tensor, *, stop_early: bool = True
) -> dict[str, torch.Tensor]:
    """`{str(hook point): [batch, tokens, d]}` for token ids `[batch, tokens]` of a LoadedModel.

    Causal LMs run without a KV cache (right padding: real tokens never attend to padding); encoders
    get the attention mask.
    """
    from saekit.hooks import capture

    kwargs = {"input_ids": ids}
    if lm.kind == "encoder":
        kwargs["attention_mask"] = mask.long()
    else:
        kwargs["use_cache"] = False
    with torch.inference_mode(), capture(lm.model, hook_points, stop_after_last=stop_early) as cap:
        lm.model(**kwargs)
    out = {}
    for hp in hook_points:
        x = cap.activations[str(hp)]
        if x.ndim != 3 or x.shape[:2] != ids.shape:
            raise ShapeError(
                f"hook point {str(hp)!r} gave {list(x.shape)}; harvest needs [batch, tokens, d] = "
                f"[{ids.shape[0]}, {ids.shape[1]}, d]"
            )
        out[str(hp)] = x
    return out


def norm_outliers(x_BTD: torch.Tensor, keep_BT: torch.Tensor, ratio: float) -> torch.Tensor:
    """`[batch, tokens]` bool: kept tokens whose norm exceeds `ratio` x the median kept norm.

    These are attention sinks that are not at position 0 (e.g. a context's first newline on SmolLM2):
    a few rows with 100x the typical norm would dominate an SAE's reconstruction loss.
    """
    if ratio <= 0 or not keep_BT.any():
        return torch.zeros_like(keep_BT)
    norms = x_BTD.float().norm(dim=-1)
    return keep_BT & (norms > ratio * norms[keep_BT].median())
