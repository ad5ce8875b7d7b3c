"""`analyze synthetic`: find token sequences that maximise one SAE feature.

Objective: the feature's *pre-activation* at the last position of a `seq_len`-token sequence, read at
the SAE's hook point. The pre-activation equals the activation whenever the feature fires (ReLU /
TopK / JumpReLU above threshold) but, unlike a TopK activation, still has a gradient when it does not;
reports give the true `sae.encode` activation. The forward pass is aborted right after the hooked
module (layers above it never run), through `saekit.hooks.intervene`, which keeps the graph.

Methods:
* `gcg` (default; discrete, GCG/HotFlip-style): gradient of the objective w.r.t. the one-hot tokens
  proposes the `top_k_tokens` best substitutions per position; `n_candidates` single-token swaps are
  scored exactly by a batched truncated forward; the `fluency_top` best are re-ranked by
  `activation - fluency_weight * scale * CE`, where CE is the model's own mean next-token
  cross-entropy on the sequence (needs the full model, hence only on those few) and `scale` is the
  feature's real max activation when known (else 1). The best candidate replaces the current sequence
  when it improves that score.
* `soft`: a soft prompt (continuous embeddings) optimised with Adam at `learning_rate`, projected
  every step to the nearest tokens (cosine) and scored exactly; at the end the `fluency_top` best
  projected sequences are re-ranked with the full-model CE like gcg.

Everything is seeded (`seed`, restart r uses seed * 1000 + r), so runs are deterministic on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from saekit.errors import SaekitError


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the feature maximiser."""

    n_steps: int = 40
    """Optimisation steps per restart."""
    seq_len: int = 8
    """Tokens per sequence; the feature is read at the last one."""
    learning_rate: float = 0.1
    """Adam step size of the soft prompt (method=soft)."""
    restarts: int = 2
    """Independent random starts; each gives one best sequence."""
    seed: int = 0
    """Random seed (restart r uses seed * 1000 + r)."""
    method: Literal["gcg", "soft"] = "gcg"
    """`gcg`: gradient-guided token swaps; `soft`: soft prompt + projection to tokens."""
    top_k_tokens: int = 64
    """gcg: substitutions proposed per position from the gradient."""
    n_candidates: int = 48
    """gcg: single-token swaps scored exactly per step."""
    fluency_weight: float = 0.05
    """Weight of the model's cross-entropy (nats/token) in the score, in units of the feature's real max."""
    fluency_top: int = 4
    """Best-by-activation candidates re-ranked with the full-model CE (gcg: each step; soft: at the end)."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        for name in ("n_steps", "seq_len", "restarts", "top_k_tokens", "n_candidates", "fluency_top"):
            if getattr(self, name) < 1:
                raise SaekitError(
                    f"synthetic: --{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.seq_len < 2 and self.fluency_weight > 0:
            raise SaekitError("synthetic: --seq-len must be >= 2 for a fluency (cross-entropy) term")
        if self.method not in ("gcg", "soft"):
            raise SaekitError(f"synthetic: --method must be gcg or soft, got {self.method!r}")


@dataclass
class SyntheticSequence:
    """One optimised sequence."""

    token_ids: list[int]
    activation: float
    """True SAE activation of the feature at the last token."""
    pre_activation: float
    ce: float
    """Model's mean next-token cross-entropy on the sequence (nats/token)."""
    restart: int

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.ce, 50.0))


@dataclass
class SyntheticResult:
    """All restarts for one feature, best first, plus a random-input baseline."""

    feature: int
    sequences: list[SyntheticSequence]
    trajectories: list[list[float]]
    """Per restart, the current sequence's pre-activation after each step."""
    random_activations: list[float] = field(default_factory=list)
    """True activations of the feature on random token sequences (the baseline)."""


class _Reached(Exception):
    """Raised by the intervene edit function to stop the forward after the hooked module."""


class FeatureObjective:
    """Truncated forward to the hook point + SAE pre-activation/activation of one feature."""

    def __init__(self, model: nn.Module, sae, hook_point: str):
        from saekit.hooks import HookPoint

        self.model = model
        self.sae = sae
        self.hp = HookPoint.parse(hook_point)
        self.W_E = model.get_input_embeddings().weight  # [V, d]

    def hidden(self, *, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None) -> Tensor:
        """Activations `[B, T, d]` at the hook point; the rest of the model is not run."""
        from saekit.hooks import intervene

        box: list[Tensor] = []

        def stash(x: Tensor) -> Tensor:
            box.append(x)
            raise _Reached

        try:
            with intervene(self.model, self.hp, stash):
                self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, use_cache=False)
        except _Reached:
            pass
        if not box:
            raise SaekitError(f"hook point {str(self.hp)!r} was never reached by the forward pass")
        return box[0]

    def pre_act(self, h_BTD: Tensor, feature: int) -> Tensor:
        """Pre-activation of `feature` at the last position, `[B]`."""
        sae = self.sae
        x = sae.normalize_input(h_BTD[:, -1, :])
        return (x - sae.b_dec) @ sae.W_enc[:, feature] + sae.b_enc[feature]

    @torch.no_grad()
    def score_ids(self, ids_BT: Tensor, feature: int, batch: int = 64) -> tuple[Tensor, Tensor]:
        """(pre-activation [B], true activation [B]) for token sequences."""
        pres, acts = [], []
        for s in range(0, ids_BT.shape[0], batch):
            h = self.hidden(input_ids=ids_BT[s : s + batch])
            pres.append(self.pre_act(h, feature).float())
            acts.append(self.sae.encode(h[:, -1, :])[:, feature].float())
        return torch.cat(pres), torch.cat(acts)

    @torch.no_grad()
    def cross_entropy(self, ids_BT: Tensor) -> Tensor:
        """Mean next-token CE (nats/token) of the full model on each sequence, `[B]`."""
        logits = self.model(input_ids=ids_BT, use_cache=False).logits.float()
        ce = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids_BT[:, 1:].reshape(-1), reduction="none"
        )
        return ce.reshape(ids_BT.shape[0], -1).mean(1)


def allowed_tokens(vocab_size: int, tokenizer=None) -> Tensor:
    """Token ids the search may use: all but the tokenizer's special tokens."""
    mask = torch.ones(vocab_size, dtype=torch.bool)
    if tokenizer is not None:
        for t in getattr(tokenizer, "all_special_ids", []) or []:
            if 0 <= t < vocab_size:
                mask[t] = False
    return mask


def _gcg_restart(
    obj: FeatureObjective,
    feature: int,
    cfg: SyntheticConfig,
    allowed: Tensor,
    scale: float,
    g: torch.Generator,
    bar,
) -> tuple[Tensor, list[float]]:
    V = obj.W_E.shape[0]
    pool = allowed.nonzero().flatten()
    ids = pool[torch.randint(0, pool.numel(), (cfg.seq_len,), generator=g)]
    use_ce = cfg.fluency_weight > 0
    cur_pre = float(obj.score_ids(ids[None], feature)[0][0])
    cur_score = cur_pre - (
        cfg.fluency_weight * scale * float(obj.cross_entropy(ids[None])[0]) if use_ce else 0.0
    )
    traj = []
    W_E = obj.W_E.detach()
    for _ in range(cfg.n_steps):
        onehot = F.one_hot(ids, V).to(W_E.dtype).requires_grad_(True)
        with torch.enable_grad():
            h = obj.hidden(inputs_embeds=(onehot @ W_E)[None])
            obj.pre_act(h, feature).sum().backward()
        grad = onehot.grad.float().masked_fill(~allowed, float("-inf"))  # [T, V]
        top = grad.topk(min(cfg.top_k_tokens, int(allowed.sum())), dim=1).indices  # [T, K]
        pos = torch.randint(0, cfg.seq_len, (cfg.n_candidates,), generator=g)
        pick = top[pos, torch.randint(0, top.shape[1], (cfg.n_candidates,), generator=g)]
        cands = ids[None].repeat(cfg.n_candidates, 1)
        cands[torch.arange(cfg.n_candidates), pos] = pick
        pre, _ = obj.score_ids(cands, feature)
        best = pre.topk(min(cfg.fluency_top, pre.numel())).indices
        score = pre[best]
        if use_ce:
            score = score - cfg.fluency_weight * scale * obj.cross_entropy(cands[best])
        j = int(score.argmax())
        if float(score[j]) > cur_score:
            ids, cur_score, cur_pre = cands[best[j]].clone(), float(score[j]), float(pre[best[j]])
        traj.append(cur_pre)
        bar.update(1)
    return ids, traj


def _soft_restart(
    obj: FeatureObjective,
    feature: int,
    cfg: SyntheticConfig,
    allowed: Tensor,
    scale: float,
    g: torch.Generator,
    bar,
) -> tuple[Tensor, list[float]]:
    W_E = obj.W_E.detach().float()
    pool = allowed.nonzero().flatten()
    init = pool[torch.randint(0, pool.numel(), (cfg.seq_len,), generator=g)]
    emb = W_E[init].clone().requires_grad_(True)
    opt = torch.optim.Adam([emb], lr=cfg.learning_rate)
    unit = F.normalize(W_E, dim=-1)
    norm = W_E[pool].norm(dim=-1).mean()
    seen: dict[tuple[int, ...], float] = {}
    traj: list[float] = []
    for _ in range(cfg.n_steps):
        with torch.enable_grad():
            h = obj.hidden(inputs_embeds=emb.to(obj.W_E.dtype)[None])
            loss = -obj.pre_act(h, feature).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            # stay at the typical token-embedding norm, where the nearest-token projection is meaningful
            emb.mul_(norm / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            ids = (F.normalize(emb, dim=-1) @ unit.T).masked_fill(~allowed, float("-inf")).argmax(-1)
            key = tuple(ids.tolist())
            if key not in seen:
                seen[key] = float(obj.score_ids(ids[None], feature)[0][0])
        traj.append(max(seen.values()))
        bar.update(1)
    # the full-model CE only for the few best projected sequences
    ranked = sorted(seen.items(), key=lambda kv: -kv[1])[: cfg.fluency_top]
    ids_BT = torch.tensor([k for k, _ in ranked])
    score = torch.tensor([v for _, v in ranked])
    if cfg.fluency_weight > 0:
        score = score - cfg.fluency_weight * scale * obj.cross_entropy(ids_BT)
    return ids_BT[int(score.argmax())], traj


def maximise_feature(
    model: nn.Module,
    sae,
    hook_point: str,
    feature: int,
    cfg: SyntheticConfig = SyntheticConfig(),
    *,
    tokenizer=None,
    real_max: float | None = None,
    n_random: int = 32,
) -> SyntheticResult:
    """Run `cfg.restarts` optimisations of `feature`; results sorted by true activation."""
    if not 0 <= feature < sae.d_sae:
        raise SaekitError(f"feature {feature} out of range: the SAE has d_sae={sae.d_sae}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    obj = FeatureObjective(model, sae, hook_point)
    V = obj.W_E.shape[0]
    allowed = allowed_tokens(V, tokenizer)
    scale = float(real_max) if real_max and real_max > 0 else 1.0
    has_lm = getattr(model, "get_output_embeddings", lambda: None)() is not None
    if cfg.fluency_weight > 0 and not has_lm:
        raise SaekitError(
            f"{type(model).__name__} has no language-model head, so no fluency cross-entropy; "
            "pass --fluency-weight 0"
        )
    seqs, trajs = [], []
    bar = tqdm(total=cfg.n_steps * cfg.restarts, disable=cfg.quiet, desc=f"synthetic feature {feature}")
    for r in range(cfg.restarts):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + r)
        run = _gcg_restart if cfg.method == "gcg" else _soft_restart
        ids, traj = run(obj, feature, cfg, allowed, scale, g, bar)
        pre, act = obj.score_ids(ids[None], feature)
        ce = float(obj.cross_entropy(ids[None])[0]) if has_lm and cfg.seq_len >= 2 else float("nan")
        seqs.append(SyntheticSequence(ids.tolist(), float(act[0]), float(pre[0]), ce, r))
        trajs.append(traj)
    bar.close()
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 999)
    pool = allowed.nonzero().flatten()
    rand = pool[torch.randint(0, pool.numel(), (n_random, cfg.seq_len), generator=g)]
    _, rand_act = obj.score_ids(rand, feature)
    seqs.sort(key=lambda s: -s.activation)
    return SyntheticResult(feature, seqs, trajs, rand_act.tolist())
