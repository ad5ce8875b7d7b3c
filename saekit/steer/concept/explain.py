"""Which features to steer: the features most active on a prompt, with tokens that describe them.

Token lists come from two places:
- `prompt_tokens`: the prompt tokens where the feature fires most (exact);
- `example_tokens`: when an analysis JSON (`saekit analyze real`, `analysis.json`) is available, the
  tokens of the feature's stored top examples over a whole corpus (exact, and the best evidence);
- `logit_tokens`: the vocabulary tokens whose logits the feature's decoder direction raises most when
  pushed through the final norm and the unembedding (`W_U · (w_norm ⊙ d_j)`). This is the "direct
  logit effect" approximation: it ignores every layer between the hook point and the output, and it
  applies only the norm's elementwise weight (the RMS division is a positive scale, so the ranking
  is unchanged). Good for late-ish layers, rough for early ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.hooks import capture


@dataclass(frozen=True)
class FeatureExplanation:
    """One feature active on the prompt."""

    feature: int
    """Feature id."""
    max_act: float
    """Max activation over the prompt's tokens."""
    mean_act: float
    """Mean activation over the prompt's tokens (zeros included)."""
    n_active: int
    """Number of prompt tokens where the feature is > 0."""
    prompt_tokens: tuple[str, ...]
    """Prompt tokens with the highest activations, strongest first."""
    logit_tokens: tuple[str, ...]
    """Vocabulary tokens most promoted by the decoder direction (direct logit effect)."""
    example_tokens: tuple[str, ...] = ()
    """Tokens of the feature's top examples from an analysis JSON (empty when none was given)."""


def load_example_tokens(path, n_tokens: int = 8) -> dict[int, tuple[str, ...]]:
    """feature -> tokens of its stored top examples, from an `analysis.json` file or a folder holding one."""
    import json
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        path = path / "analysis.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SteeringError(f"cannot read analysis JSON {path}: {exc}") from exc
    out = {}
    for key, entry in (doc.get("features") or {}).items():
        toks = [ex.get("token") for ex in entry.get("top_examples") or [] if ex.get("token") is not None]
        if toks:
            out[int(key)] = tuple(toks[:n_tokens])
    return out


def _final_norm_weight(model) -> Tensor | None:
    for path in ("model.norm", "transformer.ln_f", "model.final_layernorm"):
        mod = model
        for part in path.split("."):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if mod is not None and getattr(mod, "weight", None) is not None:
            return mod.weight.detach().float()
    return None


@torch.no_grad()
def logit_effect_tokens(model, tokenizer, directions_ND: Tensor, n_tokens: int = 8) -> list[tuple[str, ...]]:
    """Top promoted vocabulary tokens for each direction (see module docstring for the approximation)."""
    unembed = model.get_output_embeddings()
    if unembed is None:
        raise SteeringError(f"{type(model).__name__} has no output embedding; logit effects need a causal LM")
    W_U = unembed.weight.detach().float()
    w = _final_norm_weight(model)
    dirs = directions_ND.float().to(W_U.device)
    if w is not None:
        dirs = dirs * w
    top = (dirs @ W_U.T).topk(n_tokens, dim=-1).indices
    return [tuple(tokenizer.decode([int(t)]) for t in row) for row in top.cpu()]


@torch.no_grad()
def explain_prompt(
    model,
    tokenizer,
    sae,
    hook_point: str,
    prompt_ids_BP: Tensor,
    *,
    top_n: int = 10,
    n_tokens: int = 8,
    skip_first: bool = True,
    example_tokens: dict[int, tuple[str, ...]] | None = None,
) -> list[FeatureExplanation]:
    """Features with the highest max activation on the prompt (first/BOS token skipped by default:
    its huge norm lights up features unrelated to the text)."""
    with capture(model, hook_point, stop_after_last=True) as cap:
        model(input_ids=prompt_ids_BP.to(next(model.parameters()).device))
    acts = cap.activations[str(hook_point)][0]
    ids = prompt_ids_BP[0]
    if skip_first and acts.shape[0] > 1:
        acts, ids = acts[1:], ids[1:]
    f_TF = sae.activation_magnitude(sae.encode(acts.to(sae.dtype))).float().cpu()  # |f| if signed
    max_F = f_TF.max(0).values
    n = min(top_n, int((max_F > 0).sum()))
    feats = max_F.topk(n).indices.tolist() if n else []
    logit_toks = (
        logit_effect_tokens(model, tokenizer, sae.decoder_directions()[feats], n_tokens) if feats else []
    )
    out = []
    for j, lt in zip(feats, logit_toks):
        col = f_TF[:, j]
        order = col.argsort(descending=True)[: min(5, int((col > 0).sum()))]
        out.append(
            FeatureExplanation(
                feature=int(j),
                max_act=float(col.max()),
                mean_act=float(col.mean()),
                n_active=int((col > 0).sum()),
                prompt_tokens=tuple(tokenizer.decode([int(ids[t])]) for t in order),
                logit_tokens=lt,
                example_tokens=(example_tokens or {}).get(int(j), ()),
            )
        )
    return out


def format_explanations(items: list[FeatureExplanation]) -> str:
    """A plain-text table for the terminal."""
    if not items:
        return "no feature is active on this prompt"
    lines = [
        f"{'feature':>8} {'max':>8} {'mean':>7} {'#tok':>5}  "
        "prompt tokens | promoted tokens (direct logit effect)"
    ]
    for e in items:
        pt = " ".join(repr(t) for t in e.prompt_tokens)
        lt = " ".join(repr(t) for t in e.logit_tokens)
        lines.append(f"{e.feature:>8} {e.max_act:>8.3f} {e.mean_act:>7.3f} {e.n_active:>5}  {pt} | {lt}")
        if e.example_tokens:
            lines.append(
                f"{'':>31}top examples (analysis JSON): " + " ".join(repr(t) for t in e.example_tokens)
            )
    return "\n".join(lines)
