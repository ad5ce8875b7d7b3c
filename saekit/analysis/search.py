"""The two searches behind `analyze synthetic`, each one restart from a given start sequence.

* `gcg_search` (discrete, GCG/HotFlip-style): the gradient of the objective w.r.t. the one-hot tokens
  proposes the `top_k_tokens` best substitutions per position; `n_candidates` single-token swaps are
  scored exactly by a batched truncated forward; the `fluency_top` best are re-ranked by
  `pre - fluency_weight * scale * CE` (CE: the model's own next-token cross-entropy, full model, so
  only on those few). The best candidate replaces the current sequence only when it improves that
  score, so a search started from a real context never ends below it; it stops after `patience`
  steps without improvement.
* `soft_search` (continuous): a soft prompt optimised with Adam, projected every step to the nearest
  tokens (cosine) and scored exactly. Used alone (`method="soft"`) or as the warm start of gcg.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from saekit.analysis.objective import FeatureObjective


def _score(obj: FeatureObjective, ids_BT: Tensor, pre_B: Tensor, weight: float, scale: float) -> Tensor:
    """The search score: pre-activation, minus the fluency penalty when weight > 0."""
    if weight <= 0:
        return pre_B
    return pre_B - weight * scale * obj.cross_entropy(ids_BT)


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
    T = ids.shape[0]
    cur_pre = float(obj.score_ids(ids[None], feature)[0][0])
    cur_score = float(_score(obj, ids[None], torch.tensor([cur_pre]), cfg.fluency_weight, scale)[0])
    n_top = min(cfg.top_k_tokens, int(allowed.sum()))
    traj, stale = [], 0
    for _ in range(cfg.n_steps):
        grad = obj.onehot_grad(ids, feature).masked_fill(~allowed, float("-inf"))  # [T, V]
        top = grad.topk(n_top, dim=1).indices  # [T, K]
        pos = torch.randint(0, T, (cfg.n_candidates,), generator=g)
        pick = top[pos, torch.randint(0, n_top, (cfg.n_candidates,), generator=g)]
        cands = ids[None].repeat(cfg.n_candidates, 1)
        cands[torch.arange(cfg.n_candidates), pos] = pick
        pre, _ = obj.score_ids(cands, feature)
        best = pre.topk(min(cfg.fluency_top, pre.numel())).indices
        score = _score(obj, cands[best], pre[best], cfg.fluency_weight, scale)
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
    seen: dict[tuple[int, ...], float] = {
        tuple(start_T.tolist()): float(obj.score_ids(start_T[None], feature)[0][0])
    }
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
            key = tuple(ids.tolist())
            if key not in seen:
                seen[key] = float(obj.score_ids(ids[None], feature)[0][0])
        traj.append(max(seen.values()))
        bar.update(1)
    # the full-model CE only for the few best projected sequences
    ranked = sorted(seen.items(), key=lambda kv: -kv[1])[: cfg.fluency_top]
    ids_BT = torch.tensor([k for k, _ in ranked])
    score = _score(obj, ids_BT, torch.tensor([v for _, v in ranked]), cfg.fluency_weight, scale)
    return ids_BT[int(score.argmax())], traj
