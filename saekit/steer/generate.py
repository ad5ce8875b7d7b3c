"""Steered vs unsteered generation from the same seed.

A small explicit decoding loop (KV cache, greedy or temperature/top-p sampling from a seeded
`torch.Generator`) rather than `model.generate`: the steered and unsteered runs then consume the
random stream identically, so any difference in the text comes from the edit, and the position
tracker of `saekit.steer.apply` sees exactly one prefill call followed by one-token calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.models.kv_cache import cache_kwargs, returned_cache


@dataclass(frozen=True)
class GenerationConfig:
    """How to continue a prompt."""

    max_new_tokens: int = 32
    """Tokens to generate after the prompt."""
    greedy: bool = True
    """Argmax decoding; False samples with `temperature` / `top_p` from a generator seeded with `seed`."""
    temperature: float = 0.8
    """Sampling temperature (ignored when greedy)."""
    top_p: float = 0.95
    """Nucleus sampling mass (ignored when greedy)."""
    seed: int = 0
    """Seed of the sampling generator; the same for steered and unsteered runs."""
    chat: bool | None = None
    """Wrap the prompt in the tokenizer's chat template (None: when the tokenizer has one)."""
    stop_at_eos: bool = True
    """Stop a row at the end-of-sequence token (later tokens are dropped from its text)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise SteeringError(f"max_new_tokens must be >= 1, found {self.max_new_tokens}")
        if not self.greedy and self.temperature <= 0:
            raise SteeringError(f"temperature must be > 0 when sampling, found {self.temperature}")


class Continuation(NamedTuple):
    """Generated text after the prompt and its token ids `[n]`."""

    text: str
    token_ids: Tensor


class SteeredPair(NamedTuple):
    """The same prompt continued without and with steering (same seed)."""

    prompt: str
    unsteered: Continuation
    steered: Continuation


def encode_prompt(tokenizer, prompt: str, chat: bool | None = None) -> Tensor:
    """Token ids `[1, P]`; with the chat template when asked (or available when chat is None)."""
    use_chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
    if use_chat:
        if not getattr(tokenizer, "chat_template", None):
            raise SteeringError(
                "chat=True but the tokenizer has no chat template; pass chat=False (--no-chat)"
            )
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors=None,
            tokenize=True,
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return torch.tensor([list(ids)], dtype=torch.long)
    return torch.tensor([tokenizer(prompt)["input_ids"]], dtype=torch.long)


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def generate_ids(
    model,
    prompt_ids_BP: Tensor,
    cfg: GenerationConfig,
    eos_id: int | None = None,
    on_reset: Callable[[int], None] | None = None,
) -> Tensor:
    """Continue every row of `prompt_ids [B, P]` by `max_new_tokens`; returns `[B, max_new_tokens]`.

    `on_reset(prompt_len)` runs before the prefill (steering trackers reset there). After EOS a row
    keeps receiving EOS so shapes stay rectangular.
    """
    device = _model_device(model)
    ids = prompt_ids_BP.to(device)
    if on_reset is not None:
        on_reset(ids.shape[1])
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    out = model(input_ids=ids, use_cache=True)
    past = returned_cache(out)
    logits = out.logits[:, -1].float()
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    new_tokens = []
    for step in range(cfg.max_new_tokens):
        nxt = _pick(logits, cfg, gen).to(device)
        if eos_id is not None and cfg.stop_at_eos:
            nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
            done |= nxt == eos_id
        new_tokens.append(nxt)
        if step + 1 == cfg.max_new_tokens or (eos_id is not None and cfg.stop_at_eos and bool(done.all())):
            break
        out = model(input_ids=nxt[:, None], **cache_kwargs(model, past))
        past = returned_cache(out)
        logits = out.logits[:, -1].float()
    return torch.stack(new_tokens, dim=1)


def _pick(logits_BV: Tensor, cfg: GenerationConfig, gen: torch.Generator) -> Tensor:
    if cfg.greedy:
        return logits_BV.argmax(-1)
    probs = torch.softmax(logits_BV.cpu() / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < cfg.top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]


def decode_rows(tokenizer, new_BN: Tensor, eos_id: int | None) -> list[Continuation]:
    """Continuations with everything from the first EOS on removed."""
    rows = []
    for row in new_BN.cpu():
        ids = row
        if eos_id is not None:
            hits = (row == eos_id).nonzero()
            if hits.numel():
                ids = row[: int(hits[0])]
        rows.append(Continuation(tokenizer.decode(ids.tolist(), skip_special_tokens=True), ids))
    return rows


def generate_pair(
    model,
    tokenizer,
    prompt: str,
    steer_cm: Callable[[], contextlib.AbstractContextManager],
    cfg: GenerationConfig = GenerationConfig(),
) -> SteeredPair:
    """Continue `prompt` without steering and inside `steer_cm()` (which yields a PositionTracker)."""
    ids = encode_prompt(tokenizer, prompt, cfg.chat)
    eos = getattr(tokenizer, "eos_token_id", None)
    plain = decode_rows(tokenizer, generate_ids(model, ids, cfg, eos), eos)[0]
    with steer_cm() as tracker:
        steered = decode_rows(tokenizer, generate_ids(model, ids, cfg, eos, on_reset=tracker.reset), eos)[0]
    return SteeredPair(prompt, plain, steered)
