"""Steer an image generator with SAE features: the same seed, unsteered and steered, side by side.

One config (`ImageSteerConfig`), one entry (`steer_image`), three ways to steer:
- FLUX in the denoising loop (default): any steering method at a hook point and stream, on a window
  of denoising steps, on the conditional CFG branch (`--branch` for true CFG); see
  `saekit.steer.image_flux` and `saekit.steer.diffusion`.
- FLUX conditioning (`--conditioning pooled|text|both`): edit the pooled CLIP prompt vector and/or the
  per-token text embeddings before the loop, with a CLIP-text SAE (the gytdau recipe,
  `saekit.steer.conditioning`).
- Kandinsky 2.2 (`--model <decoder> --prior <prior>`): edit the CLIP image embedding the prior emits
  before the decoder renders it; `saekit.steer.image_kandinsky`.
Which generator runs follows from the pipeline (model_index.json's class, or the name), and `--model`
defaults to the SAE's provenance. `steer_target` is how `saekit steer` decides between this path and
the language-model path, from values, never from argv.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from saekit.errors import SteeringError


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
    hook: str | None = None
    """FLUX in-loop: hook point, e.g. `transformer_blocks.3` or `single_transformer_blocks.37@image`;
    default: the SAE's."""
    stream: Literal["image", "text"] | None = None
    """FLUX in-loop: stream of the hook point (appended as `@stream` when --hook has none)."""
    steps: str = "all"
    """FLUX in-loop: denoising steps to steer: `0-3`, `0,2,5`, `5-` (to the end) or `all`."""
    method: Literal["additive", "surgery", "clamp", "boost_active", "ablate"] = "clamp"
    """Steering method (saekit.steer.methods). On conditioning embeddings (FLUX --conditioning,
    Kandinsky): clamp sets f_j := s, ablate sets 0, boost_active adds s; the SAE error is kept."""
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


ImagePair = ImageSteerResult
"""The earlier name of the result (kept for callers of the old image_cli.run)."""


def is_image_model(name_or_path: str | None) -> bool:
    """True for diffusers pipelines (a folder with model_index.json, a FLUX or Kandinsky name): models
    that generate images. CLIP alone generates nothing."""
    if not name_or_path:
        return False
    from saekit.models.load import model_kind

    return model_kind(name_or_path) == "diffusers"


def sae_provenance_model(sae: str | Path | None) -> str | None:
    """The model recorded in a native SAE folder's config.json (`config.provenance.model`), read
    without loading weights; None for other formats or when absent."""
    if not sae:
        return None
    path = Path(sae) / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    cfg = data.get("config") if isinstance(data.get("config"), dict) else data
    prov = cfg.get("provenance")
    return prov.get("model") if isinstance(prov, dict) else None


def steer_target(model: str | None, sae: str | None, prior: str | None = None) -> Literal["image", "lm"]:
    """Which `saekit steer` path serves these values: a Kandinsky prior or a diffusers `model` (given,
    or else the SAE's provenance model) -> "image"; anything else -> "lm"."""
    if prior:
        return "image"
    return "image" if is_image_model(model or sae_provenance_model(sae)) else "lm"


def _pipeline_family(cfg: ImageSteerConfig, pipe) -> str:
    from saekit.models.kandinsky import Kandinsky
    from saekit.models.load import pipeline_family

    if pipe is not None:
        return "kandinsky_decoder" if isinstance(pipe, Kandinsky) else "flux"
    if cfg.model is None:
        raise SteeringError(
            f"no --model given and the SAE {cfg.sae} records no provenance model; pass --model "
            "(a FLUX pipeline, or the Kandinsky 2.2 decoder with --prior)"
        )
    family = "kandinsky_decoder" if cfg.prior is not None else pipeline_family(cfg.model)
    if family == "kandinsky_prior":
        raise SteeringError(
            f"--model {cfg.model} is the Kandinsky 2.2 prior; pass the decoder as --model and the prior "
            "as --prior"
        )
    return family


def steer_image(cfg: ImageSteerConfig, *, pipe=None) -> ImageSteerResult:
    """Generate unsteered and steered images from the same seed and save them side by side.

    `pipe` (optional, for reuse and tests): an already loaded FluxPipeline, or a
    `saekit.models.kandinsky.Kandinsky` (prior, decoder) pair.
    """
    import dataclasses

    import saekit
    from saekit.device import resolve_device

    if not cfg.feature:
        raise SteeringError("give --feature (one or more SAE feature ids)")
    if cfg.model is None and pipe is None:
        cfg = dataclasses.replace(cfg, model=sae_provenance_model(cfg.sae))
    family = _pipeline_family(cfg, pipe)
    dev = resolve_device(cfg.device)
    sae = saekit.load(cfg.sae, device=dev).eval()
    if family.startswith("kandinsky"):
        from saekit.steer.image_kandinsky import steer_kandinsky

        return steer_kandinsky(cfg, sae, dev, pipes=pipe)
    from saekit.steer.image_flux import steer_flux

    return steer_flux(cfg, sae, dev, pipe=pipe)
