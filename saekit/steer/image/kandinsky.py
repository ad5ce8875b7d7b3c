"""Kandinsky 2.2 steering: a CLIP image-embedding SAE edits the embedding between prior and decoder.

    prompt --prior--> image_embeds e [1, 1280] --edit--> e' --decoder--> image

The prior runs once; the decoder runs twice from the same seed, once on `e` and once on
`e' = decode(f') + (e − decode(f))` (`saekit.steer.image.conditioning`), so the two images differ only by
the edit, and a no-op edit gives the same image bit for bit. Only the conditional `image_embeds` is
edited; `negative_image_embeds` (the prior's embedding of the negative prompt, or of an empty image)
drives classifier-free guidance unchanged, as in the gytdau recipe.
"""

from __future__ import annotations

from typing import Any

import torch

from saekit.device import HOST
from saekit.errors import SteeringError
from saekit.steer.image.config import ImageSteerConfig, ImageSteerResult
from saekit.steer.registry import conditioning_methods

IN_LOOP_ONLY = {
    "hook_point": None,
    "stream": None,
    "steps": "all",
    "branch": "cond",
    "conditioning": "off",
    "prompt_embeds": None,
    "true_cfg_scale": 1.0,
    "keep_error": False,
}
"""FLUX-only flags and their defaults: set to anything else with Kandinsky, they are refused."""


def _refuse_flux_flags(cfg: ImageSteerConfig) -> None:
    bad = [k for k, v in IN_LOOP_ONLY.items() if getattr(cfg, k) != v]
    if bad:
        flags = ", ".join("--" + k.replace("_", "-") for k in bad)
        methods = "|".join(conditioning_methods())
        raise SteeringError(
            f"{flags}: FLUX-only; Kandinsky 2.2 is steered on the prior's image embedding "
            f"(--prompt, --feature, --method {methods}, --strength)"
        )
    if cfg.prompt is None:
        raise SteeringError("Kandinsky 2.2 needs --prompt (the prior turns it into the image embedding)")


def _load(cfg: ImageSteerConfig, dev: torch.device):
    from saekit.models.kandinsky import load_kandinsky

    return load_kandinsky(cfg.model, cfg.prior, dtype=cfg.dtype, device=dev, offload=cfg.offload)


def prior_embeds(cfg: ImageSteerConfig, prior) -> tuple[torch.Tensor, torch.Tensor]:
    """`(image_embeds, negative_image_embeds)` from the prior, seeded with --seed."""
    out = prior(
        cfg.prompt,
        negative_prompt=cfg.negative_prompt if cfg.negative_prompt is not None else "",
        num_inference_steps=cfg.prior_steps,
        guidance_scale=cfg.prior_guidance_scale,
        generator=torch.Generator(HOST).manual_seed(cfg.seed),
    )
    return out.image_embeds, out.negative_image_embeds


@torch.no_grad()
def steer_kandinsky(cfg: ImageSteerConfig, sae, dev: torch.device, *, pipes=None) -> ImageSteerResult:
    """Unsteered and steered Kandinsky 2.2 images from one seed; the SAE edits the image embedding."""
    from saekit.steer.image.common import conditioning_edit, save_pair
    from saekit.steer.image.conditioning import check_embedding_size, edit_embedding

    _refuse_flux_flags(cfg)
    edit = conditioning_edit(cfg.method, cfg.strength, list(cfg.feature), sae, cfg.sae)
    pipes = pipes if pipes is not None else _load(cfg, dev)
    for p in pipes:
        p.set_progress_bar_config(disable=cfg.quiet)
    emb, neg = prior_embeds(cfg, pipes.prior)
    check_embedding_size(emb, sae, "Kandinsky prior's image embedding")
    edited = edit_embedding(emb, sae, list(cfg.feature), edit.values, mode=edit.mode)

    def decode(image_embeds: torch.Tensor) -> Any:
        return pipes.decoder(
            image_embeds=image_embeds,
            negative_image_embeds=neg,
            height=cfg.height,
            width=cfg.width,
            num_inference_steps=cfg.num_inference_steps or 50,
            guidance_scale=4.0 if cfg.guidance_scale is None else cfg.guidance_scale,
            generator=torch.Generator(HOST).manual_seed(cfg.seed),
            output_type="pil",
        ).images[0]

    unsteered, steered = decode(emb), decode(edited)
    desc = f"{edit.description} on the prior's image_embeds (SAE error kept)"
    return ImageSteerResult(unsteered, steered, save_pair(unsteered, steered, cfg.out), desc)
