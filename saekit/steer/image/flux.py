"""FLUX steering: in the denoising loop at a hook point, or on the conditioning embeddings.

In-loop uses `saekit.steer.image.diffusion.steer_in_loop` (step window, CFG branch). Conditioning-level
(`--conditioning pooled|text|both`) edits FLUX's pooled CLIP prompt embedding (`pooled_prompt_embeds`,
the CLIP-L text tower's pooled output — what a CLIP-text SAE such as re-n-y's cc3m-text-* reads) and/or
the per-token T5 embeddings before the loop, keeping the SAE error (`saekit.steer.image.conditioning`). With
`--prompt` the pipeline's own `encode_prompt` produces the embeddings first, so the unsteered run sees
exactly what FLUX would have computed.
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.device import HOST
from saekit.errors import SteeringError
from saekit.steer.image.config import ImageSteerConfig, ImageSteerResult

EMBED_KEYS = (
    "prompt_embeds",
    "pooled_prompt_embeds",
    "negative_prompt_embeds",
    "negative_pooled_prompt_embeds",
)
TARGETS = {
    "pooled": ["pooled_prompt_embeds"],
    "text": ["prompt_embeds"],
    "both": ["pooled_prompt_embeds", "prompt_embeds"],
}
"""--conditioning choice -> the pipeline inputs it edits."""


def hook_with_stream(hook_point: str, stream: str | None) -> str:
    """`transformer_blocks.3` + `image` -> `transformer_blocks.3@image`; refuses two different streams."""
    if stream is None:
        return hook_point
    if "@" in hook_point:
        if hook_point.split("@", 1)[1] != stream:
            raise SteeringError(
                f"--hook-point {hook_point!r} already names a stream, which differs from --stream "
                f"{stream!r}; give one"
            )
        return hook_point
    return f"{hook_point}@{stream}"


def _embeds_from_file(cfg: ImageSteerConfig, dtype: torch.dtype) -> dict[str, Any]:
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
    return {k: t[k][r].to(dtype) for k in EMBED_KEYS if k in t}


def _encode_prompts(cfg: ImageSteerConfig, pipe) -> dict[str, Any]:
    """FLUX's own `encode_prompt` for the prompt (and the negative one), so embeddings can be edited."""
    pe, pooled, _ = pipe.encode_prompt(prompt=cfg.prompt, prompt_2=None)
    kw = {"prompt_embeds": pe, "pooled_prompt_embeds": pooled}
    if cfg.negative_prompt is not None:
        npe, npooled, _ = pipe.encode_prompt(prompt=cfg.negative_prompt, prompt_2=None)
        kw |= {"negative_prompt_embeds": npe, "negative_pooled_prompt_embeds": npooled}
    return kw


def prompt_inputs(cfg: ImageSteerConfig, pipe, *, need_embeds: bool) -> dict[str, Any]:
    """Pipeline keyword inputs for the prompt: text, or embeddings (from the file, or encoded here when
    `need_embeds`: conditioning-level edits need tensors to edit)."""
    if (cfg.prompt is None) == (cfg.prompt_embeds is None):
        raise SteeringError("give exactly one of --prompt TEXT or --prompt-embeds FILE.safetensors")
    if cfg.prompt_embeds is not None:
        return _embeds_from_file(cfg, pipe.transformer.dtype)
    if getattr(pipe, "text_encoder", None) is None:
        raise SteeringError(
            f"{cfg.model!r} has no text encoders; pass --prompt-embeds FILE.safetensors instead of --prompt"
        )
    if need_embeds:
        return _encode_prompts(cfg, pipe)
    kw: dict[str, Any] = {"prompt": cfg.prompt}
    if cfg.negative_prompt is not None:
        kw["negative_prompt"] = cfg.negative_prompt
    return kw


def _load(cfg: ImageSteerConfig, dev: torch.device):
    from saekit.models.load import load_diffusers

    return load_diffusers(cfg.model, cfg.dtype, dev, cfg.offload)


def _loop_hook_point(cfg: ImageSteerConfig, sae) -> str:
    """The in-loop hook point: --hook-point (with --stream), else the SAE's own (with --stream)."""
    from saekit.steer.session import hook_point_of

    hp = hook_point_of(sae, hook_with_stream(cfg.hook_point, cfg.stream) if cfg.hook_point else None)
    if cfg.hook_point is None and cfg.stream is not None:
        hp = hook_with_stream(hp, cfg.stream)
    return hp


def _in_loop(cfg: ImageSteerConfig, sae, pipe, kwargs: dict, generate, true_cfg: bool):
    from saekit.steer.image.common import absolute_strengths
    from saekit.steer.image.diffusion import sae_edit, steer_in_loop
    from saekit.steer.registry import get_method
    from saekit.steps import parse_steps

    n_steps = cfg.num_inference_steps or 4
    hp = _loop_hook_point(cfg, sae)
    steps = parse_steps(cfg.steps, n_steps)
    features = list(cfg.feature)
    strengths = absolute_strengths(cfg.strength, cfg.method, features, sae, cfg.sae)
    edit = sae_edit(cfg.method, sae, features, strengths, keep_error=cfg.keep_error)
    uncond = None
    if cfg.branch == "both":
        uncond = edit
    elif cfg.branch == "opposite":
        if not get_method(cfg.method).takes_strength:
            raise SteeringError(f"--branch opposite has no meaning for {cfg.method}; use cond or both")
        uncond = sae_edit(cfg.method, sae, features, [-s for s in strengths], keep_error=cfg.keep_error)
    text_len = kwargs["prompt_embeds"].shape[1] if "prompt_embeds" in kwargs else 512
    layout = "calls" if true_cfg else "none"
    with steer_in_loop(
        pipe.transformer, hp, edit, steps=steps, cfg_layout=layout, uncond_edit_fn=uncond, text_len=text_len
    ):
        steered = generate()
    desc = (
        f"{cfg.method} {cfg.strength} -> "
        + ", ".join(f"f{j}={v:.3g}" for j, v in zip(features, strengths))
        + f" at {hp}, steps {cfg.steps}, branch {cfg.branch}"
    )
    return steered, desc


def _on_conditioning(cfg: ImageSteerConfig, sae, kwargs: dict, generate):
    """Edit SAE features of the conditioning embeddings (error term kept), then generate."""
    from saekit.steer.image.common import conditioning_edit
    from saekit.steer.image.conditioning import edit_embedding

    edit = conditioning_edit(cfg.method, cfg.strength, list(cfg.feature), sae, cfg.sae)
    targets = TARGETS[cfg.conditioning]
    edited = {
        k: edit_embedding(kwargs[k], sae, list(cfg.feature), edit.values, mode=edit.mode) for k in targets
    }
    return generate(**edited), f"{edit.description} on {', '.join(targets)} (SAE error kept)"


@torch.no_grad()
def steer_flux(cfg: ImageSteerConfig, sae, dev: torch.device, *, pipe=None) -> ImageSteerResult:
    """Unsteered and steered FLUX images from one seed (in-loop or conditioning-level)."""
    from saekit.steer.image.common import save_pair

    pipe = pipe if pipe is not None else _load(cfg, dev)
    if not hasattr(pipe, "transformer"):
        raise SteeringError(f"{cfg.model!r} is not a FLUX pipeline (it has no transformer)")
    pipe.set_progress_bar_config(disable=cfg.quiet)
    kwargs = prompt_inputs(cfg, pipe, need_embeds=cfg.conditioning != "off")
    true_cfg = cfg.true_cfg_scale > 1 and ("negative_prompt" in kwargs or "negative_prompt_embeds" in kwargs)
    if cfg.branch != "cond" and (not true_cfg or cfg.conditioning != "off"):
        raise SteeringError(
            f"--branch {cfg.branch} needs in-loop steering with an unconditional branch: set "
            "--true-cfg-scale > 1 and give --negative-prompt (or negative_prompt_embeds); "
            "guidance-distilled FLUX has none"
        )
    common = {
        "num_inference_steps": cfg.num_inference_steps or 4,
        "height": cfg.height,
        "width": cfg.width,
        "guidance_scale": 3.5 if cfg.guidance_scale is None else cfg.guidance_scale,
        "true_cfg_scale": cfg.true_cfg_scale,
        "output_type": "pil",
    }

    def generate(**over) -> Any:
        gen = torch.Generator(HOST).manual_seed(cfg.seed)
        return pipe(**{**kwargs, **over, **common}, generator=gen).images[0]

    if cfg.conditioning != "off":  # a wrong-width SAE is refused before minutes of generation
        from saekit.steer.image.conditioning import check_embedding_size

        for k in TARGETS[cfg.conditioning]:
            check_embedding_size(kwargs[k], sae, f"FLUX {k}")
    chosen = ""
    if cfg.concept:
        cfg, chosen = _concept_features(cfg, sae, pipe, kwargs, generate)
    unsteered = generate()
    if cfg.conditioning != "off":
        steered, desc = _on_conditioning(cfg, sae, kwargs, generate)
    else:
        steered, desc = _in_loop(cfg, sae, pipe, kwargs, generate, true_cfg)
    return ImageSteerResult(unsteered, steered, save_pair(unsteered, steered, cfg.out), chosen + desc)


def _concept_features(
    cfg: ImageSteerConfig, sae, pipe, kwargs: dict, generate
) -> tuple[ImageSteerConfig, str]:
    """`cfg` with the features `--concept` chooses (`saekit.steer.image.concept`), and how."""
    import dataclasses

    from saekit.steer.image import concept as C

    n = cfg.concept_features
    if cfg.conditioning != "off":
        key = TARGETS[cfg.conditioning][0]
        pick = {"prompt_embeds": 0, "pooled_prompt_embeds": 1}[key]
        e_c = pipe.encode_prompt(prompt=cfg.concept, prompt_2=None)[pick]
        e_0 = pipe.encode_prompt(prompt="", prompt_2=None)[pick]
        feats, score = C.zero_shot_features(sae, C.concept_direction(e_c, e_0).to(sae.W_dec.device), n)
        how = f"zero-shot on {key}: decoder cosine"
    else:
        if cfg.prompt is None or "prompt" not in kwargs:
            raise SteeringError(
                "--concept in the denoising loop compares --prompt with and without the concept; give "
                "--prompt (not --prompt-embeds)"
            )
        feats, score = _contrast(cfg, sae, pipe, kwargs, generate, n)
        how = "contrast in the loop: mean latent rise"
    words = ", ".join(f"f{j} ({how.split(': ')[-1]} {v:.3g})" for j, v in zip(feats, score, strict=True))
    return dataclasses.replace(cfg, feature=tuple(feats), concept=None), (
        f"concept {cfg.concept!r} -> {words} [{how.split(':')[0]}]; "
    )


def _contrast(cfg: ImageSteerConfig, sae, pipe, kwargs: dict, generate, n: int):
    from saekit.steer.image import concept as C
    from saekit.steer.image.diffusion import steer_in_loop

    hp = _loop_hook_point(cfg, sae)
    means = []
    for prompt in (C.with_concept(cfg.prompt, cfg.concept), cfg.prompt):
        acc: list[torch.Tensor] = []

        def record(x: torch.Tensor, acc=acc) -> torch.Tensor:
            xf = x.float().reshape(-1, x.shape[-1])
            acc.append(sae.encode(xf.to(sae.W_dec.device)).mean(0, keepdim=True).cpu())
            return x

        with steer_in_loop(pipe.transformer, hp, record):
            generate(prompt=prompt)
        means.append(torch.cat(acc))
    return C.contrast_features(means[0], means[1], n)
