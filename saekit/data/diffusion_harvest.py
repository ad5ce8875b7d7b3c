"""Harvest FLUX (or any diffusers transformer) activations on the fly, over the denoising loop.

The seed recipe: run generation, and at every step keep 256 random tokens of a block's image stream,
storing the timestep with each row (features of a diffusion model depend strongly on the noise
level). Here: any hook point (`transformer_blocks.N@image`, `single_transformer_blocks.N@text`,
`transformer_blocks.N.attn@image`, ...; the stream order per module class is the hook layer's job),
a window of steps, a branch under CFG, N random tokens per image per step (0 = all), written straight
into an ActivationStore with `doc_id` = image index, `position` = token index, `timestep` per row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from saekit.errors import StoreError
from saekit.models.flux import CfgLayout, StepState, branch_rows, track_steps


@dataclass(frozen=True)
class DiffusionHarvestConfig:
    """What to keep from each denoising step."""

    hook_point: str = "transformer_blocks.0@image"
    """Block and stream, e.g. `single_transformer_blocks.37@image` or `transformer_blocks.0@text`."""
    steps: tuple[int, int] | None = None
    """Window of steps `[start, stop)` to harvest; None = every step."""
    tokens_per_step: int = 256
    """Random tokens kept per image per step (the seed recipe's 256); 0 keeps every token."""
    branch: Literal["cond", "uncond", "all"] = "cond"
    """Which CFG branch to keep (irrelevant for guidance-distilled FLUX: every call is cond)."""
    cfg_layout: CfgLayout = "none"
    """How the pipeline runs CFG (see `saekit.models.flux.CfgLayout`)."""
    seed: int = 0
    """Seed of the token sampling."""
    text_len: int | None = None
    """Text length, only for modules returning one concatenated [text; image] tensor."""

    def __post_init__(self) -> None:
        if self.tokens_per_step < 0:
            raise StoreError(f"tokens_per_step must be >= 0 (0 = all), found {self.tokens_per_step}")
        if self.steps is not None and not 0 <= self.steps[0] < self.steps[1]:
            raise StoreError(f"steps window must be (start, stop) with 0 <= start < stop, found {self.steps}")


class DiffusionHarvester:
    """While `active(transformer)` is entered, every selected call writes rows into `writer`.

    Set `image_offset` before each pipeline call (the driver `harvest_pipeline` does) so `doc_id`
    counts images across calls.
    """

    def __init__(self, cfg: DiffusionHarvestConfig, writer):
        self.cfg = cfg
        self.writer = writer
        self.image_offset = 0
        self.rows = 0
        self._g = torch.Generator().manual_seed(cfg.seed)
        self._state: StepState | None = None

    def _in_window(self, step: int) -> bool:
        w = self.cfg.steps
        return w is None or w[0] <= step < w[1]

    def _record(self, x_BTD: Tensor) -> Tensor:
        st = self._state
        assert st is not None
        if not self._in_window(st.step):
            return x_BTD
        layout, want = self.cfg.cfg_layout, self.cfg.branch
        rows = slice(0, x_BTD.shape[0])
        if layout == "calls" and want != "all" and st.branch(layout) != want:
            return x_BTD
        if layout in ("batch_uncond_first", "batch_cond_first") and want != "all":
            rows = branch_rows(x_BTD.shape[0], layout, want)
        x = x_BTD[rows].detach()
        B, T, d = x.shape
        n = T if self.cfg.tokens_per_step == 0 else min(self.cfg.tokens_per_step, T)
        pos_BN = torch.rand(B, T, generator=self._g).argsort(dim=1)[:, :n].sort(dim=1).values
        acts = x.gather(1, pos_BN.to(x.device)[..., None].expand(B, n, d)).reshape(B * n, d).float().cpu()
        doc = (self.image_offset + torch.arange(B)).repeat_interleave(n)
        meta = {
            "doc_id": doc.int(),
            "position": pos_BN.reshape(-1).int(),
            "token_id": torch.full((B * n,), -1, dtype=torch.int32),
            "timestep": torch.full((B * n,), st.timestep, dtype=torch.float32),
        }
        self.writer.add(acts, meta, unit=st.call)
        self.rows += B * n
        return x_BTD

    @contextlib.contextmanager
    def active(self, transformer: nn.Module) -> Iterator[StepState]:
        from saekit.hooks import intervene

        with track_steps(transformer) as state:
            self._state = state
            try:
                with intervene(transformer, self.cfg.hook_point, self._record, text_len=self.cfg.text_len):
                    yield state
            finally:
                self._state = None


def harvest_pipeline(
    pipe, batches: Iterable[dict[str, Any]], cfg: DiffusionHarvestConfig, writer, *, quiet: bool = False
) -> int:
    """Run `pipe(**kwargs)` for each kwargs dict (prompts or embeds, steps, size, generator, ...) and
    harvest `cfg.hook_point` into `writer`. `doc_id` = running image index. Returns rows written."""
    from tqdm import tqdm

    h = DiffusionHarvester(cfg, writer)
    for kwargs in tqdm(list(batches), desc=f"harvest {cfg.hook_point}", disable=quiet):
        n_images = _batch_size(kwargs)
        with h.active(pipe.transformer):
            pipe(**kwargs)
        h.image_offset += n_images
    return h.rows


def _batch_size(kwargs: dict[str, Any]) -> int:
    per_prompt = int(kwargs.get("num_images_per_prompt", 1) or 1)
    if "prompt_embeds" in kwargs and kwargs["prompt_embeds"] is not None:
        return kwargs["prompt_embeds"].shape[0] * per_prompt
    prompt = kwargs.get("prompt")
    return (len(prompt) if isinstance(prompt, list) else 1) * per_prompt
