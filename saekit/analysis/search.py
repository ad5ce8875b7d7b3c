"""The two searches behind `analyze synthetic`, each one restart from a given start sequence.

* `gcg_search` (discrete, GCG/HotFlip-style): the gradient of the objective w.r.t. the one-hot tokens
  proposes the `top_k_tokens` best substitutions per position; `n_candidates` single-token swaps are
  scored exactly by a batched truncated forward and ranked by `objective.rank_value` (the true
  activation where the feature fires); the `fluency_top` best are re-ranked by
  `value - fluency_weight * scale * CE` (CE: the model's own next-token cross-entropy, full model, so
  only on those few). The best candidate replaces the current sequence only when it improves that
  score (the current sequence is always the best so far), so with fluency weight 0 a search never
  ends below its start's activation; it stops after `patience` steps without improvement.
* `soft_search` (continuous): a soft prompt optimised with Adam, projected every step to the nearest
  tokens (cosine) and scored exactly. Used alone (`method="soft"`) or as the warm start of gcg.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from saekit.analysis.objective import FeatureObjective, rank_value


def search_score(
    obj: FeatureObjective, ids_BT: Tensor, value_B: Tensor, weight: float, scale: float
) -> Tensor:
    """The search score (float64): the ranking value, minus the fluency penalty when weight > 0."""
    if weight <= 0:
        return value_B
    return value_B - weight * scale * obj.cross_entropy(ids_BT).double()


def _value(obj: FeatureObjective, ids_BT: Tensor, feature: int) -> tuple[Tensor, Tensor]:
    """(ranking value [B] float64, pre-activation [B]) of token sequences."""
    pre, act = obj.score_ids(ids_BT, feature)
    return rank_value(pre, act), pre


def _candidates(grad_TV: Tensor, ids_T: Tensor, cfg: Any, g: torch.Generator) -> Tensor:
    """`n_candidates` single-token swaps drawn from the top-k gradient substitutions, `[C, T]`."""
    T = ids_T.shape[0]
    grad_TV = grad_TV.clone()
    grad_TV[torch.arange(T), ids_T] = float("-inf")  # a swap to the same token is no candidate
    n_top = min(cfg.top_k_tokens, int(torch.isfinite(grad_TV[0]).sum()))
    top = grad_TV.topk(n_top, dim=1).indices  # [T, K]
    pos = torch.randint(0, T, (cfg.n_candidates,), generator=g)
    pick = top[pos, torch.randint(0, n_top, (cfg.n_candidates,), generator=g)]
    cands = ids_T[None].repeat(cfg.n_candidates, 1)
    cands[torch.arange(cfg.n_candidates), pos] = pick
    return cands


def gcg_search(
    obj: FeatureObjective,
    feature: int,
    start_T: Tensor,
    cfg: Any,
    allowed: Tensor,
    scale: float,
    g: torch.Generator,
    bar,
) -> tuple[Tensor, list[float]]:
    """Greedy gradient-guided swaps from `start_T`; returns (best ids [T], pre-activation per step)."""
    ids = start_T.clone()
    val, pre = _value(obj, ids[None], feature)
    cur_pre = float(pre[0])
    cur_score = float(search_score(obj, ids[None], val, cfg.fluency_weight, scale)[0])
    traj, stale = [], 0
    for _ in range(cfg.n_steps):
        grad = obj.onehot_grad(ids, feature).masked_fill(~allowed, float("-inf"))  # [T, V]
        cands = _candidates(grad, ids, cfg, g)
        val, pre = _value(obj, cands, feature)
        best = val.topk(min(cfg.fluency_top, val.numel())).indices
        score = search_score(obj, cands[best], val[best], cfg.fluency_weight, scale)
        j = int(score.argmax())
        stale += 1
        if float(score[j]) > cur_score:
            ids, cur_score, cur_pre, stale = cands[best[j]].clone(), float(score[j]), float(pre[best[j]]), 0
        traj.append(cur_pre)
        bar.update(1)
        if stale >= cfg.patience:
            bar.update(cfg.n_steps - len(traj))
            break
    return ids, traj


def soft_search(
    obj: FeatureObjective,
    feature: int,
    start_T: Tensor,
    cfg: Any,
    allowed: Tensor,
    scale: float,
    n_steps: int,
    bar,
) -> tuple[Tensor, list[float]]:
    """Adam on a soft prompt started at `start_T`'s embeddings; best projected sequence + trajectory."""
    W_E = obj.W_E.detach().float()
    pool = allowed.nonzero().flatten()
    emb = W_E[start_T.to(W_E.device)].clone().requires_grad_(True)
    opt = torch.optim.Adam([emb], lr=cfg.learning_rate)
    unit = F.normalize(W_E, dim=-1)
    norm = W_E[pool.to(W_E.device)].norm(dim=-1).mean()
    blocked = (~allowed).to(W_E.device)
    seen: dict[tuple[int, ...], tuple[float, float]] = {}  # ids -> (ranking value, pre-activation)

    def see(ids_T: Tensor) -> None:
        key = tuple(ids_T.tolist())
        if key not in seen:
            val, pre = _value(obj, ids_T[None], feature)
            seen[key] = (float(val[0]), float(pre[0]))

    see(start_T)
    traj: list[float] = []
    for _ in range(n_steps):
        with torch.enable_grad():
            h = obj.hidden(inputs_embeds=emb.to(obj.W_E.dtype)[None])
            loss = -obj.pre_act(h, feature).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            # stay at the typical token-embedding norm, where the nearest-token projection is meaningful
            emb.mul_(norm / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            ids = (F.normalize(emb, dim=-1) @ unit.T).masked_fill(blocked, float("-inf")).argmax(-1).cpu()
            see(ids)
        traj.append(max(v[1] for v in seen.values()))
        bar.update(1)
    # the full-model CE only for the few best projected sequences
    ranked = sorted(seen.items(), key=lambda kv: -kv[1][0])[: cfg.fluency_top]
    ids_BT = torch.tensor([k for k, _ in ranked])
    value = torch.tensor([v[0] for _, v in ranked], dtype=torch.float64)
    score = search_score(obj, ids_BT, value, cfg.fluency_weight, scale)
    return ids_BT[int(score.argmax())], traj
