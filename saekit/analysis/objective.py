"""What a feature maximiser optimises: a truncated forward to the hook point, then one SAE feature.

The forward pass stops right after the hooked module (`capture(..., stop_after_last=True,
detach=False)`: the layers above it never run, and the captured activation keeps its graph), and the
objective is the feature's pre-activation (`SAE.pre_activation(..., raw=True)`) at the last token.
It equals the activation wherever the feature fires but, unlike a TopK/JumpReLU activation, still
has a gradient where it does not. Reports give the true `sae.encode` activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saekit.errors import SaekitError


class FeatureObjective:
    """Truncated forward to the hook point + SAE pre-activation/activation of one feature."""

    def __init__(self, model: nn.Module, sae, hook_point: str):
        from saekit.hooks import HookPoint

        self.model = model
        self.sae = sae
        self.hp = HookPoint.parse(hook_point)
        self.W_E = model.get_input_embeddings().weight  # [V, d]

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    def hidden(self, *, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None) -> Tensor:
        """Activations `[B, T, d]` at the hook point (graph kept); the rest of the model is not run."""
        from saekit.hooks import capture

        key = str(self.hp)
        with capture(self.model, [self.hp], stop_after_last=True, detach=False) as cap:
            self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, use_cache=False)
        if key not in cap.activations:
            raise SaekitError(f"hook point {key!r} was never reached by the forward pass")
        return cap.activations[key]

    def pre_act(self, h_BTD: Tensor, feature: int) -> Tensor:
        """Pre-activation of `feature` at the last position, `[B]`."""
        return self.sae.pre_activation(h_BTD[:, -1, :], [feature], raw=True)[:, 0]

    @torch.no_grad()
    def score_ids(self, ids_BT: Tensor, feature: int, batch: int = 64) -> tuple[Tensor, Tensor]:
        """(pre-activation [B], true activation [B]) for token sequences."""
        pres, acts = [], []
        ids_BT = ids_BT.to(self.device)
        for s in range(0, ids_BT.shape[0], batch):
            h = self.hidden(input_ids=ids_BT[s : s + batch])
            pres.append(self.pre_act(h, feature).float().cpu())
            acts.append(self.sae.encode(h[:, -1, :])[:, feature].float().cpu())
        return torch.cat(pres), torch.cat(acts)

    @torch.no_grad()
    def cross_entropy(self, ids_BT: Tensor) -> Tensor:
        """Mean next-token CE (nats/token) of the full model on each sequence, `[B]`."""
        ids_BT = ids_BT.to(self.device)
        logits = self.model(input_ids=ids_BT, use_cache=False).logits.float()
        ce = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids_BT[:, 1:].reshape(-1), reduction="none"
        )
        return ce.reshape(ids_BT.shape[0], -1).mean(1).cpu()

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
