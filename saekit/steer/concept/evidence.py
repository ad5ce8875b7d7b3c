"""Concept evidence at one hook point: activations on concept vs other texts -> every selection.

This is where the model meets `saekit.steer.concept.select`: it runs the concept texts through the model,
flags outlier features, and returns one `Selection` per method plus the DiffMean vector, so the
sweep and `saekit steer --concept` choose features the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from saekit.steer.concept.diffmean import diffmean_direction, text_activations
from saekit.steer.concept.output_score import concept_token_ids, feature_output_scores
from saekit.steer.concept.select import (
    Selection,
    decompose_direction,
    flag_outliers,
    sae_ts,
    select_by_input,
    select_by_output,
    top_candidates,
)
from saekit.steer.concept.supervised import FitConfig


@dataclass(frozen=True)
class SelectionConfig:
    """How features are chosen for a concept (shared by `saekit sweep` and `saekit steer --concept`)."""

    n_features: int = 1
    """Features steered together by the input and output selections."""
    n_candidates: int = 24
    """Input-contrast candidates re-scored by their output effect."""
    decompose_k: int = 4
    """Decoder directions in the DiffMean decomposition."""
    sae_ts_lambda: float = 1.0
    """SAE-TS weight of the off-target penalty (0 = the target's encoder direction)."""
    score_strength: float = 0.5
    """Push used for output scores, as a fraction of the mean activation norm."""
    n_concept_tokens: int = 24
    """Concept tokens whose log-probability the output score reads."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Supervised steering (`sparse`, `free`): steps, rate, L1, the k grid."""
    confidence_candidates: int = 32
    """Candidates the token-confidence selection scores (contrast and DiffMean-cosine, alternately)."""


@dataclass
class ConceptEvidence:
    """Everything chosen for one concept at one hook point."""

    selections: dict[str, Selection]
    """Selection method -> Selection (a failed method is absent and its reason is in `errors`)."""
    diffmean: Tensor = field(repr=False)
    """`[d]` DiffMean vector (concept mean minus other mean)."""
    flagged: Tensor = field(repr=False)
    """`[d_sae]` bool: outlier / dense features never chosen."""
    concept_tokens: list[int] = field(default_factory=list)
    """Token ids the output score reads."""
    errors: dict[str, str] = field(default_factory=dict)
    """Selection method -> why it found nothing."""
    fit_info: dict = field(default_factory=dict)
    """Supervised fits (`sparse`, `free`): chosen k, losses, fitted norms."""


def activation_norm(acts_ND: Tensor, cal) -> float:
    """Mean activation norm from the calibration when there is one, else from these activations."""
    return float(cal.mean_norm) if cal is not None else float(acts_ND.float().norm(dim=-1).mean())


@torch.no_grad()
def gather_evidence(
    model,
    tokenizer,
    sae,
    hook_point: str,
    concept_texts: Sequence[str],
    other_texts: Sequence[str],
    score_prompts: Sequence[Tensor],
    *,
    cfg: SelectionConfig = SelectionConfig(),
    cal=None,
    methods: Sequence[str] = ("input", "output", "decompose", "sae_ts"),
    acts_pos: Tensor | None = None,
    acts_neg: Tensor | None = None,
    supervision=None,
    description: str = "",
) -> ConceptEvidence:
    """Run every selection in `methods` for one concept (activations may be passed in to reuse them).

    `supervision` (a `saekit.steer.concept.learned.Supervision`, or a function returning one, called
    once when needed) feeds the supervised (`sparse`, `free`) and `confidence` selections;
    `description` (the concept's name/description) adds its words to the confidence's concept tokens."""
    from saekit.errors import SteeringError

    pos = text_activations(model, tokenizer, hook_point, concept_texts) if acts_pos is None else acts_pos
    neg = text_activations(model, tokenizer, hook_point, other_texts) if acts_neg is None else acts_neg
    cal_max = None if cal is None else cal.max_active
    flagged = flag_outliers(sae, torch.cat([pos, neg]), calibration_max=cal_max)
    ev = ConceptEvidence({}, diffmean_direction(pos, neg), flagged)
    steps = {
        "input": lambda: select_by_input(sae, pos, neg, k=cfg.n_features, flagged=flagged,
                                         n_scores=cfg.n_candidates),
        "output": lambda: _output(model, tokenizer, sae, hook_point, pos, neg, concept_texts, other_texts,
                                  score_prompts, cfg, cal, flagged, ev),
        "decompose": lambda: decompose_direction(sae, ev.diffmean, k=cfg.decompose_k, flagged=flagged),
        "sae_ts": lambda: _sae_ts(ev, sae, cfg),
        "sparse": lambda: _supervised("sparse", ctx, model, sae, hook_point, pos, cfg, cal, ev, methods),
        "free": lambda: _supervised("free", ctx, model, sae, hook_point, pos, cfg, cal, ev, methods),
        "confidence": lambda: _confidence(ctx, model, tokenizer, sae, hook_point, pos, neg, concept_texts,
                                          other_texts, cfg, cal, ev),
    }  # fmt: skip
    ctx = {"supervision": supervision, "tokenizer": tokenizer, "description": description}
    for name in methods:
        try:
            ev.selections[name] = steps[name]()
        except SteeringError as exc:
            ev.errors[name] = str(exc)
    return ev


def _output(model, tok, sae, hp, pos, neg, c_texts, o_texts, prompts, cfg, cal, flagged, ev) -> Selection:
    from saekit.steer.concept.select import input_contrast

    ev.concept_tokens = concept_token_ids(tok, c_texts, o_texts, cfg.n_concept_tokens)
    cands = top_candidates(input_contrast(sae, pos, neg), cfg.n_candidates, flagged)
    length = cfg.score_strength * activation_norm(pos, cal)
    scores = feature_output_scores(model, hp, sae, cands, list(prompts), ev.concept_tokens, length)
    return select_by_output(scores, k=cfg.n_features)


def _sae_ts(ev: ConceptEvidence, sae, cfg: SelectionConfig) -> Selection:
    from saekit.errors import SteeringError

    base = ev.selections.get("output") or ev.selections.get("input")
    if base is None:
        raise SteeringError("SAE-TS targets the output- or input-selected features; neither found any")
    return sae_ts(sae, list(base.features), lam=cfg.sae_ts_lambda)


def _supervision(ctx: dict):
    from saekit.errors import SteeringError

    sup = ctx.get("supervision")
    if sup is None:
        raise SteeringError("supervised selections need train-prompt supervision (pass supervision=)")
    if callable(sup):
        sup = ctx["supervision"] = sup()
    return sup


def _supervised(name, ctx, model, sae, hp, pos, cfg, cal, ev, methods) -> Selection:
    """The sparse fit or its free twin (both fitted in one pass when both are asked for)."""
    from saekit.steer.concept.learned import fit_concept

    if name not in ctx.setdefault("fits", {}):
        which = [m for m in ("sparse", "free") if m in methods and m not in ctx["fits"]]
        pad = getattr(ctx.get("tokenizer"), "pad_token_id", None) or 0
        fits = fit_concept(model, sae, hp, _supervision(ctx), scale=activation_norm(pos, cal), cfg=cfg.fit,
                           flagged=ev.flagged, which=which, pad_id=pad)  # fmt: skip
        ctx["fits"].update({"sparse": fits.sparse, "free": fits.free} if len(which) == 2 else
                           {name: getattr(fits, name)})  # fmt: skip
        ev.fit_info.update({k: v for k, v in fits.info.items() if k in which})
    return ctx["fits"][name]


def _confidence(ctx, model, tok, sae, hp, pos, neg, c_texts, o_texts, cfg, cal, ev) -> Selection:
    from saekit.steer.concept.confidence import (
        confidence_candidates,
        confidence_rises,
        description_token_ids,
        rank_by_confidence,
    )
    from saekit.steer.concept.select import input_contrast

    sup = _supervision(ctx)
    ids = concept_token_ids(tok, c_texts, o_texts, cfg.n_concept_tokens)
    ids += [t for t in description_token_ids(tok, ctx.get("description") or "") if t not in ids]
    D = sae.decoder_directions().detach()
    cands = confidence_candidates(input_contrast(sae, pos, neg), D, ev.diffmean, cfg.confidence_candidates,
                                  ev.flagged)  # fmt: skip
    length = cfg.score_strength * activation_norm(pos, cal)
    rises = confidence_rises(model, hp, D[cands], sup.neutral, ids, length)
    return rank_by_confidence({int(j): float(r) for j, r in zip(cands, rises)}, k=cfg.n_features)
