"""`saekit steer` for diffusers pipelines (FLUX): the same seed, unsteered and steered, side by side.

    saekit steer --model PATH --sae sae/ --hook transformer_blocks.3 --stream image --steps 0-3 \
        --feature 12 --method clamp --strength 4max --prompt "a cat" --out steer.png

writes `steer.png` (unsteered | steered, one PNG) plus `steer_unsteered.png` and `steer_steered.png`.
Two modes:
- in-loop (default): any steering method at a hook point and stream, on a window of denoising steps
  (`saekit.steer.diffusion.steer_in_loop`); with true CFG (`--true-cfg-scale > 1` and a negative
  prompt) `--branch` says what the unconditional branch gets: nothing (`cond`), the same edit
  (`both`), or the same method with negated strengths (`opposite`, which CFG then amplifies).
  Guidance-distilled FLUX (the default) has no unconditional call: only `cond` applies.
- `--conditioning pooled|text|both`: clamp SAE features of the conditioning embeddings (FLUX's
  pooled CLIP vector and/or the per-token text embeddings) before they enter the generator, keeping
  the SAE error term; `--strength current` clamps to the current values (no edit: the steered image
  equals the unsteered one bit for bit).

The lead wires it into `saekit/commands/steer.py:main` with
`if image_cli.wants_image(argv): return image_cli.main(argv)`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch

from saekit.errors import SaekitError, SteeringError


@dataclass(frozen=True)
class ImageSteerConfig:
    """Steer a diffusers pipeline with SAE features; unsteered and steered images side by side."""

    model: str
    """Diffusers pipeline: a folder with model_index.json, or a hub id such as black-forest-labs/FLUX.1-schnell."""
    sae: str
    """SAE folder trained on this hook point (with scales.json from `saekit scale` for norm/max strengths)."""
    feature: tuple[int, ...] = ()
    """Feature id(s) to steer; several are steered together."""
    hook: str | None = None
    """Hook point, e.g. `transformer_blocks.3` or `single_transformer_blocks.37@image`; default: the SAE's."""
    stream: Literal["image", "text"] | None = None
    """Stream of the hook point (appended as `@stream` when --hook has none)."""
    steps: str = "all"
    """Denoising steps to steer: `0-3`, `0,2,5`, `5-` (to the end) or `all`."""
    method: Literal["additive", "surgery", "clamp", "boost_active", "ablate"] = "clamp"
    """Steering method (see saekit.steer.methods); --conditioning uses clamp."""
    strength: str = "4max"
    """Strength with unit: `12` (abs), `0.5norm`, `4max`; one value or one per feature, comma-separated;
    `current` (with --conditioning) clamps to the current values."""
    keep_error: bool = False
    """boost_active only: keep the SAE error term."""
    branch: Literal["cond", "both", "opposite"] = "cond"
    """With true CFG: edit only the conditional branch, both, or the opposite edit on the unconditional one."""
    conditioning: Literal["off", "pooled", "text", "both"] = "off"
    """Instead of in-loop steering: clamp the conditioning embeddings (pooled CLIP vector, text tokens, both)."""
    prompt: str | None = None
    """Prompt (needs a pipeline with text encoders)."""
    prompt_embeds: Path | None = None
    """Instead of --prompt: .safetensors with `prompt_embeds [N, T, d]`, `pooled_prompt_embeds [N, d]` (row
    --embeds-row is used) and optionally `negative_prompt_embeds` / `negative_pooled_prompt_embeds`."""
    embeds_row: int = 0
    """Which row of --prompt-embeds to generate."""
    negative_prompt: str | None = None
    """Negative prompt (true CFG; with --true-cfg-scale > 1)."""
    true_cfg_scale: float = 1.0
    """> 1 runs true classifier-free guidance (a conditional and an unconditional call per step)."""
    guidance_scale: float = 3.5
    """Distilled guidance scale (FLUX-dev; ignored by schnell)."""
    num_inference_steps: int = 4
    """Denoising steps."""
    height: int = 512
    """Image height in pixels."""
    width: int = 512
    """Image width in pixels."""
    seed: int = 0
    """Noise seed, identical for the unsteered and steered runs."""
    out: Path = Path("steer.png")
    """Side-by-side PNG; the two images go beside it as <stem>_unsteered.png and <stem>_steered.png."""
    dtype: str = "auto"
    """Pipeline dtype: auto (bfloat16 on GPU / fast-bf16 CPUs), bfloat16, float32."""
    device: str | None = None
    """Device (default cuda when present, else cpu)."""
    quiet: bool = False
    """No progress bar or messages."""


class ImagePair(NamedTuple):
    """What `run` produced."""

    unsteered: Any
    """PIL image from the unedited run."""
    steered: Any
    """PIL image from the edited run (same seed)."""
    side_by_side: Path
    """Path of the combined PNG."""
    description: str
    """One line saying what was edited."""


def is_image_model(name_or_path: str | None) -> bool:
    """True for diffusers pipelines (a folder with model_index.json, or a FLUX name): models that
    generate images. CLIP alone generates nothing; its embeddings are steered via --conditioning."""
    if not name_or_path:
        return False
    from saekit.models.load import model_kind

    return model_kind(name_or_path) == "diffusers"


def _flag(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def wants_image(argv: list[str]) -> bool:
    """Does this `saekit steer` command line target a diffusers pipeline (by --model, else by the
    SAE's recorded provenance model)?"""
    model = _flag(argv, "--model")
    if model is None:
        sae = _flag(argv, "--sae")
        cfg = Path(sae) / "config.json" if sae else None
        if cfg is not None and cfg.is_file():
            import json

            try:
                model = (json.loads(cfg.read_text(encoding="utf-8")).get("provenance") or {}).get("model")
            except (OSError, json.JSONDecodeError, AttributeError):
                model = None
    return is_image_model(model)


def hook_with_stream(hook: str, stream: str | None) -> str:
    """`transformer_blocks.3` + `image` -> `transformer_blocks.3@image`; refuses two different streams."""
    if stream is None:
        return hook
    if "@" in hook:
        if hook.split("@", 1)[1] != stream:
            raise SteeringError(
                f"--hook {hook!r} already names a stream, which differs from --stream {stream!r}; give one"
            )
        return hook
    return f"{hook}@{stream}"


def _conditioning_kwargs(cfg: ImageSteerConfig, pipe) -> dict[str, Any]:
    if (cfg.prompt is None) == (cfg.prompt_embeds is None):
        raise SteeringError("give exactly one of --prompt TEXT or --prompt-embeds FILE.safetensors")
    if cfg.prompt is not None:
        if getattr(pipe, "text_encoder", None) is None:
            raise SteeringError(
                f"{cfg.model!r} has no text encoders; pass --prompt-embeds FILE.safetensors instead of --prompt"
            )
        kw: dict[str, Any] = {"prompt": cfg.prompt}
        if cfg.negative_prompt is not None:
            kw["negative_prompt"] = cfg.negative_prompt
        return kw
    from safetensors.torch import load_file

    try:
        t = load_file(str(cfg.prompt_embeds))
    except Exception as exc:
        raise SteeringError(f"cannot read --prompt-embeds {cfg.prompt_embeds}: {exc}") from exc
    if "prompt_embeds" not in t or "pooled_prompt_embeds" not in t:
        raise SteeringError(
            f"{cfg.prompt_embeds} must hold prompt_embeds and pooled_prompt_embeds; found {sorted(t)}"
        )
    n = t["prompt_embeds"].shape[0]
    if not 0 <= cfg.embeds_row < n:
        raise SteeringError(f"--embeds-row {cfg.embeds_row} is outside the {n} rows of {cfg.prompt_embeds}")
    r = slice(cfg.embeds_row, cfg.embeds_row + 1)
    kw = {
        k: t[k][r]
        for k in (
            "prompt_embeds",
            "pooled_prompt_embeds",
            "negative_prompt_embeds",
            "negative_pooled_prompt_embeds",
        )
        if k in t
    }
    dt = pipe.transformer.dtype
    return {k: v.to(dt) for k, v in kw.items()}


def _strengths(cfg: ImageSteerConfig, sae, space: str) -> list[float]:
    from saekit.steer.calibration import load_calibration
    from saekit.steer.strength import parse_strengths, resolve_for_features

    if cfg.method == "ablate" and cfg.conditioning == "off":
        return [0.0] * len(cfg.feature)
    strengths = parse_strengths(cfg.strength)
    if len(strengths) not in (1, len(cfg.feature)):
        raise SteeringError(
            f"{len(strengths)} strengths for {len(cfg.feature)} features; give one, or one per feature"
        )
    cal = load_calibration(cfg.sae, d_sae=sae.d_sae)
    out: list[float] = []
    for i, j in enumerate(cfg.feature):
        st = strengths[0] if len(strengths) == 1 else strengths[i]
        out += resolve_for_features(st, space, sae, [j], cal, cfg.sae)
    return out


def _save_pair(a, b, out: Path) -> Path:
    """Write a|b as one PNG, plus each image beside it (atomic writes)."""
    import io

    from PIL import Image

    from saekit.atomic import write_bytes_atomic

    def png(img) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    both = Image.new("RGB", (a.width + b.width, max(a.height, b.height)))
    both.paste(a.convert("RGB"), (0, 0))
    both.paste(b.convert("RGB"), (a.width, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, png(both))
    write_bytes_atomic(out.with_name(f"{out.stem}_unsteered.png"), png(a))
    write_bytes_atomic(out.with_name(f"{out.stem}_steered.png"), png(b))
    return out


@torch.no_grad()
def run(cfg: ImageSteerConfig, pipe=None) -> ImagePair:
    """Generate unsteered and steered images from the same seed and save them (the library entry)."""
    from saekit.models import load_model, resolve_dtype
    from saekit.steer.diffusion import parse_steps, sae_edit, steer_conditioning, steer_in_loop
    from saekit.steer.methods import METHOD_SPACE
    from saekit.steer.session import hook_point_of, load_sae_folder

    if not cfg.feature:
        raise SteeringError("give --feature (one or more SAE feature ids)")
    if pipe is None:
        pipe = load_model(cfg.model, dtype=resolve_dtype(cfg.dtype), device=cfg.device, quiet=cfg.quiet)
    if not hasattr(pipe, "transformer"):
        raise SteeringError(
            f"{cfg.model!r} is not a diffusers pipeline; use `saekit steer` with --sae only for language models"
        )
    pipe.set_progress_bar_config(disable=cfg.quiet)
    sae = load_sae_folder(cfg.sae).eval()
    d_sae = sae.d_sae
    bad = [j for j in cfg.feature if not 0 <= j < d_sae]
    if bad:
        raise SteeringError(f"feature(s) {bad} out of range for an SAE with {d_sae} features")
    kwargs = _conditioning_kwargs(cfg, pipe)
    true_cfg = cfg.true_cfg_scale > 1 and ("negative_prompt" in kwargs or "negative_prompt_embeds" in kwargs)
    if cfg.branch != "cond" and not true_cfg:
        raise SteeringError(
            f"--branch {cfg.branch} needs an unconditional branch: set --true-cfg-scale > 1 and give "
            "--negative-prompt (or negative_prompt_embeds); guidance-distilled FLUX has none"
        )
    common = {
        "num_inference_steps": cfg.num_inference_steps,
        "height": cfg.height,
        "width": cfg.width,
        "guidance_scale": cfg.guidance_scale,
        "true_cfg_scale": cfg.true_cfg_scale,
        "output_type": "pil",
    }

    def generate(**over) -> Any:
        return pipe(**{**kwargs, **over, **common}, generator=torch.Generator().manual_seed(cfg.seed)).images[
            0
        ]

    unsteered = generate()
    features = list(cfg.feature)
    if cfg.conditioning != "off":
        steered, desc = _steer_conditioning(cfg, sae, kwargs, generate, steer_conditioning)
    else:
        hp = hook_point_of(sae, hook_with_stream(cfg.hook, cfg.stream) if cfg.hook else None)
        if cfg.hook is None and cfg.stream is not None:
            hp = hook_with_stream(hp, cfg.stream)
        steps = parse_steps(cfg.steps, cfg.num_inference_steps)
        strengths = _strengths(cfg, sae, METHOD_SPACE[cfg.method])
        edit = sae_edit(cfg.method, sae, features, strengths, keep_error=cfg.keep_error)
        uncond = None
        if cfg.branch == "both":
            uncond = edit
        elif cfg.branch == "opposite":
            if cfg.method == "ablate":
                raise SteeringError("--branch opposite has no meaning for ablate; use cond or both")
            uncond = sae_edit(cfg.method, sae, features, [-s for s in strengths], keep_error=cfg.keep_error)
        text_len = kwargs["prompt_embeds"].shape[1] if "prompt_embeds" in kwargs else 512
        with steer_in_loop(
            pipe.transformer,
            hp,
            edit,
            steps=steps,
            cfg_layout="calls" if true_cfg else "none",
            uncond_edit_fn=uncond,
            text_len=text_len,
        ):
            steered = generate()
        desc = (
            f"{cfg.method} {cfg.strength} -> "
            + ", ".join(f"f{j}={v:.3g}" for j, v in zip(features, strengths))
            + f" at {hp}, steps {cfg.steps}, branch {cfg.branch}"
        )
    path = _save_pair(unsteered, steered, cfg.out)
    return ImagePair(unsteered, steered, path, desc)


def _steer_conditioning(cfg: ImageSteerConfig, sae, kwargs: dict, generate, steer_conditioning):
    """Clamp SAE features of the conditioning embeddings (error term kept), then generate."""
    from saekit.steer.methods import METHOD_SPACE

    if cfg.method != "clamp":
        raise SteeringError(
            f"--conditioning edits embeddings with clamp (keeping the SAE error); found --method {cfg.method}"
        )
    if "prompt_embeds" not in kwargs:
        raise SteeringError(
            "--conditioning needs --prompt-embeds (the embeddings to edit); encode your prompt first"
        )
    values = (
        None
        if cfg.strength.strip() == "current"
        else torch.tensor(_strengths(cfg, sae, METHOD_SPACE["clamp"]))
    )
    targets = {
        "pooled": ["pooled_prompt_embeds"],
        "text": ["prompt_embeds"],
        "both": ["pooled_prompt_embeds", "prompt_embeds"],
    }[cfg.conditioning]
    edited = {k: steer_conditioning(kwargs[k], sae, list(cfg.feature), values) for k in targets}
    shown = (
        "current values"
        if values is None
        else ", ".join(f"f{j}={v:.3g}" for j, v in zip(cfg.feature, values.tolist()))
    )
    return generate(**edited), f"clamp {shown} on {', '.join(targets)} (error term kept)"


def main(argv: list[str]) -> int:
    """`saekit steer` for image models; returns the exit code."""
    import tyro

    cfg = tyro.cli(
        ImageSteerConfig,
        args=argv,
        prog="saekit steer",
        description="Steer a diffusers pipeline (FLUX) with SAE features; writes unsteered|steered PNGs.",
    )
    try:
        pair = run(cfg)
    except SaekitError as exc:
        print(f"saekit steer: {exc}", file=sys.stderr)
        return 1
    if not cfg.quiet:
        print(f"{pair.description}\nsaved {pair.side_by_side} (unsteered | steered, seed {cfg.seed})")
    return 0
