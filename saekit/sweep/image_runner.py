"""A FluxPipeline, an SAE and generation with an optional edit: what every image sweep runs.

The factor sweep (`image_factors`, testbed judges) and the concept sweep (`image_concept`, a CLIP judge,
any FLUX.1 folder or hub id) generate the same way: images from prompts, with an edit either at a hook
point inside the denoising loop (on a window of steps, on the conditional or unconditional branch of
true CFG), or on the conditioning FLUX reads every step (the pooled CLIP vector, or the T5 token
embeddings). Image i's noise is its own generator seeded `seed + i`, so an image does not depend on how
prompts are batched, and an unedited call reproduces the pipeline's own image bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from saekit.errors import SteeringError

Conditioning = Literal["none", "pooled", "text"]
Branch = Literal["cond", "uncond", "both"]


def step_window(spec: str, n_steps: int) -> range | None:
    """The denoising steps a window names (None = every step): `all`, `early` / `late` (first / second
    half), or `A:B` (steps A to B-1); a clear error for a bad spec."""
    half = n_steps // 2
    named = {"all": None, "early": range(0, half), "late": range(half, n_steps)}
    if spec in named:
        return named[spec]
    a, sep, b = spec.partition(":")
    if sep and a.isdigit() and b.isdigit() and 0 <= int(a) < int(b) <= n_steps:
        return range(int(a), int(b))
    raise SteeringError(
        f"step window {spec!r}: use all, early, late or A:B with 0 <= A < B <= {n_steps} (the steps run)"
    )


@dataclass(frozen=True)
class StepEdit:
    """An edit that needs the denoising step (`fn(x, step)`; step None at a conditioning site)."""

    fn: Callable[[Tensor, int | None], Tensor]

    def __call__(self, x: Tensor, step: int | None) -> Tensor:
        return self.fn(x, step)


@dataclass(frozen=True)
class Generation:
    """How images are made: `FluxPipeline.__call__`'s arguments that a sweep holds fixed."""

    num_inference_steps: int = 4
    height: int = 512
    width: int = 512
    guidance_scale: float = 0.0
    """FLUX-dev's distilled guidance (3.5); schnell and the testbed ignore it (0)."""
    true_cfg_scale: float = 1.0
    """> 1: true classifier-free guidance against the empty prompt (two transformer calls per step)."""
    max_sequence_length: int = 512
    """T5 tokens (FLUX.1-schnell: 256 at most); the in-loop text stream is this long."""
    batch: int = 4
    seed: int = 0


class PipelineRunner:
    """A loaded FluxPipeline and SAE, with `generate` (optionally edited) and `capture` (activations)."""

    def __init__(
        self,
        pipe,
        sae,
        gen: Generation,
        *,
        conditioning: Conditioning = "none",
        hook_point: str | None = None,
    ):
        from saekit.steer.session import hook_point_of

        if not hasattr(pipe, "transformer") or not hasattr(pipe, "encode_prompt"):
            raise SteeringError(
                f"{type(pipe).__name__} is not a FluxPipeline (no transformer / encode_prompt)"
            )
        self.pipe, self.sae, self.gen, self.cond = pipe, sae, gen, conditioning
        pipe.set_progress_bar_config(disable=True)
        self.hp = None if conditioning != "none" else hook_point_of(sae, hook_point)
        if conditioning != "none":  # a wrong-width SAE is refused before any image is made
            from saekit.steer.image.conditioning import check_embedding_size

            pe, pooled = self.embeds([""])
            if conditioning == "pooled":
                check_embedding_size(pooled, sae, "pooled CLIP prompt vector")
            else:
                check_embedding_size(pe, sae, "T5 prompt token embeddings")

    @property
    def device(self) -> torch.device:
        return next(self.pipe.transformer.parameters()).device

    def embeds(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """(prompt_embeds, pooled_prompt_embeds) exactly as the pipeline computes them itself."""
        with torch.no_grad():
            pe, pooled, _ = self.pipe.encode_prompt(
                prompt=prompts, prompt_2=None, max_sequence_length=self.gen.max_sequence_length
            )
        return pe, pooled

    @torch.no_grad()
    def _call(self, n: int, true_cfg: bool = True, **text) -> Tensor:
        """Images `[n, 3, H, W]` in [0, 1] from `prompt=` or `prompt_embeds=` / `pooled_prompt_embeds=`."""
        from tqdm import tqdm

        from saekit.device import HOST

        g = self.gen
        cfg = (
            {"true_cfg_scale": g.true_cfg_scale, "negative_prompt": ""}
            if true_cfg and g.true_cfg_scale > 1
            else {}
        )
        out = []
        for i in tqdm(range(0, n, g.batch), desc="generating", disable=True, leave=False):
            m = min(g.batch, n - i)
            gens = [torch.Generator(HOST).manual_seed(g.seed + i + j) for j in range(m)]
            part = {k: v[i : i + m] for k, v in text.items()}
            res = self.pipe(
                **part,
                height=g.height,
                width=g.width,
                num_inference_steps=g.num_inference_steps,
                guidance_scale=g.guidance_scale,
                max_sequence_length=g.max_sequence_length,
                generator=gens,
                output_type="pt",
                **cfg,
            )
            out.append(res.images.float().cpu())
        return torch.cat(out)

    def generate(
        self, prompts: list[str], edit: Callable | None = None, window: str = "all", branch: Branch = "cond"
    ) -> Tensor:
        """Images for `prompts`; `edit` acts on the pooled vector or the T5 token embeddings (a StepEdit
        there gets step None: one edit every step reads) or at the hook point in the loop on the steps of
        `window` and the true-CFG `branch` (cond, uncond or both; without true CFG every call is cond)."""
        from saekit.steer.image.diffusion import steer_in_loop

        g = self.gen
        if self.cond != "none":
            pe, pooled = self.embeds(prompts)
            if edit is not None and self.cond == "pooled":
                pooled = edit(pooled)
            elif edit is not None:
                pe = edit(pe, None) if isinstance(edit, StepEdit) else edit(pe)
            return self._call(len(prompts), prompt_embeds=pe, pooled_prompt_embeds=pooled)
        if edit is None:
            return self._call(len(prompts), prompt=prompts)
        true_cfg = g.true_cfg_scale > 1
        if branch != "cond" and not true_cfg:
            raise SteeringError(
                f"branch {branch!r} needs true CFG (true_cfg_scale > 1): the pipeline makes no "
                "unconditional call otherwise"
            )
        clock: dict = {}
        if isinstance(edit, StepEdit):  # a spatial edit reads the step (modulo: batches run the loop again)
            fn = lambda x, e=edit: e(x, clock["state"].step % g.num_inference_steps)  # noqa: E731
        else:
            fn = edit
        cond_fn = fn if branch in ("cond", "both") else None
        uncond_fn = fn if branch in ("uncond", "both") else None
        with steer_in_loop(
            self.pipe.transformer,
            self.hp,
            cond_fn or (lambda x: x),
            steps=step_window(window, g.num_inference_steps),
            cfg_layout="calls" if true_cfg else "none",
            uncond_edit_fn=uncond_fn,
            text_len=g.max_sequence_length,
        ) as state:
            clock["state"] = state
            return self._call(len(prompts), prompt=prompts)

    @torch.no_grad()
    def capture(self, prompts: list[str], spatial: bool = False) -> tuple[Tensor, ...]:
        """Per prompt: the mean activation `[P, d]` and mean SAE latents `[P, F]` over image tokens and
        every denoising step of the conditional call (prompts one batch at a time, so rows map to
        prompts); with `spatial`, also the per-step, per-token maps `[P, S, T, d]` and `[P, S, T, F]`.
        With conditioning `pooled`, the pooled vector itself and its latents (no denoising needed); with
        `text`, the T5 token embeddings' means over tokens and latents, and as maps `[P, L, d]`,
        `[P, L, F]` (one per text token: the embeddings are made once)."""
        if self.cond == "pooled":
            pooled = self.embeds(prompts)[1].float()
            return pooled, self.sae.encode(pooled.to(self.sae.device)).cpu()
        if self.cond == "text":
            pe = self.embeds(prompts)[0].float()
            f = self.sae.encode(pe.to(self.sae.device)).cpu()
            return (pe.mean(1), f.mean(1), pe, f) if spatial else (pe.mean(1), f.mean(1))
        from saekit.steer.image.diffusion import steer_in_loop

        n_steps = self.gen.num_inference_steps
        xs, fs, maps_x, maps_f = [], [], [], []
        for s in range(0, len(prompts), self.gen.batch):
            chunk = prompts[s : s + self.gen.batch]
            per_step: dict[int, tuple[Tensor, Tensor]] = {}
            clock: dict = {}

            def record(x: Tensor, per_step=per_step, clock=clock) -> Tensor:
                xf = x.float()
                f = self.sae.encode(xf.reshape(-1, xf.shape[-1]).to(self.sae.device)).cpu()
                per_step[clock["state"].step % n_steps] = (xf.cpu(), f.reshape(*xf.shape[:-1], -1))
                return x

            with steer_in_loop(
                self.pipe.transformer, self.hp, record, text_len=self.gen.max_sequence_length
            ) as state:
                clock["state"] = state
                self._call(len(chunk), true_cfg=False, prompt=chunk)
            mx = torch.stack([per_step[k][0] for k in sorted(per_step)], 1)  # [B, S, T, d]
            mf = torch.stack([per_step[k][1] for k in sorted(per_step)], 1)  # [B, S, T, F]
            xs.append(mx.mean((1, 2)))
            fs.append(mf.mean((1, 2)))
            if spatial:
                maps_x.append(mx)
                maps_f.append(mf)
        out = (torch.cat(xs), torch.cat(fs))
        return (*out, torch.cat(maps_x), torch.cat(maps_f)) if spatial else out
