"""Sample a diffusers transformer's activations on the fly, over the denoising loop.

The seed recipe: run generation, and at every step keep 256 random tokens of a block's image stream,
with the timestep of each row (features of a diffusion model depend strongly on the noise level).
Here: any hook point (`transformer_blocks.N@image`, `single_transformer_blocks.N@text`,
`transformer_blocks.N.attn@image`, ...; the stream order per module class is the hook layer's job),
any set of steps, a branch under CFG, N random tokens per image per step (0 = all). Rows carry
`doc_id` (image index), `position` (token index in the stream, row-major patches for the image
stream), `step` and `timestep`. The driver is `saekit.data.harvest.diffusion.harvest_diffusion`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from saekit.errors import StoreError
from saekit.models.flux import CfgLayout, StepState, branch_rows, track_steps


@dataclass(frozen=True)
class SamplerConfig:
    """What to keep from each denoising step."""

    hook_point: str = "transformer_blocks.0@image"
    """Block and stream, e.g. `single_transformer_blocks.37@image` or `transformer_blocks.0@text`."""
    steps: frozenset[int] | None = None
    """Denoising steps to harvest (0 = first); None = every step."""
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


class DiffusionSampler:
    """While `active(transformer)` is entered, every selected call appends rows to `self.rows`."""

    def __init__(self, cfg: SamplerConfig, image_offset: int = 0):
        self.cfg = cfg
        self.image_offset = image_offset
        self.rows: list[tuple[Tensor, dict[str, Tensor]]] = []
        self._g = torch.Generator().manual_seed(cfg.seed)
        self._state: StepState | None = None

    def _selected(self, x_BTD: Tensor) -> Tensor | None:
        """The rows of this call to keep (window, CFG branch), or None."""
        st = self._state
        assert st is not None
        if self.cfg.steps is not None and st.step not in self.cfg.steps:
            return None
        layout, want = self.cfg.cfg_layout, self.cfg.branch
        if layout == "calls" and want != "all" and st.branch(layout) != want:
            return None
        rows = slice(0, x_BTD.shape[0])
        if layout in ("batch_uncond_first", "batch_cond_first") and want != "all":
            rows = branch_rows(x_BTD.shape[0], layout, want)
        return x_BTD[rows].detach()

    def _record(self, x_BTD: Tensor) -> Tensor:
        x = self._selected(x_BTD)
        if x is None:
            return x_BTD
        st = self._state
        B, T, d = x.shape
        n = T if self.cfg.tokens_per_step == 0 else min(self.cfg.tokens_per_step, T)
        pos_BN = torch.rand(B, T, generator=self._g).argsort(dim=1)[:, :n].sort(dim=1).values
        acts = x.gather(1, pos_BN.to(x.device)[..., None].expand(B, n, d)).reshape(B * n, d)
        doc = (self.image_offset + torch.arange(B)).repeat_interleave(n)
        meta = {
            "doc_id": doc.int(),
            "position": pos_BN.reshape(-1).int(),
            "token_id": torch.full((B * n,), -1, dtype=torch.int32),
            "step": torch.full((B * n,), st.step, dtype=torch.int32),
            "timestep": torch.full((B * n,), st.timestep, dtype=torch.float32),
        }
        self.rows.append((acts.clone(), meta))
        return x_BTD

    def take(self) -> tuple[Tensor, dict[str, Tensor]]:
        """All rows recorded so far, concatenated (refuses an empty result: a window outside the run)."""
        if not self.rows:
            raise StoreError("the generation produced no rows: is the --steps window inside the run?")
        acts = torch.cat([a for a, _ in self.rows])
        return acts, {k: torch.cat([m[k] for _, m in self.rows]) for k in self.rows[0][1]}

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
