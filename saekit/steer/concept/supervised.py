"""Supervised steering vectors: fit a vector to a loss, in a few SAE decoder directions or freely.

Pure math over a differentiable `loss_fn(v_D) -> scalar` (the glue in `saekit.steer.concept.learned`
builds it from a language model: cross-entropy of concept continuations with `v` added at the hook
point). Nothing here touches a model or a hook, so the fits can be tested on synthetic losses with
known optima.

- `fit_sparse`: `v = scale · Σ_j c_j d_j` over unit decoder directions `d_j` of `n` candidate
  features, `c ≥ 0` (each feature pushed the way it writes, so the result reads as a list of
  (feature, weight)). Support by L1-then-top-k: minimise `loss + λ Σ c_j` over all candidates, rank by
  `c_j`, keep the top `k` for every `k` in the grid, refit each without the penalty (warm start), and
  choose the smallest `k` whose validation gain is within `tolerance` of the best one.
- `fit_free`: the non-sparse twin, `v = scale · w` with `w ∈ R^d` free (a rank-1, ReFT-style additive
  intervention), trained the same way; its one validation choice is when to stop (k is the sparse's).

Both use the same optimiser (`_descend`: normalised gradient steps with momentum, cosine-decayed), so
a step moves `v` about `lr · scale` in activation space whatever the number of parameters: the sparse
and free fits take equally long steps, and the price of sparsity is not a price of the optimiser.
`scale` is the activation norm at the hook, so `lr` and `λ` are unit-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from saekit.errors import SteeringError

LossFn = Callable[[Tensor], Tensor]
"""`v [d] (float32, requires grad) -> scalar loss`."""


@dataclass(frozen=True)
class FitConfig:
    """How supervised steering vectors are fitted (shared by the sparse fit and its free twin)."""

    steps: int = 15
    """Steps of the L1 stage (sparse) and of the free fit (which also gets `refit_steps`)."""
    refit_steps: int = 3
    """Steps refitting each support size k (warm-started from the L1 stage)."""
    lr: float = 0.05
    """Step length in activation-norm units (decayed to 10% over a fit)."""
    l1: float = 0.02
    """L1 weight on the coefficients (in activation-norm units) during the support stage."""
    k_grid: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Support sizes tried; the chosen one is the smallest within `tolerance` of the best."""
    tolerance: float = 0.05
    """Relative slack on the validation gain (loss at v=0 minus loss at the fit) when choosing k."""
    check_every: int = 3
    """The free fit's validation checkpoints: every this many steps (the best one is kept)."""
    n_candidates: int = 32
    """Candidate features (top by first-order loss decrease, `candidates_by_gradient`)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.refit_steps < 0:
            raise SteeringError(
                f"steps must be >= 1 and refit_steps >= 0, found {self.steps}, {self.refit_steps}"
            )
        if not self.k_grid or min(self.k_grid) < 1:
            raise SteeringError(f"k_grid must list support sizes >= 1, found {self.k_grid}")
        if self.lr <= 0 or self.l1 < 0:
            raise SteeringError(f"lr must be > 0 and l1 >= 0, found lr={self.lr}, l1={self.l1}")


@dataclass(frozen=True)
class SparseFit:
    """A steering vector in `k` decoder directions, and how it was chosen."""

    features: tuple[int, ...]
    """Chosen feature ids, largest weight first."""
    weights: tuple[float, ...]
    """Coefficient per feature in activation units (`vector = Σ w_j d_j`, d_j unit)."""
    vector: Tensor = field(repr=False)
    """`[d]` the fitted vector (activation units)."""
    k: int = 0
    """Chosen support size."""
    losses: dict[int, tuple[float, float]] = field(default_factory=dict)
    """k -> (train loss, validation loss) after its refit."""
    base_loss: tuple[float, float] = (math.nan, math.nan)
    """(train, validation) loss at v = 0."""
    l1_coefficients: dict[int, float] = field(default_factory=dict)
    """Candidate -> coefficient after the L1 stage (the ranking; activation units)."""


@dataclass(frozen=True)
class FreeFit:
    """The non-sparse twin: a free `[d]` vector fitted the same way."""

    vector: Tensor = field(repr=False)
    """`[d]` activation units."""
    loss: tuple[float, float] = (math.nan, math.nan)
    """(train, validation) loss at the fit."""
    base_loss: tuple[float, float] = (math.nan, math.nan)
    """(train, validation) loss at v = 0."""
    step: int = 0
    """The step whose checkpoint was kept (lowest validation loss)."""


def _descend(
    params: list[Tensor], loss_of: Callable[[], Tensor], steps: int, lr: float, project=None, after=None
) -> None:
    """`steps` of normalised gradient descent with momentum: each step moves every parameter tensor a
    length `lr` (cosine-decayed to 10%) along its momentum-averaged negative gradient; `project()` after
    each step, then `after(t)` (t 1-based).

    Rotation-invariant (unlike Adam, whose first steps follow the gradient's *signs*: in 576 free
    dimensions a sign vector points far from the gradient), and the step length is the same in
    activation space for a free vector and for coefficients over unit directions, so the sparse and
    free fits are trained alike."""
    if steps <= 0:
        return
    moms = [torch.zeros_like(p) for p in params]
    for t in range(steps):
        rate = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / steps)))
        for p in params:
            p.grad = None
        loss_of().backward()
        with torch.no_grad():
            for p, m in zip(params, moms):
                m.mul_(0.5).add_(p.grad, alpha=0.5)
                p.sub_(rate * m / m.norm().clamp_min(1e-12))
            if project is not None:
                project()
        if after is not None:
            after(t + 1)


def loss_value(loss_fn: LossFn, v_D: Tensor) -> float:
    """`loss_fn(v)` as a float, without building a graph."""
    with torch.no_grad():
        return float(loss_fn(v_D.detach()))


def loss_gradient(loss_fn: LossFn, v_D: Tensor) -> Tensor:
    """`∇_v loss` at `v` (`[d]`)."""
    v = v_D.detach().clone().float().requires_grad_(True)
    with torch.enable_grad():
        loss_fn(v).backward()
    return v.grad.detach()


def candidates_by_gradient(
    grad_D: Tensor, directions_FD: Tensor, n: int, exclude: Tensor | None = None
) -> list[int]:
    """The `n` features whose unit decoder direction decreases the loss fastest at the current point
    (`−d_j · ∇loss`, largest first; only those that decrease it), `exclude` (bool `[F]`) skipped."""
    rate_F = -(directions_FD.float() @ grad_D.float().to(directions_FD.device)).cpu()
    if exclude is not None:
        rate_F[exclude.cpu()] = float("-inf")
    n = min(n, int((rate_F > 0).sum()))
    if n == 0:
        raise SteeringError("no decoder direction decreases the loss to first order; nothing to fit")
    return rate_F.topk(n).indices.tolist()


def fit_sparse(
    loss_fn: LossFn,
    directions_FD: Tensor,
    candidates: Sequence[int],
    *,
    scale: float,
    cfg: FitConfig = FitConfig(),
    val_loss_fn: LossFn | None = None,
) -> SparseFit:
    """Fit `v = scale · Σ c_j d_j` (`c ≥ 0`) over `candidates` (rows of unit `directions_FD`), choose
    `k` from `cfg.k_grid` on the validation loss (`val_loss_fn`, default the train loss); see the
    module docstring."""
    if not candidates:
        raise SteeringError("supervised sparse steering needs at least one candidate feature")
    val_fn = val_loss_fn or loss_fn
    cand = list(candidates)
    D_nD = directions_FD[cand].detach().float().cpu()
    zero = torch.zeros(D_nD.shape[1])
    base = (loss_value(loss_fn, zero), loss_value(val_fn, zero))
    c = torch.zeros(len(cand), requires_grad=True)

    def clamp_c(p=c):
        p.clamp_(min=0)

    with torch.enable_grad():
        _descend([c], lambda: loss_fn(scale * (c @ D_nD)) + cfg.l1 * c.sum(), cfg.steps, cfg.lr, clamp_c)
    c_l1 = c.detach().clone()
    order = c_l1.argsort(descending=True, stable=True).tolist()
    fits: dict[int, tuple[list[int], Tensor]] = {}
    losses: dict[int, tuple[float, float]] = {}
    for k in sorted(set(min(k, len(cand)) for k in cfg.k_grid)):
        # candidates the L1 stage zeroed still enter (near 0) when k exceeds its survivors
        idx = order[:k]
        ck = c_l1[idx].clone().clamp_min(1e-3).requires_grad_(True)
        Dk = D_nD[idx]

        def clamp_k(p=ck):
            p.clamp_(min=0)

        with torch.enable_grad():
            _descend([ck], lambda ck=ck, Dk=Dk: loss_fn(scale * (ck @ Dk)), cfg.refit_steps, cfg.lr, clamp_k)
        v = scale * (ck.detach() @ Dk)
        losses[k] = (loss_value(loss_fn, v), loss_value(val_fn, v))
        fits[k] = (idx, ck.detach())
    k = choose_k({k: val for k, (_, val) in losses.items()}, base[1], cfg.tolerance)
    idx, ck = fits[k]
    keep = [i for i in range(len(idx)) if float(ck[i]) > 0] or [int(ck.argmax())]
    feats = [cand[idx[i]] for i in keep]
    w = (scale * ck[keep]).tolist()
    pairs = sorted(zip(feats, w), key=lambda p: -p[1])
    vec = scale * (ck[keep] @ D_nD[[idx[i] for i in keep]])
    return SparseFit(
        tuple(int(j) for j, _ in pairs),
        tuple(float(x) for _, x in pairs),
        vec,
        k,
        losses,
        base,
        {int(cand[i]): float(scale * c_l1[i]) for i in order if float(c_l1[i]) > 0},
    )


def choose_k(val_losses: dict[int, float], base_val: float, tolerance: float) -> int:
    """The smallest `k` whose gain `base − loss` is at least `(1 − tolerance)` × the best gain (the
    smallest k when nothing gains)."""
    ks = sorted(val_losses)
    best_gain = max(base_val - val_losses[k] for k in ks)
    if not best_gain > 0:
        return ks[0]
    return next(k for k in ks if base_val - val_losses[k] >= (1 - tolerance) * best_gain)


def fit_free(
    loss_fn: LossFn,
    d: int,
    *,
    scale: float,
    cfg: FitConfig = FitConfig(),
    val_loss_fn: LossFn | None = None,
) -> FreeFit:
    """Fit a free `v = scale · w` (`w [d]`, from 0) with the same optimiser and step length as the
    sparse fit, without a penalty (the rank-1 ReFT-style / learned-additive baseline), for
    `steps + refit_steps` steps; kept: the checkpoint (every `check_every` steps) with the lowest
    validation loss. With 576 free parameters and a few target texts the train loss keeps falling
    long after the validation loss rises: this early stop is the free vector's one hyper-parameter
    chosen on validation, as k is the sparse fit's."""
    val_fn = val_loss_fn or loss_fn
    zero = torch.zeros(d)
    base = (loss_value(loss_fn, zero), loss_value(val_fn, zero))
    w = torch.zeros(d, requires_grad=True)
    total = cfg.steps + cfg.refit_steps
    best: dict = {}

    def checkpoint(t: int) -> None:
        if t % cfg.check_every and t != total:
            return
        v = scale * w.detach().clone()
        val = loss_value(val_fn, v)
        if "val" not in best or val < best["val"]:
            best.update(val=val, v=v, step=t)

    with torch.enable_grad():
        _descend([w], lambda: loss_fn(scale * w), total, cfg.lr, after=checkpoint)
    v = best["v"]
    return FreeFit(v, (loss_value(loss_fn, v), best["val"]), base, best["step"])
