"""Offline judges for steered text (AxBench's three scores without an LLM judge).

- concept    : MiniLM cosine of the continuation to the concept description, rescaled so 0 = as
               similar as the unsteered continuation of the same prompt and 1 = as similar as the
               concept's own reference texts are (clipped to [0, 1]). Raw cosines cluster in 0.0-0.5,
               so rescaling against known on/off-topic text is what makes 0.3 mean anything, and the
               unsteered model scores 0 by construction (concept *added*, as AxBench asks).
- fluency    : `min(1, ppl_ref / ppl) · min(1, distinct2 / distinct2_ref)`, perplexity of the continuation
               (read alone) under the *unsteered* model, relative to the unsteered continuation's;
               the distinct-bigram factor catches "sea sea sea" loops that an induction-happy model
               finds low-perplexity.
- relevance  : `min(1, cos(continuation, prompt) / cos_ref)`, MiniLM similarity to the instruction relative
               to the unsteered continuation's.
- overall    : harmonic mean of the three (0 if any is 0), as in AxBench.
Also the target feature's activation when the unsteered model re-reads the text (`reread`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from saekit.hooks import capture


class MiniLMJudge:
    """Sentence embeddings from the embedded all-MiniLM-L6-v2: mean pooling over tokens, L2-normalised
    (what sentence-transformers does for this model)."""

    def __init__(self, lm=None, max_length: int = 256):
        if lm is None:
            from saekit.models import load_model

            lm = load_model("minilm", dtype="float32")
        self.model, self.tokenizer, self.max_length = lm.model.eval(), lm.tokenizer, max_length

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> Tensor:
        out = []
        for b in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                list(texts[b : b + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**enc).last_hidden_state.float()
            m = enc["attention_mask"][..., None].float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 384)

    def cosine(self, a: Sequence[str], b: Sequence[str]) -> Tensor:
        """Pairwise-aligned cosines `[n]` (b may have length 1 and is broadcast)."""
        ea, eb = self.embed(a), self.embed(b)
        return (ea * eb).sum(-1)


@dataclass(frozen=True)
class TextScores:
    """Raw measurements for one continuation."""

    nll: float
    """Mean negative log-likelihood per continuation token under the unsteered model."""
    distinct2: float
    """Fraction of distinct token bigrams in the continuation (1 = no repetition)."""
    reread: float
    """Mean activation of the target feature over the continuation tokens on re-reading."""


def distinct_bigrams(ids: Sequence[int]) -> float:
    pairs = list(zip(ids[:-1], ids[1:]))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


@torch.no_grad()
def score_continuations(
    model, conts: Sequence[Tensor], *, sae=None, hook_point=None, feature: int | None = None
) -> list[TextScores]:
    """One batched forward of the unsteered model over the continuations *alone* (right padded).

    Alone, because fluency should judge the text, not how expected its topic was after the prompt
    (conditioning on the prompt would charge every on-concept continuation, prompting included, for
    changing the subject). NLL is averaged over tokens 2..n (token 1 has no context); the re-read
    feature activation is averaged over the same tokens (position 0 is an attention sink).
    """
    device = next(model.parameters()).device
    T = max([len(c) for c in conts] + [2])
    ids = torch.zeros(len(conts), T, dtype=torch.long)
    for i, c in enumerate(conts):
        ids[i, : len(c)] = c
    use_sae = sae is not None and hook_point is not None and feature is not None
    if use_sae:
        with capture(model, hook_point) as cap:
            logits = model(input_ids=ids.to(device)).logits.float().cpu()
        acts = cap.activations[str(hook_point)]
    else:
        logits = model(input_ids=ids.to(device)).logits.float().cpu()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    out = []
    for i, c in enumerate(conts):
        n = len(c)
        if n < 2:
            out.append(TextScores(float("nan"), 1.0, 0.0))
            continue
        tok_lp = logp[i, : n - 1].gather(-1, c[1:, None].cpu()).squeeze(-1)
        reread = 0.0
        if use_sae:
            f = sae.encode(acts[i, 1:n].to(sae.dtype))[:, feature]
            reread = float(f.float().mean())
        out.append(TextScores(float(-tok_lp.mean()), distinct_bigrams(c.tolist()), reread))
    return out


def harmonic_mean(*xs: float) -> float:
    if any(x <= 0 for x in xs):
        return 0.0
    return len(xs) / sum(1.0 / x for x in xs)


def clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def concept_score(cos: float, off: float, on: float) -> float:
    """Rescale a cosine: `off` (the unsteered continuation) -> 0, `on` (the concept's texts) -> 1."""
    return clip01((cos - off) / max(on - off, 1e-6))


def fluency_score(nll: float, nll_ref: float, distinct2: float, distinct2_ref: float) -> float:
    import math

    if math.isnan(nll):
        return 0.0
    ppl_ratio = math.exp(min(0.0, nll_ref - nll))
    return clip01(ppl_ratio * min(1.0, distinct2 / max(distinct2_ref, 1e-6)))
