"""What a feature maximiser optimises: a truncated forward to the hook point, then one SAE feature.

The forward pass stops right after the hooked module (`capture(..., stop_after_last=True,
detach=False)`: the layers above it never run, and the captured activation keeps its graph). The
gradient comes from the feature's pre-activation (`SAE.pre_activation(..., raw=True)`) at the last
token, which still has a gradient where the feature does not fire. Candidates are *ranked* by
`value`: the true `sae.encode` activation where the feature fires, and below every firing sequence,
the pre-activation where it does not (a TopK feature can gain pre-activation and still drop out of
the top k; ranking by activation keeps "best so far" honest).

With a `prefix` (the real context before the edited tokens, see prefix.py) every method takes and
returns the *suffix* only; the prefix is prepended (from its cache) in every forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saekit.analysis.prefix import Prefix, cache_of
from saekit.errors import SaekitError
from saekit.models.kv_cache import cache_kwargs

_INACTIVE = 1e6
"""How far below every firing sequence a non-firing one ranks (`value = pre - _INACTIVE`)."""


def rank_value(pre_B: Tensor, act_B: Tensor) -> Tensor:
    """float64 ranking value: activation where the feature fires, else pre-activation - 1e6."""
    pre, act = pre_B.double(), act_B.double()
    return torch.where(act > 0, act, pre - _INACTIVE)


class FeatureObjective:
    """Truncated forward to the hook point + SAE pre-activation/activation of one feature."""

    def __init__(self, model: nn.Module, sae, hook_point: str, prefix_ids: Tensor | None = None):
        from saekit.hooks import HookPoint

        self.model = model
        self.sae = sae
        self.hp = HookPoint.parse(hook_point)
        self.W_E = model.get_input_embeddings().weight  # [V, d]
        self.prefix: Prefix | None = None
        if prefix_ids is not None and prefix_ids.numel() > 0:
            self.prefix = Prefix(model, prefix_ids.to(self.device), self._forward_to_hook)

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    def _forward_to_hook(self, **kw) -> Tensor:
        from saekit.hooks import capture

        key = str(self.hp)
        with capture(self.model, [self.hp], stop_after_last=True, detach=False) as cap:
            self.model(**kw)
        if key not in cap.activations:
            raise SaekitError(f"hook point {key!r} was never reached by the forward pass")
        return cap.activations[key]

    def hidden(self, *, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None) -> Tensor:
        """Activations `[B, T, d]` at the hook point of the suffix positions (graph kept)."""
        p = self.prefix
        if p is None:
            return self._forward_to_hook(input_ids=input_ids, inputs_embeds=inputs_embeds, use_cache=False)
        B = (input_ids if input_ids is not None else inputs_embeds).shape[0]
        cache = p.hook_cache(B)
        if cache is not None:
            kw = cache_kwargs(self.model, cache)
            return self._forward_to_hook(input_ids=input_ids, inputs_embeds=inputs_embeds, **kw)
        if inputs_embeds is None:
            inputs_embeds = self.W_E.detach()[input_ids]
        emb = torch.cat([p.embeds.to(inputs_embeds.dtype)[None].expand(B, -1, -1), inputs_embeds], 1)
        return self._forward_to_hook(inputs_embeds=emb, use_cache=False)[:, len(p) :]

    def check_prefix_cache(self, suffix_T: Tensor, feature: int, rtol: float | None = None) -> None:
        """Fall back to concatenation when the cached forward disagrees with a plain one on `suffix_T`.

        `rtol` None: 1e-3 in float32, 3e-2 in a 16-bit dtype, whose two summation orders differ by
        ~1e-2 on their own (a broken cache is off by far more); a too-tight check there silently turned
        the cache off and made a bf16 search over 128-token contexts slower than the fp32 one."""
        if self.prefix is None or self.prefix.trunc is None:
            return
        if rtol is None:
            rtol = 1e-3 if self.W_E.dtype == torch.float32 else 3e-2
        pre_cached = self.score_ids(suffix_T[None], feature)[0]
        with torch.no_grad():
            full = torch.cat([self.prefix.ids, suffix_T.to(self.device)])[None]
            pre_plain = self.pre_act(self._forward_to_hook(input_ids=full, use_cache=False), feature).cpu()
        if (pre_cached - pre_plain).abs().item() > rtol * (1.0 + pre_plain.abs().item()):
            self.prefix.disable_cache()

    def full_ids(self, suffix_T: Tensor) -> Tensor:
        """The whole sequence: prefix + suffix."""
        return suffix_T if self.prefix is None else torch.cat([self.prefix.ids.cpu(), suffix_T.cpu()])

    def pre_act(self, h_BTD: Tensor, feature: int) -> Tensor:
        """Pre-activation of `feature` at the last position, `[B]`."""
        return self.sae.pre_activation(h_BTD[:, -1, :], [feature], raw=True)[:, 0]

    @torch.no_grad()
    def score_ids(self, ids_BT: Tensor, feature: int, batch: int = 64) -> tuple[Tensor, Tensor]:
        """(pre-activation [B], true activation [B]) for token sequences (suffixes, with a prefix)."""
        pres, acts = [], []
        ids_BT = ids_BT.to(self.device)
        for s in range(0, ids_BT.shape[0], batch):
            h = self.hidden(input_ids=ids_BT[s : s + batch])
            pres.append(self.pre_act(h, feature).float().cpu())
            acts.append(self.sae.encode(h[:, -1, :])[:, feature].float().cpu())
        return torch.cat(pres), torch.cat(acts)

    @torch.no_grad()
    def cross_entropy(self, ids_BT: Tensor) -> Tensor:
        """Mean next-token CE (nats/token) of the full model on each sequence's edited tokens, `[B]`.

        Without a prefix: tokens 1.. predicted from the ones before. With one: every suffix token,
        predicted from the prefix and the suffix before it (the real text itself is not scored)."""
        ids_BT = ids_BT.to(self.device)
        B = ids_BT.shape[0]
        if self.prefix is None:
            logits = self.model(input_ids=ids_BT, use_cache=False).logits.float()[:, :-1]
            target = ids_BT[:, 1:]
        else:
            kv, last = self.prefix.full()
            if kv is not None:
                out = self.model(input_ids=ids_BT, **cache_kwargs(self.model, cache_of(kv, B)))
                suffix_logits = out.logits.float()
            else:
                full = torch.cat([self.prefix.ids[None].expand(B, -1), ids_BT], 1)
                out = self.model(input_ids=full, use_cache=False)
                suffix_logits = out.logits.float()[:, len(self.prefix) :]
            logits = torch.cat([last[None, None].expand(B, 1, -1), suffix_logits[:, :-1]], 1)
            target = ids_BT
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
        return ce.reshape(B, -1).mean(1).cpu()

    def onehot_grad(self, ids_T: Tensor, feature: int) -> Tensor:
        """Gradient of the pre-activation w.r.t. the one-hot tokens, `[T, V]` (GCG's proposal signal)."""
        W_E = self.W_E.detach()
        onehot = F.one_hot(ids_T.to(self.device), W_E.shape[0]).to(W_E.dtype).requires_grad_(True)
        with torch.enable_grad():
            h = self.hidden(inputs_embeds=(onehot @ W_E)[None])
            self.pre_act(h, feature).sum().backward()
        return onehot.grad.float().cpu()


def allowed_tokens(vocab_size: int, tokenizer=None) -> Tensor:
    """Token ids the search may use: all but the tokenizer's special tokens."""
    mask = torch.ones(vocab_size, dtype=torch.bool)
    if tokenizer is not None:
        for t in getattr(tokenizer, "all_special_ids", []) or []:
            if 0 <= t < vocab_size:
                mask[t] = False
    return mask
