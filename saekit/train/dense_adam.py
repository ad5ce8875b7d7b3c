"""Adam that hands its kernels every tensor in memory order.

saekit stores `W_enc [d_in, d_sae]` latent-major (a transposed view of a `[d_sae, d_in]` buffer), so that
a latent's encoder column is one contiguous row. torch's fused CPU Adam walks a non-contiguous tensor
element by element in its logical order: on SmolLM2's 576 x 9216 encoder that is 10.9 ms per step
instead of 2.0 ms, half of all Adam time in a training step. Adam is elementwise, so the same update on
a permuted view of each (parameter, gradient, moments) tuple is the same update; this optimiser passes
those views when all of a parameter's tensors share one dense layout, and the tensors unchanged
otherwise. The optimiser state holds the original tensors, so checkpoints do not change.
"""

from __future__ import annotations

import torch
from torch import Tensor


def memory_order(t: Tensor) -> tuple[int, ...] | None:
    """The dim permutation that makes `t` contiguous, when `t` is dense but not contiguous; else None."""
    if t.dim() < 2 or t.is_contiguous():
        return None
    order = tuple(sorted(range(t.dim()), key=lambda d: (-t.stride(d), d)))
    return order if t.permute(order).is_contiguous() else None


class DenseLayoutAdam(torch.optim.Adam):
    """`torch.optim.Adam`, whose per-step tensor lists hold contiguous views of transposed tensors."""

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps):
        has_complex = super()._init_group(
            group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
        )
        lists = [params, grads, exp_avgs, exp_avg_sqs] + ([max_exp_avg_sqs] if group["amsgrad"] else [])
        for i, p in enumerate(params):
            order = memory_order(p)
            if order is None:
                continue
            tensors = [lst[i] for lst in lists]
            if all(t.stride() == p.stride() and t.shape == p.shape for t in tensors):
                for lst, t in zip(lists, tensors, strict=True):
                    lst[i] = t.permute(order)
        return has_complex
