"""What `saekit steer` on an image generator takes and returns: `ImageSteerConfig` (also the flags) and
`ImageSteerResult`. Kept apart from the drivers so that `flux`, `kandinsky` and `run` all import it and
none imports another driver's module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from saekit.steer.methods import MethodName  # the registry's names: the one list


@dataclass(frozen=True)
class ImageSteerConfig:
    """Steer a diffusers generator (FLUX, Kandinsky 2.2) with SAE features; unsteered | steered PNGs."""

    sae: str
    """SAE: a saekit folder (with scales.json from `saekit scale` for norm/max strengths) or any SAE
    file/folder `saekit.load` reads (e.g. a gytdau CLIP-SAE .pth)."""
    model: str | None = None
    """Pipeline: FLUX (folder with model_index.json, or a hub id such as black-forest-labs/FLUX.1-schnell)
    or the Kandinsky 2.2 decoder (kandinsky-community/kandinsky-2-2-decoder); default: SAE provenance."""
    prior: str | None = None
    """Kandinsky 2.2 prior (folder or hub id, e.g. kandinsky-community/kandinsky-2-2-prior): turns the
    prompt into the CLIP image embedding the SAE edits."""
    feature: tuple[int, ...] = ()
    """Feature id(s) to steer; several are steered together."""
    concept: str | None = None
    """FLUX: choose the features from a concept's words instead of --feature (`saekit.steer.image.concept`):
    with --conditioning, zero-shot (decoder directions closest to the concept's embedding minus the empty
    prompt's); in the loop, by contrast (features rising most from --prompt to --prompt plus the concept,
    same seed)."""
    concept_features: int = 1
    """How many features --concept chooses."""
    hook_point: str | None = None
    """FLUX in-loop: hook point, e.g. `transformer_blocks.3` or `single_transformer_blocks.37@image`;
    default: the SAE's."""
    stream: Literal["image", "text"] | None = None
    """FLUX in-loop: stream of the hook point (appended as `@stream` when --hook-point has none)."""
    steps: str = "all"
    """FLUX in-loop: denoising steps to steer: `0-3`, `0,2,5`, `5-` (to the end) or `all`."""
    method: MethodName = "clamp"
    """Steering method (saekit.steer.methods). On conditioning embeddings (FLUX --conditioning,
    Kandinsky) only the methods the registry gives a conditioning edit: clamp sets f_j := s, ablate
    sets 0, boost_active adds s; the SAE error is kept."""
    strength: str = "4max"
    """Strength with unit: `12` (abs), `0.5norm`, `4max`; one value or one per feature, comma-separated;
    on conditioning embeddings `current` sets the features to their current values (a no-op edit)."""
    keep_error: bool = False
    """FLUX in-loop boost_active only: keep the SAE error term."""
    branch: Literal["cond", "both", "opposite"] = "cond"
    """FLUX true CFG: edit only the conditional branch, both, or the opposite edit on the unconditional."""
    conditioning: Literal["off", "pooled", "text", "both"] = "off"
    """FLUX: instead of in-loop steering, edit the conditioning (pooled CLIP vector, text tokens, both)."""
    prompt: str | None = None
    """Prompt (needs a pipeline with text encoders; Kandinsky: the prior's)."""
    prompt_embeds: Path | None = None
    """FLUX, instead of --prompt: .safetensors with `prompt_embeds [N, T, d]`, `pooled_prompt_embeds [N, d]`
    (row --embeds-row is used) and optionally `negative_prompt_embeds` / `negative_pooled_prompt_embeds`."""
    embeds_row: int = 0
    """Which row of --prompt-embeds to generate."""
    negative_prompt: str | None = None
    """Negative prompt (FLUX: true CFG with --true-cfg-scale > 1; Kandinsky: the prior's negative)."""
    true_cfg_scale: float = 1.0
    """FLUX: > 1 runs true classifier-free guidance (a conditional and an unconditional call per step)."""
    guidance_scale: float | None = None
    """FLUX-dev's distilled guidance (default 3.5; ignored by schnell) or Kandinsky's CFG scale (4.0)."""
    num_inference_steps: int | None = None
    """Denoising steps (default: 4 for FLUX, 50 for the Kandinsky decoder)."""
    prior_steps: int = 25
    """Kandinsky: denoising steps of the prior."""
    prior_guidance_scale: float = 4.0
    """Kandinsky: CFG scale of the prior."""
    height: int = 512
    """Image height in pixels."""
    width: int = 512
    """Image width in pixels."""
    seed: int = 0
    """Noise seed, identical for the unsteered and steered runs."""
    out: Path = Path("steer.png")
    """Side-by-side PNG; the two images go beside it as <stem>_unsteered.png and <stem>_steered.png."""
    dtype: str = "auto"
    """Pipeline dtype: auto (bfloat16 on CUDA and CPUs with native bf16, else float32), bfloat16, float32."""
    device: str = "auto"
    """Device: auto (cuda when present), cpu, cuda, cuda:N."""
    offload: Literal["none", "model", "sequential"] = "none"
    """Diffusers CPU offload (CUDA only): model = one component on the GPU at a time, sequential =
    submodule by submodule (least GPU memory, slowest); see the README on FLUX memory."""
    quiet: bool = False
    """No progress bar or messages."""


class ImageSteerResult(NamedTuple):
    """What `steer_image` produced."""

    unsteered: Any
    """PIL image from the unedited run."""
    steered: Any
    """PIL image from the edited run (same seed)."""
    side_by_side: Path
    """Path of the combined PNG."""
    description: str
    """One line saying what was edited."""
