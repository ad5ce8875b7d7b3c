"""Training the testbed's components: the AutoencoderKL on the renders, then flow matching for the
FluxTransformer2DModel together with both text encoders, exactly in the form FluxPipeline samples.

Flow matching as FluxPipeline uses it: with packed, normalised latents `x0 [B, T, 4C]` (T = (H/2)(W/2)
tokens, the pipeline's `_pack_latents`), noise `n` and sigma `s` in (0, 1], the input is
`x_s = (1 - s) x0 + s n`, the transformer is called with `timestep = s` (the pipeline passes
`t / 1000` with `t = 1000 s`) and regresses the velocity `n - x0`; the Euler scheduler then steps
`x += (s_next - s) v`. Sigmas are drawn half uniformly, half through the scheduler's own shift for this
sequence length, so the few sigmas a short sampling schedule visits are well covered.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from saekit.testbed.fluxbed.config import FluxbedConfig


class LatentStats(NamedTuple):
    """The VAE config's `shift_factor` and `scaling_factor`: normalised latent = (z - shift) * scale."""

    shift: float
    scale: float


def _cosine_lr(opt: torch.optim.Optimizer, step: int, total: int, peak: float, warmup: int = 50) -> None:
    if step < warmup:
        lr = peak * (step + 1) / warmup
    else:
        lr = peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = max(lr, peak * 0.02)


def train_vae(vae, images: torch.Tensor, cfg: FluxbedConfig, gen: torch.Generator) -> list[float]:
    """Fit the AutoencoderKL to `images [N, 3, S, S]` in [0, 1] (the VAE sees [-1, 1], as in diffusers).

    The loss is the squared error, with ink pixels weighted up (most of a canvas is black background),
    plus `vae_kl` times the KL to N(0, 1). Returns the loss per step."""
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    losses = []
    bar = tqdm(range(cfg.vae_steps), desc="VAE", disable=cfg.quiet, leave=False)
    for step in bar:
        _cosine_lr(opt, step, cfg.vae_steps, cfg.vae_lr)
        idx = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen)
        x = images[idx] * 2 - 1
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        y = vae.decode(z).sample
        ink = (x.amax(1, keepdim=True) > -0.9).float()
        recon = ((y - x) ** 2 * (1 + 4 * ink)).mean()
        kl = post.kl().mean() / x[0].numel()
        loss = recon + cfg.vae_kl * kl * x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(float(recon.detach()))
        if step % 50 == 0:
            bar.set_postfix(recon=f"{np.mean(losses[-50:]):.4f}")
    vae.eval()
    return losses


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The VAE's posterior means `[N, C, h, w]` of `images [N, 3, S, S]` in [0, 1]."""
    out = [vae.encode(images[i : i + batch] * 2 - 1).latent_dist.mean for i in range(0, len(images), batch)]
    return torch.cat(out)


def latent_stats(z: torch.Tensor) -> LatentStats:
    return LatentStats(shift=float(z.mean()), scale=float(1.0 / z.std()))


def pack(z: torch.Tensor) -> torch.Tensor:
    """`[B, C, h, w]` -> `[B, (h/2)(w/2), 4C]`, FluxPipeline's `_pack_latents`."""
    from diffusers import FluxPipeline

    b, c, h, w = z.shape
    return FluxPipeline._pack_latents(z, b, c, h, w)


def image_ids(h: int, w: int) -> torch.Tensor:
    """`[(h/2)(w/2), 3]` position ids of the packed latent tokens, FluxPipeline's own."""
    from diffusers import FluxPipeline

    return FluxPipeline._prepare_latent_image_ids(1, h // 2, w // 2, torch.device("cpu"), torch.float32)


def sample_sigmas(n: int, seq_len: int, scheduler, gen: torch.Generator) -> torch.Tensor:
    """`[n]` sigmas in (0, 1]: half uniform, half through the scheduler's dynamic shift at `seq_len`."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    c = scheduler.config
    mu = calculate_shift(seq_len, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)
    u = torch.rand(n, generator=gen).clamp(1e-3, 1.0)
    shifted = math.exp(mu) / (math.exp(mu) + (1 / u - 1))
    return torch.where(torch.rand(n, generator=gen) < 0.5, u, shifted)


def train_flow(
    transformer,
    clip,
    t5,
    tokenizers,
    latents: torch.Tensor,
    captions: list[str],
    scheduler,
    cfg: FluxbedConfig,
    gen: torch.Generator,
) -> list[float]:
    """Flow matching on normalised latents `[N, C, h, w]` with their `captions`; trains every parameter of
    the transformer and both text encoders that requires a gradient (all of them in the build; a LoRA's
    adapters alone when the rest is frozen). Returns the loss per step."""
    tok_clip, tok_t5 = tokenizers
    n, _, h, w = latents.shape
    x0_all = pack(latents)
    ids_img = image_ids(h, w)
    seq_len = x0_all.shape[1]
    clip_ids = tok_clip(
        list(captions) + [""],
        padding="max_length",
        max_length=cfg.clip_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    long_len = max(cfg.t5_lengths)
    t5_ids = tok_t5(
        list(captions) + [""], padding="max_length", max_length=long_len, truncation=True, return_tensors="pt"
    ).input_ids
    empty = n  # the row of the empty prompt
    short = [length for length in cfg.t5_lengths if length != long_len] or [long_len]
    modules = (transformer, clip, t5)
    for m in modules:
        m.train()
    # only what requires a gradient: everything in the build, the adapters alone for a LoRA (lora.py)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.flow_lr, weight_decay=0.0)
    # an exponential moving average of the weights, copied into the modules at the end (flow_ema > 0)
    ema = [p.detach().clone() for p in params] if cfg.flow_ema > 0 else None
    losses: list[float] = []
    bar = tqdm(range(cfg.flow_steps), desc="flow matching", disable=cfg.quiet, leave=False)
    for step in bar:
        _cosine_lr(opt, step, cfg.flow_steps, cfg.flow_lr)
        long = cfg.t5_long_every > 0 and step % cfg.t5_long_every == cfg.t5_long_every - 1
        length = long_len if long else short[int(torch.randint(0, len(short), (1,), generator=gen))]
        batch = max(4, cfg.flow_batch // 8) if long and length > 128 else cfg.flow_batch
        idx = torch.randint(0, n, (batch,), generator=gen)
        rows = torch.where(torch.rand(batch, generator=gen) < cfg.caption_dropout, empty, idx)
        x0 = x0_all[idx]
        noise = torch.randn(x0.shape, generator=gen)
        s = sample_sigmas(batch, seq_len, scheduler, gen)
        xs = (1 - s)[:, None, None] * x0 + s[:, None, None] * noise
        pooled = clip(clip_ids[rows]).pooler_output
        enc = t5(t5_ids[rows, :length])[0]
        v = transformer(
            hidden_states=xs,
            timestep=s,
            pooled_projections=pooled,
            encoder_hidden_states=enc,
            txt_ids=torch.zeros(length, 3),
            img_ids=ids_img,
            return_dict=False,
        )[0]
        loss = ((v - (noise - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema is not None:
            # warm-up: early on the average forgets faster than `flow_ema`, so the random init fades out
            decay = min(cfg.flow_ema, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        losses.append(float(loss.detach()))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(params, ema):
                p.copy_(e)
    for m in modules:
        m.eval()
    return losses
