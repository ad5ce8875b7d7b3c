"""Activations at a hook point over a text corpus, in token windows (for calibration and DiffMean)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from saekit.hooks import capture


def token_windows(
    tokenizer, texts: Sequence[str], context_len: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Concatenate-free windows: each text is tokenised and cut into windows of <= context_len tokens."""
    windows: list[list[int]] = []
    total = 0
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        for start in range(0, len(ids), context_len):
            win = ids[start : start + context_len]
            if len(win) < 2:
                continue
            windows.append(win)
            total += len(win)
            if max_tokens is not None and total >= max_tokens:
                return windows
    return windows


@torch.no_grad()
def iter_window_acts(
    model,
    hook_point: str,
    windows: list[list[int]],
    *,
    batch_size: int = 8,
    skip_first: bool = True,
    pad_id: int = 0,
) -> Iterator[Tensor]:
    """Yield `[n_tokens, d]` activations (float32) for batches of windows, padding excluded.

    The first token of every window is skipped by default: without a BOS token it is an attention
    sink with a norm many times the others, which would dominate means (not medians).
    """
    device = next(model.parameters()).device
    for b in range(0, len(windows), batch_size):
        chunk = windows[b : b + batch_size]
        T = max(len(w) for w in chunk)
        ids = torch.full((len(chunk), T), pad_id, dtype=torch.long)
        mask = torch.zeros(len(chunk), T, dtype=torch.bool)
        for i, w in enumerate(chunk):
            ids[i, : len(w)] = torch.tensor(w)
            mask[i, : len(w)] = True
        if skip_first:
            mask[:, 0] = False
        with capture(model, hook_point, stop_after_last=True) as cap:
            # right padding + causal attention: real tokens never see the padding, no mask needed
            model(input_ids=ids.to(device))
        acts = cap.activations[str(hook_point)]
        yield acts[mask.to(acts.device)].float()


def mean_activation(
    model, hook_point: str, tokenizer, texts: Sequence[str], *, context_len: int = 64, batch_size: int = 8
) -> Tensor:
    """Mean activation vector `[d]` over all (non-first) tokens of `texts`."""
    total, n = None, 0
    for acts in iter_window_acts(
        model, hook_point, token_windows(tokenizer, texts, context_len), batch_size=batch_size
    ):
        s = acts.sum(0)
        total = s if total is None else total + s
        n += acts.shape[0]
    if n == 0:
        from saekit.errors import SteeringError

        raise SteeringError("no tokens to average: the texts are empty or one token long")
    return total / n
