"""FLUX (diffusers): load real pipelines, build tiny random ones, and know which denoising step a
transformer call belongs to.

`track_steps` is what makes on-the-fly harvesting and in-loop steering possible without rewriting
any pipeline: it reads the `timestep` input of every transformer call (through `saekit.hooks`) and
derives the step index (a new step starts when the timestep changes) and, with true CFG (FluxPipeline
with `true_cfg_scale > 1` calls the transformer once for the prompt, then once for the negative
prompt, at the same timestep), the branch of the call. FLUX-dev/schnell's default "guidance
distillation" has no unconditional call at all: every call is the conditional branch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from saekit.errors import ModelLoadError

CfgLayout = Literal["none", "calls", "batch_uncond_first", "batch_cond_first"]
"""How a pipeline runs classifier-free guidance: not at all (FLUX guidance-distilled), as separate
transformer calls per step (cond first, as FluxPipeline's true CFG does), or as one batch whose
halves are [uncond; cond] (SD/Kandinsky style) or [cond; uncond]."""


@dataclass
class StepState:
    """Live view of the denoising loop, updated before every transformer call."""

    call: int = -1
    """Transformer calls so far minus one (index of the current call)."""
    step: int = -1
    """Denoising step of the current call (0 = first)."""
    call_in_step: int = 0
    """0 for the first call of a step, 1 for the second (true CFG's negative branch), ..."""
    timestep: float = float("nan")
    """The `timestep` value passed to the transformer (FluxPipeline passes t in [0, 1])."""
    history: list[tuple[int, float]] = field(default_factory=list)
    """(step, timestep) of every call."""

    def branch(self, layout: CfgLayout) -> str:
        """ "cond" / "uncond" for whole-call layouts; "batch" when halves of the batch differ."""
        if layout == "calls":
            return "cond" if self.call_in_step == 0 else "uncond"
        if layout in ("batch_uncond_first", "batch_cond_first"):
            return "batch"
        return "cond"


@contextlib.contextmanager
def track_steps(transformer: nn.Module, timestep_input: str = "timestep") -> Iterator[StepState]:
    """Keep a `StepState` current while the body runs a denoising loop over `transformer`."""
    from saekit.hooks import HookPoint, intervene

    state = StepState()

    def observe(t: torch.Tensor) -> torch.Tensor:
        value = float(t.reshape(-1)[0])
        state.call += 1
        if state.step < 0 or value != state.timestep:
            state.step += 1
            state.call_in_step = 0
        else:
            state.call_in_step += 1
        state.timestep = value
        state.history.append((state.step, value))
        return t

    with intervene(transformer, HookPoint("", "in", timestep_input), observe):
        yield state


def branch_rows(batch: int, layout: CfgLayout, branch: Literal["cond", "uncond"]) -> slice:
    """Rows of a batched-CFG call that belong to `branch`."""
    half = batch // 2
    first = "uncond" if layout == "batch_uncond_first" else "cond"
    return slice(0, half) if branch == first else slice(half, batch)


def load_flux(
    name_or_path: str = "black-forest-labs/FLUX.1-schnell",
    *,
    dtype: str = "auto",
    device: str | torch.device = "auto",
    offload: str = "none",
):
    """`FluxPipeline.from_pretrained` placed on `device` or CPU-offloaded onto it (users with the
    weights and a GPU; never called in tests). `dtype="auto"` is bfloat16 on CUDA; `offload` is
    none | model | sequential (see `saekit.models.offload`), checked before any weights are read."""
    from diffusers import FluxPipeline

    from saekit.device import auto_model_dtype, resolve_device
    from saekit.models.offload import check_offload, place_pipeline

    dev = resolve_device(device)
    check_offload(offload, dev)
    dt = auto_model_dtype(dev) if dtype == "auto" else dtype
    try:
        pipe = FluxPipeline.from_pretrained(name_or_path, dtype=getattr(torch, dt))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load FLUX {name_or_path!r} ({exc}); accept the licence on the hub and log in, or give a "
            "local folder holding the diffusers layout (model_index.json, transformer/, vae/, text encoders)"
        ) from exc
    return place_pipeline(pipe, dev, offload)


def tiny_flux_pipeline(seed: int = 0, *, num_layers: int = 2, num_single_layers: int = 2):
    """A random-weight FluxPipeline small enough for CPU tests and demos.

    It has no text encoders or tokenizers (those would need hub files): call it with
    `prompt_embeds [B, T, 32]` and `pooled_prompt_embeds [B, 32]`.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=num_layers,
            num_single_layers=num_single_layers,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
        )
        vae = AutoencoderKL(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=(4,),
            layers_per_block=1,
            latent_channels=1,
            norm_num_groups=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
            down_block_types=("DownEncoderBlock2D",),
            up_block_types=("UpDecoderBlock2D",),
        )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
