"""The CLIP driver: one row per image / caption (or per token for TOKEN=all) at a `--site`.

Each row records `doc_id` (the image / caption index, described in documents.json: `{"image": path
or skimage:NAME}` / `{"caption": text}`) and `position` (vision: CLS = 0, patch p = 1 + p row-major,
with the manifest's `patch_grid`; text: the token index; -1 for mean / pooled rows). A batch of
images is one resume unit, recomputed identically after an interruption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from saekit.data.harvest.common import StoreOptions, build_manifest, write_documents
from saekit.errors import HookPointError, SAEConfigError


@dataclass(frozen=True)
class ClipHarvestConfig(StoreOptions):
    """`saekit harvest clip`: CLIP embeddings of images (vision tower) or captions (text tower)."""

    model: str = "openai/clip-vit-large-patch14"
    """A CLIP folder (config.json model_type clip / clip_vision_model / clip_text_model) or hub id."""
    images: str | None = None
    """Vision tower: `skimage` (scikit-image's bundled samples), a folder of images, or one image."""
    captions: Path | None = None
    """Text tower: a .jsonl (field caption or text) or .csv (column caption or text) of captions."""
    site: str = "vision:-2:cls"
    """`TOWER:LAYER:TOKEN`; default the seed recipe `hidden_states[-2][:, 0]`. TOWER vision|text; LAYER an
    index into hidden_states (0 = embeddings, -1 = last); TOKEN cls, eos (text end token), mean, all (every
    token), or a position. `vision:pooled` / `text:pooled` = pooler_output."""

    def __post_init__(self) -> None:
        super().__post_init__()
        vision = parse_clip_site(self.site).tower == "vision"
        if vision and (self.images is None or self.captions is not None):
            raise SAEConfigError(
                f"harvest: site {self.site} reads the vision tower: give --images (skimage or a folder) "
                "and no --captions"
            )
        if not vision and (self.captions is None or self.images is not None):
            raise SAEConfigError(
                "harvest: a text-tower site needs --captions FILE.jsonl|csv (and no --images)"
            )


def parse_clip_site(spec: str | None):
    """`TOWER:LAYER:TOKEN` -> ClipSite. `vision:-2:cls` (default, the seed recipe), `text:-1:eos`,
    `vision:5:all`, `text:-2:mean`, `vision:-2:3` (position 3), `vision:pooled`; `text:-2` means EOS."""
    from saekit.models.clip import SEED_SITE, ClipSite

    if spec is None or not spec.strip():
        return SEED_SITE
    parts = [p.strip() for p in spec.strip().split(":")]
    if len(parts) == 2 and parts[1] == "pooled":
        return ClipSite(parts[0], -1, "pooled")  # type: ignore[arg-type]
    if len(parts) not in (2, 3):
        raise HookPointError(
            f"CLIP site {spec!r}: expected TOWER:LAYER:TOKEN, e.g. vision:-2:cls, text:-1:eos or "
            "vision:pooled"
        )
    try:
        layer = int(parts[1])
    except ValueError as exc:
        raise HookPointError(
            f"CLIP site {spec!r}: layer {parts[1]!r} is not an integer (e.g. -2 = penultimate)"
        ) from exc
    token: str | int = parts[2] if len(parts) == 3 else ("eos" if parts[0] == "text" else "cls")
    if isinstance(token, str) and token.lstrip("-").isdigit():
        token = int(token)
    return ClipSite(parts[0], layer, token)  # type: ignore[arg-type]


def _load(cfg: ClipHarvestConfig, loaded, device: torch.device, vision: bool):
    from saekit.models import load_model, resolve_dtype

    clip = (
        loaded
        if loaded is not None
        else load_model(cfg.model, dtype=resolve_dtype(cfg.dtype, device), quiet=cfg.quiet)
    )
    if vision and clip.processor is None:
        raise SAEConfigError(
            f"harvest: {cfg.model!r} has no image processor (preprocessor_config.json); save one "
            "beside the model"
        )
    if not vision and clip.tokenizer is None:
        raise SAEConfigError(
            f"harvest: {cfg.model!r} has no tokenizer; the text tower needs the CLIP tokenizer files"
        )
    clip.model.to(device)
    return clip


def _fields(cfg: ClipHarvestConfig, clip, site, vision: bool) -> dict:
    from saekit.models.clip import hidden_state_hook, patch_grid, tower_module
    from saekit.models.loaded import dtype_name

    tower, _ = tower_module(clip.model, site.tower)
    extra = {"site": f"{site.tower}:{site.layer}:{site.token}"}
    if vision and site.token not in ("mean", "pooled"):
        extra["patch_grid"] = patch_grid(clip.model)
    return build_manifest(
        cfg,
        model=clip.name,
        hook_point="pooler_output" if site.token == "pooled" else hidden_state_hook(clip.model, site),
        layer=site.layer,
        d=int(tower.config.hidden_size),
        model_dtype=dtype_name(next(clip.model.parameters()).dtype),
        corpus=str(cfg.images if vision else cfg.captions),
        position="token index in the tower (vision: 0 = CLS, 1 + p = patch p row-major; -1 = mean/pooled); "
        "doc_id = image/caption index, described in documents.json",
        **extra,
    )


def harvest_clip(cfg: ClipHarvestConfig, *, loaded=None):
    """Harvest `cfg.site` over the images or captions; returns the opened ActivationStore."""
    from saekit.data.harvest.drive import drive, open_sink
    from saekit.data.harvest.finish import finish
    from saekit.data.harvest.ranks import current_ranks
    from saekit.data.images import load_captions, load_images
    from saekit.models import clip as clip_models

    site = parse_clip_site(cfg.site)
    vision = site.tower == "vision"
    ranks = current_ranks()
    device = ranks.device(cfg.device)
    clip = _load(cfg, loaded, device, vision)
    model = clip.model
    inputs = load_images(cfg.images, limit=cfg.tokens) if vision else load_captions(cfg.captions)
    docs = [{"image": i.source} for i in inputs] if vision else [{"caption": c} for c in inputs]
    sink = open_sink(cfg.out, _fields(cfg, clip, site, vision), cfg.tokens, cfg, ranks)
    if ranks.rank == 0:
        write_documents(cfg.out, docs)
    bs = cfg.batch_size
    dtype = next(model.parameters()).dtype

    def compute(b: int):
        part = inputs[b * bs : (b + 1) * bs]
        if vision:
            pv = clip.processor(images=[i.pixels for i in part], return_tensors="pt")["pixel_values"]
            kw = {"pixel_values": pv.to(device, dtype)}
        else:
            enc = clip.tokenizer(list(part), padding=True, truncation=True, return_tensors="pt")
            kw = {
                "input_ids": enc["input_ids"].to(device),
                "attention_mask": enc["attention_mask"].to(device),
            }
        acts = clip_models.clip_activations(model, site, **kw)
        n_tokens = acts.shape[0] // len(part) if vision else kw["input_ids"].shape[1]
        item, pos = clip_models.site_positions(
            site,
            len(part),
            n_tokens,
            model=model,
            input_ids=kw.get("input_ids"),
            attention_mask=kw.get("attention_mask"),
        )
        doc = item + b * bs
        return [(acts, {"doc_id": doc, "position": pos, "token_id": torch.full_like(doc, -1)})]

    desc = f"harvest CLIP {cfg.site}"
    got = drive([sink], math.ceil(len(inputs) / bs), compute, ranks, device, desc=desc, quiet=cfg.quiet)
    if got[0] < cfg.tokens and cfg.tokens != ClipHarvestConfig.tokens and not cfg.quiet and ranks.rank == 0:
        print(f"saekit harvest: the inputs yield {got[0]} rows (< --tokens {cfg.tokens}); storing those")
    return finish([sink], ranks, quiet=cfg.quiet)[0]
