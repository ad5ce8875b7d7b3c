"""Feature selection by token confidence: which decoder direction, added, makes the model more confident
in the concept's tokens (after Wang et al. 2025, "ΔToken-confidence").

For each candidate feature `j`, add `length · d_j` at the hook point on every position of a few train
prompts followed by the unsteered model's own continuation (teacher-forced), and read the log of the
probability mass on the concept's tokens at every position from the prompt's last token on:

    rise_j = mean_{prompts, positions} [ log Σ_{t∈C} p_steered(t) − log Σ_{t∈C} p_unsteered(t) ]

Concept tokens `C`: word tokens frequent in the concept's texts and rare in the others, plus the words
of its name and description. Candidates: the top input-contrast features *and* the features whose
decoder direction is closest to DiffMean, so features that write the concept without firing on it
(output features) get a chance. Differs from the `output` selection (which reads only the last
prompt position, over input-contrast candidates only) in both respects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.steer.concept.select import Selection, _equal, top_candidates

_STOP = {"and", "the", "with", "for", "their", "about", "from", "into", "its", "that", "this", "of"}


def description_token_ids(tokenizer, words: str) -> list[int]:
    """Single-token words (with a leading space, and capitalised) of a concept's name/description."""
    out: list[int] = []
    for w in re.findall(r"[A-Za-z]{3,}", words):
        if w.lower() in _STOP:
            continue
        for form in (" " + w.lower(), " " + w.capitalize()):
            ids = tokenizer(form)["input_ids"]
            if len(ids) == 1 and ids[0] not in out:
                out.append(ids[0])
    return out


def confidence_candidates(
    contrast_F: Tensor, directions_FD: Tensor, diffmean_D: Tensor, n: int, flagged: Tensor | None = None
) -> list[int]:
    """Up to `n` candidates: alternately the next best by input contrast and by decoder cosine with
    DiffMean (both positive only), flagged features excluded."""
    u_D = diffmean_D.float().cpu()
    cos = directions_FD.float().cpu() @ (u_D / u_D.norm().clamp_min(1e-12))
    a, b = top_candidates(contrast_F, n, flagged), top_candidates(cos, n, flagged)
    out: list[int] = []
    for pair in zip(a + [None] * (n - len(a)), b + [None] * (n - len(b))):
        for j in pair:
            if j is not None and j not in out and len(out) < n:
                out.append(j)
    return out


def rank_by_confidence(rises: dict[int, float], *, k: int = 1, min_rise: float = 0.0) -> Selection:
    """The `k` candidates with the largest rise (only those above `min_rise`), equal weights."""
    good = sorted((j for j, r in rises.items() if r > min_rise), key=lambda j: -rises[j])
    if not good:
        raise SteeringError("no candidate feature raises the concept tokens' probability when added")
    chosen = good[:k]
    return Selection("confidence", tuple(chosen), _equal(len(chosen)), dict(rises), None)


@torch.no_grad()
def confidence_rises(
    model,
    hook_point: str,
    directions_ND: Tensor,
    sequences: Sequence[tuple[Tensor, Tensor]],
    concept_ids: Sequence[int],
    length: float,
    *,
    batch_size: int = 16,
) -> Tensor:
    """`[N]` mean rise of the concept tokens' log-mass (module docstring) for each direction, over
    `sequences` of (prompt ids `[P]`, continuation ids `[T]`)."""
    from saekit.steer.apply import steering
    from saekit.steer.concept.output_score import concept_logmass

    if not sequences:
        raise SteeringError("token confidence needs at least one train prompt")
    dev = next(model.parameters()).device
    u = directions_ND.float()
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    total = torch.zeros(u.shape[0])
    for prompt, cont in sequences:
        ids_1S = torch.cat([prompt, cont[:-1]])[None].to(dev)
        first = prompt.numel() - 1  # the prompt's last token predicts the first new one
        base = concept_logmass(model(input_ids=ids_1S).logits[0, first:], concept_ids).mean()
        for b in range(0, u.shape[0], batch_size):
            shift_B1D = (length * u[b : b + batch_size])[:, None, :].to(dev)
            ids = ids_1S.repeat(shift_B1D.shape[0], 1)
            with steering(model, hook_point, lambda x, s=shift_B1D: x + s.to(x.dtype)):
                logits = model(input_ids=ids).logits[:, first:]
            B, T, Vv = logits.shape
            lm = concept_logmass(logits.reshape(B * T, Vv), concept_ids).reshape(B, T).mean(-1)
            total[b : b + batch_size] += (lm - base).cpu()
    return total / len(sequences)
