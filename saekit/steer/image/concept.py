"""Which SAE features carry a concept in an image generator: `saekit steer --model <FLUX> --concept red`.

Three ways, by where the SAE reads and what judges the images:
- **Zero-shot, on a conditioning embedding** (an SAE on FLUX's pooled CLIP prompt vector, on its text
  embeddings, or on any CLIP embedding): the concept is a direction of that very space, the embedding of
  the concept's words minus the embedding of the empty prompt (what the concept adds to "nothing"). The
  features are the latents whose decoder direction has the largest cosine with it. No image is made.
- **Contrast, in the denoising loop** (an SAE at a transformer hook point): the features whose mean
  activation over image tokens and denoising steps rises most from the prompt to the same prompt with the
  concept added, measured on the same seed (`saekit.sweep.image_factors` selects the same way, on many
  prompts, and measures how well it steers).
- **Judged, from the images a feature is most active on**: generate images, have a judge score each for
  the concept (a factor judge, a CLIP margin), and rank each latent by how much more its top-activating
  images show the concept than all images do (`judged_features`). It needs no paired prompts, and it picks
  what the images show rather than what the prompts asked for.

The functions here are tensor math; generation and hooks stay with the callers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saekit.errors import SteeringError


def concept_direction(concept_embeds: Tensor, neutral_embeds: Tensor) -> Tensor:
    """`[d]`: what the concept adds to the neutral prompt's embedding. Token embeddings `[1, T, d]` are
    averaged over tokens first (prompts of different lengths compare as wholes)."""
    c, n = concept_embeds.float(), neutral_embeds.float()
    if c.ndim == 3:
        c, n = c.mean(1), n.mean(1)
    d = (c - n).reshape(-1, c.shape[-1]).mean(0)
    if not torch.isfinite(d).all() or float(d.norm()) == 0.0:
        raise SteeringError(
            "the concept's embedding equals the empty prompt's (or is not finite): the text encoder does not "
            "tell this concept apart; try other words for it"
        )
    return d


def zero_shot_features(sae, direction: Tensor, n: int = 1) -> tuple[list[int], list[float]]:
    """The `n` latents whose unit decoder direction has the largest cosine with `direction [d_in]`, and
    those cosines (best first)."""
    if direction.shape[-1] != sae.d_in:
        raise SteeringError(
            f"the concept direction has size {direction.shape[-1]} but the SAE has d_in={sae.d_in}: use an "
            "SAE trained on this embedding"
        )
    if not 1 <= n <= sae.d_sae:
        raise SteeringError(f"--concept-features must be 1..{sae.d_sae}, got {n}")
    with torch.no_grad():
        dirs = sae.decoder_directions().float()
        u = direction.float().to(dirs.device)
        cos = dirs @ (u / u.norm())
        top = torch.topk(cos, n)
    return top.indices.tolist(), [float(v) for v in top.values]


def contrast_features(
    latents_with: Tensor, latents_without: Tensor, n: int = 1
) -> tuple[list[int], list[float]]:
    """The `n` latents whose mean activation rises most from `latents_without [..., F]` to
    `latents_with [..., F]`, and those rises (best first)."""
    if latents_with.shape[-1] != latents_without.shape[-1]:
        raise SteeringError("contrast: both runs must be encoded by the same SAE")
    rise = latents_with.reshape(-1, latents_with.shape[-1]).float().mean(0) - latents_without.reshape(
        -1, latents_without.shape[-1]
    ).float().mean(0)
    if not 1 <= n <= rise.numel():
        raise SteeringError(f"--concept-features must be 1..{rise.numel()}, got {n}")
    top = torch.topk(rise, n)
    return top.indices.tolist(), [float(v) for v in top.values]


def with_concept(prompt: str, concept: str) -> str:
    """The contrast prompt: the prompt with the concept's words added."""
    return f"{prompt.rstrip().rstrip('.')}, {concept}"


def judged_features(
    latents: Tensor, scores: Tensor, n: int = 1, top_k: int | None = None
) -> tuple[list[int], list[float]]:
    """The `n` latents whose `top_k` most active images (rows of `latents [N, F]`, one per image) have the
    highest mean judge score `scores [N]` (1 = the image shows the concept), minus the mean score of all
    images; and those lifts (best first). A latent silent on an image does not count that image as one of
    its top ones (its lift is taken over the images it is active on, at most `top_k`; a latent active on
    none scores 0). `top_k` defaults to a quarter of the images, at least 1. Lifts move in steps of
    1/top_k, so many latents tie on few images (any latent slightly higher on every concept image); ties
    go to the latent whose activation separates the judged images most (mean on images scored >= 0.5
    minus mean on the rest, over its standard deviation)."""
    if latents.ndim != 2 or scores.shape != (latents.shape[0],):
        raise SteeringError(
            f"judged features: latents must be [images, F] and scores [images], got {tuple(latents.shape)} "
            f"and {tuple(scores.shape)}"
        )
    N, F = latents.shape
    if not 1 <= n <= F:
        raise SteeringError(f"--concept-features must be 1..{F}, got {n}")
    k = max(1, N // 4) if top_k is None else top_k
    if not 1 <= k <= N:
        raise SteeringError(f"judged features: top_k must be 1..{N} images, got {k}")
    lat, sc = latents.float(), scores.float()
    vals, idx = torch.topk(lat, k, dim=0)  # [k, F]: each latent's k most active images
    active = (vals > 0).float()
    hits = (sc[idx] * active).sum(0)
    count = active.sum(0)
    lift = torch.where(count > 0, hits / count.clamp_min(1) - sc.mean(), torch.zeros_like(hits))
    pos = sc >= 0.5
    if pos.any() and (~pos).any():
        sep = (lat[pos].mean(0) - lat[~pos].mean(0)) / (lat.std(0) + 1e-6)
    else:
        sep = torch.zeros(F)
    tie = 0.5 / k * sep / (sep.abs().max() + 1e-12)  # less than half a lift step: orders ties only
    order = torch.topk(lift + tie, n).indices
    return order.tolist(), [float(lift[j]) for j in order]
