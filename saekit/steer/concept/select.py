"""Which SAE features to steer for a concept: pure tensor math (no model, no hooks).

Four ways to turn concept evidence into a steering edit, compared by `saekit sweep`:
- `input`     : features that fire on concept text more than on other text (activation contrast) —
                the classic choice, and the one that fails most (Arad, Mueller, Belinkov 2025: many
                such features *detect* the concept without *producing* it);
- `output`    : the input candidates re-ranked by how much steering with each one raises the
                log-probability of concept tokens (`saekit.steer.concept.output_score`), those that do not
                raise it dropped;
- `decompose` : the DiffMean vector written as a non-negative combination of a few decoder
                directions (matching pursuit), steered with all of them at once;
- `sae_ts`    : SAE-targeted steering (Chalnev, Siu, Conmy 2024): the vector `v` that raises the
                chosen features' pre-activations while keeping every other feature's change small,
                `argmax_v  Σ_t a_t·v − λ/2 |A_o v|² − μ/2 |v|²`, solved in closed form.

Features whose activation is driven by outlier rows (a huge-norm residual row such as the attention
sink, or a dense feature on every token) are flagged by `flag_outliers` and never chosen: their
`max` unit is set by a row unlike any text (the demo's feature 6566 at `4max` erased the continuation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from saekit.errors import SteeringError


@dataclass(frozen=True)
class Selection:
    """Features chosen for a concept and the evidence, ready to steer."""

    method: str
    """Selection method (`input`, `output`, `decompose`, `sae_ts`)."""
    features: tuple[int, ...]
    """Chosen feature ids, best first."""
    weights: tuple[float, ...]
    """Relative weight of each feature in the edit (sum of squares 1 over the decoder directions)."""
    scores: dict[int, float] = field(default_factory=dict)
    """Candidate -> score under this method (for `--explain-concept`)."""
    direction: Tensor | None = field(default=None, repr=False)
    """`[d]` steering vector when the method produces one (decompose, sae_ts); else None."""


@torch.no_grad()
def flag_outliers(
    sae,
    acts_ND: Tensor,
    *,
    norm_ratio: float = 4.0,
    dense_frac: float = 0.5,
    max_ratio: float = 3.0,
    calibration_max: Tensor | None = None,
) -> Tensor:
    """Bool `[d_sae]`: features not to steer.

    A row is an outlier when its norm exceeds `norm_ratio` × the median row norm. A feature is
    flagged when (a) its max over outlier rows exceeds `max_ratio` × its max over ordinary rows (its
    max, hence its `max` unit, comes from outliers), (b) it fires on more than `dense_frac` of the
    ordinary rows (dense: no concept), or (c) `calibration_max` (from `saekit scale`) exceeds
    `max_ratio` × its max on ordinary rows *and* it fires on ordinary rows rarely — the calibration
    corpus saw an outlier row that this text does not contain.
    """
    f = sae.encode(acts_ND.to(sae.dtype)).float().cpu()
    norms = acts_ND.float().norm(dim=-1).cpu()
    outlier = norms > norm_ratio * norms.median()
    normal_f = f[~outlier] if (~outlier).any() else f
    max_normal = normal_f.max(0).values.clamp_min(0)
    flagged = (normal_f > 0).float().mean(0) > dense_frac
    if outlier.any():
        max_out = f[outlier].max(0).values
        flagged |= max_out > max_ratio * max_normal.clamp_min(1e-6)
    if calibration_max is not None:
        cal = calibration_max.float().cpu()
        rare = (normal_f > 0).float().mean(0) < 0.01
        flagged |= (cal > max_ratio * max_normal.clamp_min(1e-6)) & rare & (max_normal > 0)
    return flagged


def input_contrast(sae, acts_pos_ND: Tensor, acts_neg_ND: Tensor) -> Tensor:
    """`[d_sae]` mean latent on concept rows minus mean latent on other rows."""
    with torch.no_grad():
        f_pos = sae.encode(acts_pos_ND.to(sae.dtype)).float()
        f_neg = sae.encode(acts_neg_ND.to(sae.dtype)).float()
    return (f_pos.mean(0) - f_neg.mean(0)).cpu()


def top_candidates(scores_F: Tensor, n: int, exclude: Tensor | None = None) -> list[int]:
    """The `n` highest-scoring ids with a positive score, skipping `exclude` (bool mask)."""
    s = scores_F.clone().float()
    if exclude is not None:
        s[exclude] = float("-inf")
    n = min(n, int((s > 0).sum()))
    return s.topk(n).indices.tolist() if n > 0 else []


def select_by_input(sae, acts_pos_ND, acts_neg_ND, *, k: int = 1, flagged=None, n_scores=16) -> Selection:
    """Top-`k` features by activation contrast (flagged ones excluded)."""
    contrast = input_contrast(sae, acts_pos_ND, acts_neg_ND)
    cands = top_candidates(contrast, max(k, n_scores), flagged)
    if not cands:
        raise SteeringError(
            "no SAE feature is more active on the concept texts than on the others (after dropping "
            "outlier features); give more or clearer concept sentences"
        )
    chosen = cands[:k]
    return Selection(
        "input", tuple(chosen), _equal(len(chosen)), {j: float(contrast[j]) for j in cands}, None
    )


def select_by_output(output_scores: dict[int, float], *, k: int = 1, min_score: float = 0.0) -> Selection:
    """Top-`k` candidates by output score; candidates that do not raise the concept are dropped."""
    good = sorted((j for j, s in output_scores.items() if s > min_score), key=lambda j: -output_scores[j])
    if not good:
        raise SteeringError(
            "none of the candidate features raises the concept's tokens when steered; try more "
            "candidates (--n-candidates), another layer, or DiffMean"
        )
    chosen = good[:k]
    return Selection("output", tuple(chosen), _equal(len(chosen)), dict(output_scores), None)


def _equal(n: int) -> tuple[float, ...]:
    return tuple([1.0 / n**0.5] * n)


@torch.no_grad()
def decompose_direction(sae, direction_D: Tensor, *, k: int = 4, flagged: Tensor | None = None) -> Selection:
    """Write `direction ≈ Σ c_j d_j` (unit decoder directions, c_j ≥ 0) with at most `k` features.

    Non-negative orthogonal matching pursuit: pick the direction most aligned with the residual,
    refit all chosen coefficients by least squares (clamped at 0), repeat. Returns the chosen
    features, their normalised coefficients and the reconstructed direction (what gets steered).
    """
    D = sae.decoder_directions().float().cpu()  # [F, d] unit rows
    v = direction_D.float().cpu()
    if float(v.norm()) == 0:
        raise SteeringError("DiffMean direction is zero: the concept and other texts have equal means")
    chosen: list[int] = []
    coef = torch.zeros(0)
    resid = v.clone()
    for _ in range(k):
        corr = D @ resid
        if flagged is not None:
            corr[flagged.cpu()] = float("-inf")
        if chosen:
            corr[chosen] = float("-inf")
        j = int(corr.argmax())
        if not float(corr[j]) > 1e-4 * float(v.norm()):
            break
        chosen.append(j)
        coef = torch.linalg.lstsq(D[chosen].T, v[:, None]).solution[:, 0].clamp_min(0)
        resid = v - coef @ D[chosen]
    keep = [i for i, c in enumerate(coef.tolist()) if c > 0]
    if not keep:
        raise SteeringError("no decoder direction has a positive overlap with the DiffMean direction")
    feats, c = [chosen[i] for i in keep], coef[keep]
    recon = c @ D[feats]
    w = c / recon.norm()
    return Selection(
        "decompose",
        tuple(feats),
        tuple(w.tolist()),
        {j: float(x) for j, x in zip(feats, c.tolist())},
        recon / recon.norm(),
    )


def encoder_effects(sae) -> Tensor:
    """`[d_sae, d]`: change of each feature's pre-activation per unit additive push (linear encoder).

    `pre(x + v) − pre(x) = input_scale · v W_enc`, exact for every saekit encoder's pre-activation
    (which feature then survives TopK/JumpReLU depends on the row; the pre-activation is what the
    edit controls).
    """
    return (sae.W_enc.detach().float() * float(sae.input_scale)).T.cpu()


def sae_ts_direction(
    effects_FD: Tensor, targets: list[int], *, lam: float = 1.0, mu: float = 1.0, target_weights=None
) -> Tensor:
    """Unit `[d]` vector raising `targets` while keeping the other features' change small.

    Maximises `Σ_t w_t a_t·v − λ/2 |A_o v|² − μ/2 |v|²`, whose stationary point solves
    `(λ A_oᵀA_o / c + μ I) v = Σ_t w_t a_t` (c = mean |a_t|², so λ is scale-free). With `λ = 0` this is
    the targets' own encoder direction.
    """
    if not targets:
        raise SteeringError("SAE-TS needs at least one target feature")
    F, d = effects_FD.shape
    w = torch.ones(len(targets)) if target_weights is None else torch.as_tensor(target_weights).float()
    rhs = w @ effects_FD[targets]
    others = torch.ones(F, dtype=torch.bool)
    others[targets] = False
    A_o = effects_FD[others]
    # off-target change measured in units of the targets' own gain, so λ does not depend on scale
    c = float((effects_FD[targets] ** 2).sum(-1).mean()) or 1.0
    v = torch.linalg.solve(lam * (A_o.T @ A_o) / c + mu * torch.eye(d), rhs)
    if float(rhs @ v) <= 0:
        raise SteeringError("SAE-TS: the solved vector does not raise the target features")
    return v / v.norm()


def sae_ts(sae, targets: list[int], *, lam: float = 1.0, effects_FD: Tensor | None = None) -> Selection:
    """SAE-TS selection for chosen target features (e.g. the output-selected ones)."""
    A = encoder_effects(sae) if effects_FD is None else effects_FD
    v = sae_ts_direction(A, list(targets), lam=lam)
    gain = A @ v
    return Selection(
        "sae_ts",
        tuple(targets),
        _equal(len(targets)),
        {j: float(gain[j]) for j in targets},
        v,
    )


def off_target_ratio(effects_FD: Tensor, v_D: Tensor, targets: list[int]) -> float:
    """RMS change of the non-target features over the mean target change for a push along `v`."""
    ch = effects_FD @ (v_D / v_D.norm())
    mask = torch.ones(len(ch), dtype=torch.bool)
    mask[targets] = False
    return float(ch[mask].pow(2).mean().sqrt() / ch[targets].mean().clamp_min(1e-12))
