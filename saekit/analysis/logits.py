"""Logit effects: which tokens a feature's decoder direction promotes and suppresses.

Approximation ("direct path, frozen norm scale"): the feature's unit decoder direction `d` is taken
straight to the unembedding, skipping every layer after the hook point, and the final norm is
linearised at a fixed scale: RMSNorm contributes `gamma * d` (LayerNorm `gamma * (d - mean(d))`),
the per-token `1 / rms(x)` factor is dropped. That factor is one positive number per position, so it
scales all logits equally and does not change which tokens rank top/bottom; the biases are constant
offsets and are dropped too. Effects are therefore in "logit per unit of normalised direction".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from saekit.errors import ModelLoadError

_NORM_PATHS = (
    "model.norm",
    "model.final_layernorm",
    "transformer.ln_f",
    "gpt_neox.final_layer_norm",
    "model.decoder.final_layer_norm",
    "norm",
    "ln_f",
)

APPROXIMATION = (
    "direct path from the hook point to the unembedding; final norm linearised (gamma * d, "
    "centred first for LayerNorm, 1/rms scale dropped: it rescales all logits equally)"
)


@dataclass(frozen=True)
class Unembed:
    """What the logit-effect computation needs from a causal LM."""

    W_U: Tensor
    """Unembedding `[vocab, d_model]`."""
    gamma: Tensor | None
    """Final norm's effective per-channel weight `[d_model]` (None: no final norm found)."""
    centre: bool
    """True for LayerNorm (subtract the mean first)."""


def find_unembed(model: nn.Module) -> Unembed:
    """Locate the output embedding and the final norm of a transformers causal LM."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is None or not hasattr(out, "weight"):
        raise ModelLoadError(
            f"{type(model).__name__} has no output embedding (get_output_embeddings() is None); "
            "logit effects need a causal LM with an unembedding matrix"
        )
    norm = None
    for path in _NORM_PATHS:
        try:
            norm = model.get_submodule(path)
            break
        except AttributeError:
            continue
    gamma, centre = None, False
    if norm is not None and getattr(norm, "weight", None) is not None:
        gamma = norm.weight.detach().float()
        if "gemma" in type(norm).__name__.lower():  # Gemma's RMSNorm multiplies by (1 + weight)
            gamma = 1 + gamma
        centre = isinstance(norm, nn.LayerNorm)
    return Unembed(out.weight.detach().float(), gamma, centre)


@dataclass(frozen=True)
class LogitEffect:
    """Top promoted and suppressed tokens of one feature."""

    feature: int
    promoted: list[tuple[int, float]]
    """(token id, effect) pairs, largest first."""
    suppressed: list[tuple[int, float]]
    """(token id, effect) pairs, most negative first."""


@torch.no_grad()
def logit_effects(
    directions_FD: Tensor, unembed: Unembed, features: list[int], k: int = 10
) -> list[LogitEffect]:
    """Effects of `directions_FD[features]` (unit decoder rows, `[d_sae, d_model]`) on every token."""
    d = directions_FD[features].detach().float()
    if unembed.centre:
        d = d - d.mean(-1, keepdim=True)
    if unembed.gamma is not None:
        d = d * unembed.gamma
    logits_FV = d @ unembed.W_U.T
    k = min(k, logits_FV.shape[1])
    top = logits_FV.topk(k, dim=1)
    bot = (-logits_FV).topk(k, dim=1)
    return [
        LogitEffect(
            f,
            list(zip(top.indices[i].tolist(), top.values[i].tolist())),
            list(zip(bot.indices[i].tolist(), (-bot.values[i]).tolist())),
        )
        for i, f in enumerate(features)
    ]
