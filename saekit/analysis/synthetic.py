"""`analyze synthetic`: find token sequences that maximise one SAE feature.

Objective (see `objective.py`): the feature's pre-activation at the last token of a sequence, read at
the SAE's hook point through a truncated forward. Searches (see `search.py`): `gcg` (default;
gradient-guided token swaps, greedy) or `soft` (soft prompt projected to tokens).

Starts (what makes the optimiser reach the real maximum): with `init="real"` restart r starts from
the r-th best *real* context of the feature, exactly as the model saw it (the harvest window's
tokens from its first token to the top token, from the store's token table; see real_starts.py).
The search edits only the last `seq_len` tokens; the tokens before are a fixed prefix computed once
(prefix.py). Cutting the context shorter is not done: on the embedded default a 16-token suffix of
the best context gave 0.00-0.24 of the real max on 2 of 10 features. The greedy search keeps the
best so far by true activation, and the result is the better of (start, search result) rescored
the same way, so with fluency weight 0 it never ends below its start. Restarts beyond the known
contexts, and `init="random"`, start from random tokens (warmed up by `warm_start_steps` of the soft
search, optionally).

Everything is seeded (`seed`, restart r uses seed * 1000 + r), so runs are deterministic on CPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from saekit.analysis.objective import FeatureObjective, allowed_tokens
from saekit.analysis.search import gcg_search, soft_search
from saekit.errors import SaekitError

__all__ = ["SyntheticConfig", "SyntheticResult", "SyntheticSequence", "allowed_tokens", "maximise_feature"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the feature maximiser."""

    n_steps: int = 20
    """Optimisation steps per restart (at most; see patience). 20 x 1 restart reached the real max on
    20/20 demo features (docs/results/maximisers.md)."""
    seq_len: int = 8
    """Tokens per random start; tokens edited at the end of a real start. The feature is read at the last."""
    learning_rate: float = 0.1
    """Adam step size of the soft prompt (method=soft, and the warm start)."""
    restarts: int = 1
    """Independent starts (restart r from the r-th best real context); each gives one best sequence."""
    seed: int = 0
    """Random seed (restart r uses seed * 1000 + r)."""
    method: Literal["gcg", "soft"] = "gcg"
    """`gcg`: gradient-guided token swaps; `soft`: soft prompt + projection to tokens."""
    init: Literal["real", "random"] = "real"
    """`real`: restart r starts from the feature's r-th best real context (when known); `random`: tokens."""
    best_suffix: bool = False
    """Real start: also score the context's last seq_len * 2^i tokens and start from the suffix with the
    highest activation (the whole context is one of them, so the start never gets worse)."""
    warm_start_steps: int = 0
    """gcg from random tokens: soft-prompt steps first, projected to tokens (a continuous warm start)."""
    top_k_tokens: int = 128
    """gcg: substitutions proposed per position from the gradient."""
    n_candidates: int = 32
    """gcg: single-token swaps scored exactly per step."""
    patience: int = 6
    """gcg: stop a restart after this many steps without improvement."""
    fluency_weight: float = 0.05
    """Weight of the model's cross-entropy (nats/token) in the score, in units of the feature's real max."""
    fluency_top: int = 4
    """Best-by-activation candidates re-ranked with the full-model CE (gcg: each step; soft: at the end)."""
    search_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Model dtype of the search itself (gradients, candidate scores); the start and the result are scored
    in the model's own dtype (float32), so every reported activation and perplexity is exact. `auto`:
    bfloat16 where a bf16 linear layer was measured faster here (`saekit.device.auto_model_dtype`). On
    the demo's 10 features a bf16 search found maximisers as good (1.035x vs 1.032x the real max on
    average, both re-scored in fp32) in 29 s instead of 52 (2-core AMD EPYC with AVX-512 BF16)."""

    def __post_init__(self) -> None:
        ints = ("n_steps", "seq_len", "restarts", "top_k_tokens", "n_candidates", "fluency_top", "patience")
        for name in ints:
            if getattr(self, name) < 1:
                raise SaekitError(
                    f"synthetic: --{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.seq_len < 2 and self.fluency_weight > 0:
            raise SaekitError("synthetic: --seq-len must be >= 2 for a fluency (cross-entropy) term")
        if self.method not in ("gcg", "soft"):
            raise SaekitError(f"synthetic: --method must be gcg or soft, got {self.method!r}")
        if self.init not in ("real", "random"):
            raise SaekitError(f"synthetic: --init must be real or random, got {self.init!r}")
        if self.warm_start_steps < 0:
            raise SaekitError("synthetic: --warm-start-steps must be >= 0")


@dataclass
class SyntheticSequence:
    """One optimised sequence."""

    token_ids: list[int]
    activation: float
    """True SAE activation of the feature at the last token."""
    pre_activation: float
    ce: float
    """Model's mean next-token cross-entropy on the edited tokens, given all before (nats/token)."""
    restart: int
    start: str = "random"
    """Where the restart started: `real:<rank>` (the rank-th best real context) or `random`."""
    start_activation: float | None = None
    """True activation of the start sequence (before any optimisation), computed as `activation` is."""
    n_edited: int | None = None
    """How many trailing tokens the search could change (the tokens before are the real context)."""

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.ce, 50.0))


@dataclass
class SyntheticResult:
    """All restarts for one feature, best first, plus a random-input baseline."""

    feature: int
    sequences: list[SyntheticSequence]
    trajectories: list[list[float]]
    """Per restart, the current sequence's pre-activation after each step (may stop early: patience)."""
    random_activations: list[float] = field(default_factory=list)
    """True activations of the feature on random token sequences (the baseline)."""


def _best_suffix(obj0, feature: int, ctx: Tensor, seq_len: int, min_len: int) -> Tensor:
    """The suffix (lengths seq_len * 2^i and the whole context) with the highest activation."""
    from saekit.analysis.objective import rank_value

    lengths, n = [], max(seq_len, min_len)
    while n < ctx.numel():
        lengths.append(n)
        n *= 2
    best, best_v = ctx, float(rank_value(*obj0.score_ids(ctx[None], feature))[0])
    for n in lengths:
        v = float(rank_value(*obj0.score_ids(ctx[-n:][None], feature))[0])
        if v > best_v:
            best, best_v = ctx[-n:], v
    return best


def _start(obj0, feature, cfg, r, inits, allowed, g) -> tuple[Tensor | None, Tensor, str]:
    """(fixed prefix or None, edited start tokens, label) of restart r."""
    min_len = 2 if cfg.fluency_weight > 0 else 1
    if cfg.init == "real" and r < len(inits) and len(inits[r]) >= min_len:
        ctx = torch.tensor(list(inits[r]))
        label = f"real:{r}"
        if cfg.best_suffix:
            ctx, label = _best_suffix(obj0, feature, ctx, cfg.seq_len, min_len), f"real:{r}:suffix"
        n = min(cfg.seq_len, ctx.numel())
        return ctx[:-n], ctx[-n:], label
    pool = allowed.nonzero().flatten()
    ids = pool[torch.randint(0, pool.numel(), (cfg.seq_len,), generator=g)]
    if cfg.method == "gcg" and cfg.warm_start_steps > 0:
        ids, _ = soft_search(obj0, feature, ids, cfg, allowed, 1.0, cfg.warm_start_steps, _NoBar())
        return None, ids, "random+soft"
    return None, ids, "random"


def _final(obj, feature, cfg, scale, cands: list[Tensor], has_lm: bool) -> tuple[Tensor, float, float, float]:
    """The best of `cands` (the start and the search result), each rescored alone: (ids, pre, act, CE).

    Same ids are scored once; the model CE (nan without an LM head) is computed once per candidate."""
    from saekit.analysis.objective import rank_value

    best = None
    for ids in {tuple(c.tolist()): c for c in cands}.values():
        pre, act = obj.score_ids(ids[None], feature)
        ok = has_lm and obj.full_ids(ids).numel() >= 2
        ce = float(obj.cross_entropy(ids[None])[0]) if ok else math.nan
        score = float(rank_value(pre, act)[0])
        if cfg.fluency_weight > 0 and ok:
            score -= cfg.fluency_weight * scale * ce
        if best is None or score > best[0]:
            best = (score, ids, float(pre[0]), float(act[0]), ce)
    return best[1:]


class _NoBar:
    def update(self, n: int) -> None:
        pass


def _check(model: nn.Module, sae, feature: int, cfg: SyntheticConfig) -> bool:
    if not 0 <= feature < sae.d_sae:
        raise SaekitError(f"feature {feature} out of range: the SAE has d_sae={sae.d_sae}")
    has_lm = getattr(model, "get_output_embeddings", lambda: None)() is not None
    if cfg.fluency_weight > 0 and not has_lm:
        raise SaekitError(
            f"{type(model).__name__} has no language-model head, so no fluency cross-entropy; "
            "pass --fluency-weight 0"
        )
    return has_lm


def _with_frozen_model(fn):
    """`fn(model, ...)` with the model's parameters frozen while it runs and given back as they were
    (optimising an input must neither train the model nor leave the caller's model frozen)."""
    import functools

    from saekit.models.frozen import frozen

    @functools.wraps(fn)
    def run(model, *args, **kwargs):
        with frozen(model):
            return fn(model, *args, **kwargs)

    return run


@_with_frozen_model
def maximise_feature(
    model: nn.Module,
    sae,
    hook_point: str,
    feature: int,
    cfg: SyntheticConfig = SyntheticConfig(),
    *,
    tokenizer=None,
    real_max: float | None = None,
    init_contexts: Sequence[Sequence[int]] = (),
    n_random: int = 32,
    quiet: bool = True,
    search_model: nn.Module | None = None,
) -> SyntheticResult:
    """Run `cfg.restarts` optimisations of `feature`; results sorted by true activation.

    `init_contexts`: real token sequences ending at a top example of the feature, best first (the
    starts of `init="real"`); without them every restart starts from random tokens. `search_model`: the
    same model in a faster dtype (`SyntheticConfig.search_dtype`) that runs the search; `model` scores
    the start and the result.
    """
    from saekit.models.frozen import frozen

    with frozen(search_model) if search_model is not None else contextlib.nullcontext():
        return _maximise(model, sae, hook_point, feature, cfg, tokenizer, real_max, list(init_contexts),
                         n_random, quiet, search_model)  # fmt: skip


def _maximise(model, sae, hook_point, feature, cfg, tokenizer, real_max, init_contexts, n_random, quiet,
              search_model) -> SyntheticResult:  # fmt: skip
    has_lm = _check(model, sae, feature, cfg)
    model.eval()
    if search_model is not None:
        search_model.eval()
    obj0 = FeatureObjective(model, sae, hook_point)
    allowed = allowed_tokens(obj0.W_E.shape[0], tokenizer)
    scale = float(real_max) if real_max and real_max > 0 else 1.0
    seqs, trajs = [], []
    bar = tqdm(total=cfg.n_steps * cfg.restarts, disable=quiet, desc=f"synthetic feature {feature}")
    for r in range(cfg.restarts):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + r)
        prefix, start, label = _start(obj0, feature, cfg, r, init_contexts, allowed, g)
        obj = obj0 if prefix is None else FeatureObjective(model, sae, hook_point, prefix)
        obj.check_prefix_cache(start, feature)
        start_act = float(obj.score_ids(start[None], feature)[1][0])
        sobj = obj
        if search_model is not None:
            sobj = FeatureObjective(search_model, sae, hook_point, prefix)
            sobj.check_prefix_cache(start, feature)
        if cfg.method == "gcg":
            ids, traj = gcg_search(sobj, feature, start, cfg, allowed, scale, g, bar)
        else:
            ids, traj = soft_search(sobj, feature, start, cfg, allowed, scale, cfg.n_steps, bar)
        ids, pre, act, ce = _final(obj, feature, cfg, scale, [start, ids], has_lm)
        full = obj.full_ids(ids).tolist()
        seqs.append(SyntheticSequence(full, act, pre, ce, r, label, start_act, ids.numel()))
        trajs.append(traj)
    bar.close()
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 999)
    pool = allowed.nonzero().flatten()
    rand = pool[torch.randint(0, pool.numel(), (n_random, cfg.seq_len), generator=g)]
    _, rand_act = obj0.score_ids(rand, feature)
    seqs.sort(key=lambda s: -s.activation)
    return SyntheticResult(feature, seqs, trajs, rand_act.tolist())
