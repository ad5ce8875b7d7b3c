"""The diffusion driver: generate per batch of prompts and keep sampled tokens of a transformer block.

Each batch of prompts is one resume unit: image i is generated from its own seed (`seed + i`, one
torch.Generator per image, so a single image can be regenerated from documents.json alone) and the
token sampling of batch b is seeded with `seed + b`, so a resumed run is identical. Rows carry
`doc_id` (prompt index: documents.json holds `{"prompt", "seed"}`), `position` (token index; image
tokens row-major over the manifest's `patch_grid`), `step` and `timestep`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from saekit.data.harvest.common import StoreOptions, build_manifest, write_documents
from saekit.errors import SAEConfigError


@dataclass(frozen=True)
class DiffusionHarvestConfig(StoreOptions):
    """`saekit harvest diffusion`: a FLUX-style diffusers pipeline, sampled over the denoising loop."""

    model: str = "black-forest-labs/FLUX.1-schnell"
    """A diffusers FLUX pipeline: a folder with model_index.json, or a hub id."""
    hook_point: str = "transformer_blocks.0@image"
    """`transformer_blocks.N@image|text`, `single_transformer_blocks.N@image`, `....attn@image`."""
    prompts: str | None = None
    """A text file (one prompt per line), a .jsonl/.csv of captions, or `hf:DATASET[:SPLIT][#COLUMN]`
    (e.g. CC3M: hf:google-research-datasets/conceptual_captions#caption; needs `datasets`, internet
    and --num-prompts)."""
    prompt: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """A prompt (repeat the flag for several)."""
    prompt_embeds: Path | None = None
    """Pipelines without text encoders: a .safetensors with `prompt_embeds [N, T, d]` and
    `pooled_prompt_embeds [N, d]`."""
    num_prompts: int = 0
    """Use the first N prompts (0 = all; required for hf: datasets)."""
    steps: str | None = None
    """Denoising steps to harvest: `all` (default), `0-3`, `0,2`, `first_half`, ... (0 = first step)."""
    tokens_per_step: int = 256
    """Random tokens kept per image per step (the seed recipe's 256); 0 keeps all."""
    num_inference_steps: int = 4
    """Denoising steps per image (4 suits FLUX.1-schnell)."""
    height: int = 512
    """Image height in pixels."""
    width: int = 512
    """Image width in pixels."""
    guidance_scale: float = 3.5
    """Distilled guidance scale (ignored by models without guidance embeddings, e.g. schnell)."""
    seed: int = 0
    """Image i is generated with seed + i; the token sampling of batch b uses seed + b."""
    offload: Literal["none", "model", "sequential"] = "none"
    """diffusers CPU offload: none (all on --device: FLUX.1 needs ~33 GB in bf16), model (one component
    on the GPU at a time, ~24 GB), sequential (layer by layer: a few GB, much slower)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if sum(map(bool, (self.prompts, self.prompt, self.prompt_embeds))) != 1:
            raise SAEConfigError(
                "harvest: a diffusers pipeline needs exactly one of --prompts FILE|hf:DATASET, --prompt TEXT "
                "(repeatable) or --prompt-embeds FILE.safetensors"
            )
        if self.tokens_per_step < 0 or self.num_inference_steps < 1 or self.num_prompts < 0:
            raise SAEConfigError(
                "harvest: --tokens-per-step and --num-prompts must be >= 0 and --num-inference-steps >= 1"
            )
        if self.height < 16 or self.width < 16 or self.height % 16 or self.width % 16:
            raise SAEConfigError(
                f"harvest: FLUX needs --height/--width divisible by 16, found {self.height}x{self.width}"
            )


def _inputs(cfg: DiffusionHarvestConfig) -> tuple[list[dict], list[dict], int | None, str]:
    """Per-image conditioning, documents.json entries, the text length if known, a description."""
    from saekit.data.harvest import prompts as P

    if cfg.prompt_embeds is not None:
        items = P.read_embeds(cfg.prompt_embeds)[: cfg.num_prompts or None]
        texts = [f"prompt_embeds:{cfg.prompt_embeds}#{i}" for i in range(len(items))]
        return (
            items,
            _docs(cfg, texts),
            int(items[0]["prompt_embeds"].shape[1]),
            f"embeds:{cfg.prompt_embeds}",
        )
    if cfg.prompts is not None:
        hf = cfg.prompts.startswith("hf:")
        texts = (
            P.read_hf_prompts(cfg.prompts, cfg.num_prompts)
            if hf
            else P.read_prompt_file(cfg.prompts, cfg.num_prompts)
        )
        source = cfg.prompts
    else:
        texts = list(cfg.prompt)[: cfg.num_prompts or None]
        source = "prompt:" + "|".join(cfg.prompt)
    return [{"prompt": t} for t in texts], _docs(cfg, texts), P.T5_TEXT_LEN, source


def _docs(cfg: DiffusionHarvestConfig, texts: list[str]) -> list[dict]:
    return [{"prompt": t, "seed": cfg.seed + i} for i, t in enumerate(texts)]


def _load(cfg: DiffusionHarvestConfig, loaded, device: torch.device):
    """The pipeline on `device`, with diffusers' CPU offload when asked (passed to the loader)."""
    from saekit.models import load_model, resolve_dtype

    if loaded is not None:
        return loaded
    kwargs = {"dtype": resolve_dtype(cfg.dtype, device), "quiet": cfg.quiet, "device": str(device)}
    if cfg.offload != "none":
        if "offload" not in inspect.signature(load_model).parameters:
            raise SAEConfigError(
                f"harvest: --offload {cfg.offload} needs a saekit whose load_model supports offload; "
                "this one does not: use --offload none on a GPU with enough memory"
            )
        kwargs["offload"] = cfg.offload
    return load_model(cfg.model, **kwargs)


def _fields(cfg: DiffusionHarvestConfig, pipe, hp, steps, source: str) -> dict:
    from saekit.models.loaded import dtype_name

    tr = pipe.transformer
    extra = {}
    if hp.stream == "image":
        scale = 2 * int(getattr(pipe, "vae_scale_factor", 8))  # VAE downsampling x 2x2 packing
        extra["patch_grid"] = [cfg.height // scale, cfg.width // scale]
    return build_manifest(
        cfg,
        model=cfg.model,
        hook_point=str(hp),
        stream=hp.stream,
        layer=hp.layer,
        d=int(tr.inner_dim),
        model_dtype=dtype_name(tr.dtype),
        corpus=source,
        position="token index in the stream (image: row-major over patch_grid); step and timestep per row; "
        "doc_id = prompt index, described in documents.json",
        steps=sorted(steps) if steps is not None else None,
        tokens_per_step=cfg.tokens_per_step,
        num_inference_steps=cfg.num_inference_steps,
        height=cfg.height,
        width=cfg.width,
        guidance_scale=cfg.guidance_scale,
        **extra,
    )


def harvest_diffusion(cfg: DiffusionHarvestConfig, *, loaded=None):
    """Harvest `cfg.hook_point` over the generations; returns the opened ActivationStore."""
    from saekit.data.harvest.diffusion_sampler import DiffusionSampler, SamplerConfig
    from saekit.data.harvest.drive import drive, open_sink
    from saekit.data.harvest.finish import finish
    from saekit.data.harvest.prompts import merge_inputs
    from saekit.data.harvest.ranks import current_ranks
    from saekit.hooks import HookPoint
    from saekit.steps import parse_steps

    steps = parse_steps(cfg.steps, cfg.num_inference_steps)
    items, docs, text_len, source = _inputs(cfg)
    ranks = current_ranks()
    device = ranks.device(cfg.device)
    pipe = _load(cfg, loaded, device)
    if "prompt" in items[0] and getattr(pipe, "text_encoder", None) is None:
        raise SAEConfigError(
            f"harvest: {cfg.model!r} has no text encoders, so it cannot read --prompt/--prompts; "
            "pass --prompt-embeds FILE.safetensors instead"
        )
    pipe.set_progress_bar_config(disable=True)  # one bar (ours) per batch of prompts
    hp = HookPoint.parse(cfg.hook_point)
    sink = open_sink(cfg.out, _fields(cfg, pipe, hp, steps, source), cfg.tokens, cfg, ranks)
    if ranks.rank == 0:
        write_documents(cfg.out, docs)
    bs = cfg.batch_size
    sampling = SamplerConfig(
        hook_point=str(hp),
        steps=frozenset(steps) if steps is not None else None,
        tokens_per_step=cfg.tokens_per_step,
        text_len=text_len,
    )

    def compute(b: int):
        first = b * bs
        part = items[first : first + bs]
        sampler = DiffusionSampler(SamplerConfig(**{**sampling.__dict__, "seed": cfg.seed + b}), first)
        kwargs = dict(
            merge_inputs(part),
            num_inference_steps=cfg.num_inference_steps,
            height=cfg.height,
            width=cfg.width,
            guidance_scale=cfg.guidance_scale,
            output_type="latent",
            generator=[torch.Generator().manual_seed(cfg.seed + first + i) for i in range(len(part))],
        )
        with torch.inference_mode(), sampler.active(pipe.transformer):
            pipe(**kwargs)
        return [sampler.take()]

    got = drive(
        [sink], math.ceil(len(items) / bs), compute, ranks, device, desc=f"harvest {hp}", quiet=cfg.quiet
    )
    if (
        got[0] < cfg.tokens
        and cfg.tokens != DiffusionHarvestConfig.tokens
        and not cfg.quiet
        and ranks.rank == 0
    ):
        print(f"saekit harvest: the inputs yield {got[0]} rows (< --tokens {cfg.tokens}); storing those")
    return finish([sink], ranks, quiet=cfg.quiet)[0]
