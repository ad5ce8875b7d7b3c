"""Output scores: how far steering along a direction moves the next-token distribution to a concept.

For a candidate direction `u_n` (an SAE decoder direction, or any vector) and a few neutral prompts,
add `length · u_n` at the hook point on every position and read the log-probability mass the model
puts on the concept's tokens at the last position:

    score_n = mean_prompts [ log Σ_{t∈C} p_steered(t) − log Σ_{t∈C} p_unsteered(t) ]

A feature that fires on concept text but, pushed, does not make the model *say* the concept scores
near zero or below and is filtered out (Arad, Mueller, Belinkov 2025 call these input features, as
opposed to output features). All candidates for one prompt run as one batch, one row each.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.steer.apply import steering

_WORD = re.compile(r"^\s?[A-Za-z][A-Za-z0-9]{2,}$")


def concept_token_ids(
    tokenizer, concept_texts: Sequence[str], other_texts: Sequence[str], n: int = 24
) -> list[int]:
    """Word tokens frequent in the concept's texts and rare in the others (`n` at most).

    Ranked by `count_concept − 2 · count_other · |concept| / |other|`; only word tokens (a letter,
    then 2+ letters or digits), so punctuation, numbers and short articles never stand for a concept.
    """
    c = Counter(t for s in concept_texts for t in tokenizer(s)["input_ids"])
    o = Counter(t for s in other_texts for t in tokenizer(s)["input_ids"])
    ratio = max(1, sum(c.values())) / max(1, sum(o.values()))
    scored = []
    for tok, k in c.items():
        text = tokenizer.decode([tok])
        if not _WORD.match(text):
            continue
        scored.append((k - 2.0 * o.get(tok, 0) * ratio, tok))
    ids = [tok for s, tok in sorted(scored, reverse=True) if s > 0][:n]
    if not ids:
        raise SteeringError("no word token is specific to the concept's texts; give longer or clearer texts")
    return ids


def concept_logmass(logits_BV: Tensor, concept_ids: Sequence[int]) -> Tensor:
    """`[B]` log of the probability mass on the concept tokens (pure)."""
    logp = torch.log_softmax(logits_BV.float(), dim=-1)
    return torch.logsumexp(logp[:, list(concept_ids)], dim=-1)


@torch.no_grad()
def output_scores(
    model,
    hook_point: str,
    directions_ND: Tensor,
    prompt_ids: Sequence[Tensor],
    concept_ids: Sequence[int],
    length: float,
    *,
    batch_size: int = 16,
) -> Tensor:
    """`[N]` mean change in concept log-mass when adding `length · u_n` (see module docstring)."""
    if not prompt_ids:
        raise SteeringError("output scores need at least one prompt")
    dev = next(model.parameters()).device
    u = directions_ND.float()
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    total = torch.zeros(u.shape[0])
    for ids_1P in prompt_ids:
        base = concept_logmass(model(input_ids=ids_1P.to(dev)).logits[:, -1], concept_ids)
        for b in range(0, u.shape[0], batch_size):
            shift_B1D = (length * u[b : b + batch_size])[:, None, :]
            ids = ids_1P.repeat(shift_B1D.shape[0], 1).to(dev)

            def edit(x: Tensor, shift=shift_B1D) -> Tensor:
                return x + shift.to(x.device)

            with steering(model, hook_point, edit):
                logits = model(input_ids=ids).logits[:, -1]
            total[b : b + batch_size] += (concept_logmass(logits, concept_ids) - base).cpu()
    return total / len(prompt_ids)


def feature_output_scores(
    model, hook_point: str, sae, candidates: Sequence[int], prompt_ids, concept_ids, length: float
) -> dict[int, float]:
    """`output_scores` for SAE features (their unit decoder directions) -> `{feature: score}`."""
    if not candidates:
        return {}
    dirs = sae.decoder_directions()[list(candidates)].detach()
    s = output_scores(model, hook_point, dirs, prompt_ids, concept_ids, length)
    return {int(j): float(v) for j, v in zip(candidates, s)}
