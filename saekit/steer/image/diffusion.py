"""Steering inside a diffusion denoising loop, and conditioning-level steering.

In-loop: an edit (any `saekit.steer.methods` method, or any `x -> x'` function) is applied at a hook
point and stream, only on a window of denoising steps, and only on the conditional CFG branch; the
unconditional branch optionally gets its own edit (e.g. the opposite push, which CFG then amplifies).
The step and branch of each transformer call come from `saekit.models.flux.track_steps`.

Conditioning-level: `steer_conditioning` edits the conditioning embedding (CLIP image/text embeds,
FLUX's pooled CLIP vector) *before* it enters the generator, keeping the SAE error term:
`decode(f with f_j := v) + (x − decode(encode(x)))` — the Kandinsky recipe, implemented in
`saekit.steer.image.conditioning`. Setting features to their current values is no edit at all and returns
the embedding bit for bit (tested through a whole pipeline).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Container, Iterator, Sequence

from torch import Tensor, nn

from saekit.models.flux import CfgLayout, StepState, branch_rows, track_steps
from saekit.steps import parse_steps  # noqa: F401  (re-exported: the one step parser)

EditFn = Callable[[Tensor], Tensor]


def sae_edit(method: str, sae, features: Sequence[int], strengths, *, keep_error: bool = False) -> EditFn:
    """An `x [B, T, d] -> x'` function applying a steering method, cast back to x's dtype."""
    from saekit.steer.methods import apply_method, check_method

    check_method(method)

    def edit(x: Tensor) -> Tensor:
        return apply_method(method, x, sae, features, strengths, keep_error=keep_error).to(x.dtype)

    return edit


@contextlib.contextmanager
def steer_in_loop(
    transformer: nn.Module,
    hook_point: str,
    edit_fn: EditFn,
    *,
    steps: Container[int] | None = None,
    cfg_layout: CfgLayout = "none",
    uncond_edit_fn: EditFn | None = None,
    text_len: int | None = None,
) -> Iterator[StepState]:
    """While active, `edit_fn` edits `hook_point` on the conditional branch of the chosen `steps`.

    `uncond_edit_fn` (optional) edits the unconditional branch of the same steps. With
    `cfg_layout="none"` (guidance-distilled FLUX) every call is conditional.
    """
    from saekit.hooks import intervene

    with track_steps(transformer) as state:

        def edit(x: Tensor) -> Tensor:
            if steps is not None and state.step not in steps:
                return x
            if cfg_layout in ("none", "calls"):
                fn = edit_fn if state.branch(cfg_layout) == "cond" else uncond_edit_fn
                return x if fn is None else fn(x)
            out = x.clone()
            c = branch_rows(x.shape[0], cfg_layout, "cond")
            out[c] = edit_fn(x[c])
            if uncond_edit_fn is not None:
                u = branch_rows(x.shape[0], cfg_layout, "uncond")
                out[u] = uncond_edit_fn(x[u])
            return out

        with intervene(transformer, hook_point, edit, text_len=text_len):
            yield state


def steer_conditioning(
    embeds: Tensor, sae, features: Sequence[int], values: Tensor | float | None = None
) -> Tensor:
    """Set SAE features of a conditioning embedding `[..., d]` to `values`, keeping the error term.

    `values` = the target latent values (`[n_features]`, a scalar, or broadcastable per row); None
    sets every feature to its current value, which is exactly no edit. The "set" mode of
    `saekit.steer.image.conditioning.edit_embedding`, kept under this name for existing callers.
    """
    from saekit.steer.image.conditioning import edit_embedding

    return edit_embedding(embeds, sae, features, values, mode="set")
