"""`harvest(cfg)`: run a model over a corpus and store the activations at one hook point.

The forward pass stops right after the hooked module (for a mid-depth layer this skips half the
layers and the 49k-vocabulary head). Rows are the kept tokens in corpus order, written shard by
shard; re-running an interrupted harvest resumes from the last complete shard and produces a store
identical to an uninterrupted run, because batches always hold the same contexts.

Image models go through the same config and store (the drivers `_harvest_clip` and `_harvest_flux`
below): CLIP embeddings at a `--site`, and FLUX activations
sampled on the fly over the denoising loop. They resume the same way: a batch of images / prompts is
one resume unit and is recomputed deterministically (the generation and token-sampling seeds are
derived from the batch index, not from a running generator).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from saekit.errors import SAEConfigError, ShapeError, StoreError


@dataclass(frozen=True)
class HarvestConfig:
    """Flags of `saekit harvest` (also the library entry point's config)."""

    model: str = "smollm2"
    """Model: `smollm2` (embedded), `minilm` (embedded encoder), a transformers id / local folder, a CLIP
    (`clip` in the name or a CLIP config.json) or a diffusers FLUX pipeline (folder with model_index.json)."""
    hook: str = "model.layers.15"
    """Hook point `module.path[:in][@stream]`, e.g. `model.layers.15` (output of decoder layer 15); for FLUX
    `transformer_blocks.N@image|text`, `single_transformer_blocks.N@image`, `....attn@image` (CLIP: use --site)."""
    corpus: str = "default"
    """`shakespeare`, `bible`, `default` (both), a .txt file/folder, a .jsonl (field text), or hf:<dataset>."""
    tokens: int = 200_000
    """Number of activation rows to store (kept tokens, after exclusions); for image models a cap."""
    out: Path = Path("acts")
    """Output folder of the store; an interrupted harvest into it resumes."""
    context_len: int = 128
    """Tokens per context window fed to the model."""
    batch_size: int = 8
    """Contexts per forward pass (images / captions / prompts per batch for image models)."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Model dtype; auto = bfloat16 where the CPU has native bf16 (AVX-512 BF16 / AMX, ~4x faster),
    else float32 (on AVX2-only CPUs bf16 is emulated and ~3x slower than float32)."""
    store_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Storage dtype of activations; auto = the model dtype (lossless)."""
    shard_rows: int = 32768
    """Rows per shard file."""
    exclude_special: bool = True
    """Drop special tokens (BOS/EOS/pad, [CLS]/[SEP]) from the store."""
    exclude_first: int = 1
    """Drop the first N positions of every context (position 0 is an attention sink with outlier norm)."""
    prepend_bos: bool = False
    """Prepend the tokenizer's BOS to every context (SmolLM2's tokenizer does not add it)."""
    max_norm_ratio: float = 50.0
    """Drop rows whose norm exceeds this multiple of the batch's median norm (attention sinks that are
    not at position 0, e.g. a context's first newline on SmolLM2); 0 disables."""
    stop_early: bool = True
    """Abort each forward pass after the hooked module."""
    overwrite: bool = False
    """Replace an existing, different or complete store in --out instead of refusing/reusing it."""
    threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    quiet: bool = False
    """No progress bar or messages."""
    # -- CLIP (model is a CLIP folder / name) ---------------------------------------------------
    images: str | None = None
    """CLIP vision tower: `skimage` (scikit-image's bundled samples), a folder of images, or one image."""
    captions: Path | None = None
    """CLIP text tower: a .jsonl (field caption or text) or .csv (column caption or text) of captions."""
    site: str | None = None
    """CLIP site `TOWER:LAYER:TOKEN`; default `vision:-2:cls` (the seed recipe, `hidden_states[-2][:, 0]`).
    TOWER vision|text; LAYER an index into hidden_states (0 = embeddings, -1 = last); TOKEN cls, eos (text
    end token), mean, all (every token), or a position. `vision:pooled` / `text:pooled` = pooler_output."""
    # -- FLUX / diffusers pipelines (model is a folder with model_index.json, or a flux name) ------
    prompts: Path | None = None
    """FLUX: a text file with one prompt per line."""
    prompt: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """FLUX: a prompt (repeat the flag for several)."""
    prompt_embeds: Path | None = None
    """FLUX without text encoders: a .safetensors with `prompt_embeds [N, T, d]` and `pooled_prompt_embeds [N, d]`."""
    steps: str | None = None
    """FLUX: window of denoising steps `A-B` (inclusive, 0 = first step) or `all` (default)."""
    tokens_per_step: int = 256
    """FLUX: random image/text tokens kept per image per step (the seed recipe's 256); 0 keeps all."""
    num_inference_steps: int = 4
    """FLUX: denoising steps per image (4 suits FLUX.1-schnell)."""
    height: int = 512
    """FLUX: image height in pixels."""
    width: int = 512
    """FLUX: image width in pixels."""
    guidance_scale: float = 3.5
    """FLUX: distilled guidance scale (ignored by models without guidance embeddings, e.g. schnell)."""
    seed: int = 0
    """FLUX: seed of batch b's generation and token sampling is seed + b (so a resumed run is identical)."""

    def __post_init__(self) -> None:
        for name in ("tokens", "context_len", "batch_size", "shard_rows"):
            if getattr(self, name) < 1:
                raise SAEConfigError(
                    f"harvest: --{name.replace('_', '-')} must be >= 1, found {getattr(self, name)}"
                )
        if not 0 <= self.exclude_first < self.context_len:
            raise SAEConfigError(
                f"harvest: --exclude-first must be in [0, context_len), found {self.exclude_first}"
            )
        if self.tokens_per_step < 0 or self.num_inference_steps < 1 or self.height < 1 or self.width < 1:
            raise SAEConfigError(
                "harvest: --tokens-per-step must be >= 0 and --num-inference-steps, --height, --width >= 1"
            )

    def check_for(self, kind: str) -> None:
        """Refuse flags that do not apply to this model kind ("lm", "clip", "diffusers") when they were
        changed from their defaults, rather than ignoring them silently."""
        defaults = HarvestConfig()
        wrong = [
            f
            for f in _KIND_FIELDS
            if kind not in _KIND_FIELDS[f] and getattr(self, f) != getattr(defaults, f)
        ]
        if wrong:
            flags = ", ".join("--" + f.replace("_", "-") for f in wrong)
            raise SAEConfigError(
                f"harvest: {flags} do(es) not apply to {self.model!r} (a {_KIND_NAMES[kind]}); "
                f"{_KIND_HINTS[kind]}"
            )
        if kind == "diffusers" and self.hook == defaults.hook:
            raise SAEConfigError(
                "harvest: give --hook for a diffusers pipeline, e.g. transformer_blocks.0@image or "
                "single_transformer_blocks.37@image"
            )
        if kind == "diffusers" and sum(map(bool, (self.prompts, self.prompt, self.prompt_embeds))) != 1:
            raise SAEConfigError(
                "harvest: a diffusers pipeline needs exactly one of --prompts FILE, --prompt TEXT "
                "(repeatable) or --prompt-embeds FILE.safetensors"
            )


_LM, _CLIP, _DIFF = "lm", "clip", "diffusers"
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "hook": (_LM, _DIFF),
    "corpus": (_LM,),
    "context_len": (_LM,),
    "exclude_special": (_LM,),
    "exclude_first": (_LM,),
    "prepend_bos": (_LM,),
    "max_norm_ratio": (_LM,),
    "stop_early": (_LM,),
    "images": (_CLIP,),
    "captions": (_CLIP,),
    "site": (_CLIP,),
    "prompts": (_DIFF,),
    "prompt": (_DIFF,),
    "prompt_embeds": (_DIFF,),
    "steps": (_DIFF,),
    "tokens_per_step": (_DIFF,),
    "num_inference_steps": (_DIFF,),
    "height": (_DIFF,),
    "width": (_DIFF,),
    "guidance_scale": (_DIFF,),
    "seed": (_DIFF,),
}
"""Flags that apply only to some model kinds (the rest apply to all)."""
_KIND_NAMES = {_LM: "language model / encoder", _CLIP: "CLIP model", _DIFF: "diffusers pipeline"}
_KIND_HINTS = {
    _LM: "image flags are for CLIP (--images/--captions/--site) and FLUX (--prompts, --steps, ...) models",
    _CLIP: "CLIP uses --images or --captions and --site (e.g. vision:-2:cls) instead of --hook/--corpus",
    _DIFF: "FLUX uses --hook, --prompts/--prompt/--prompt-embeds and the step/size flags",
}


_NOT_RECORDED = ("out", "quiet", "threads", "overwrite")
"""Config fields that do not affect the store's contents (kept out of the manifest)."""


def recorded_config(cfg: HarvestConfig, kind: str) -> dict[str, str]:
    """The config fields that shaped a store of this model kind, as strings, for its manifest."""
    return {
        k: str(v)
        for k, v in asdict(cfg).items()
        if k not in _NOT_RECORDED and kind in _KIND_FIELDS.get(k, (kind,))
    }


def _forward(lm, hp, ids: torch.Tensor, mask: torch.Tensor, stop_early: bool) -> torch.Tensor:
    from saekit.hooks import capture

    kwargs = {"input_ids": ids}
    if lm.kind == "encoder":
        kwargs["attention_mask"] = mask.long()
    else:
        kwargs["use_cache"] = False  # causal + right padding: real tokens never see the padding
    with torch.inference_mode(), capture(lm.model, hp, stop_after_last=stop_early) as cap:
        lm.model(**kwargs)
    x = cap.activations[str(hp)]
    if x.ndim != 3 or x.shape[:2] != ids.shape:
        raise ShapeError(
            f"hook point {str(hp)!r} gave {list(x.shape)}; harvest needs [batch, tokens, d] = "
            f"[{ids.shape[0]}, {ids.shape[1]}, d]"
        )
    return x


def _kind_of_loaded(loaded) -> str:
    from saekit.models.clip import LoadedClip

    if isinstance(loaded, LoadedClip):
        return _CLIP
    return _DIFF if hasattr(loaded, "transformer") else _LM


def harvest(cfg: HarvestConfig, *, loaded=None):
    """Harvest activations as configured; returns the opened ActivationStore.

    `loaded` (a LoadedModel, LoadedClip or diffusers pipeline) skips loading `cfg.model` -- for
    tests and benchmarks. The model kind (LM, CLIP, diffusers) picks the driver.
    """
    from saekit.models.load import model_kind

    kind = _kind_of_loaded(loaded) if loaded is not None else model_kind(cfg.model)
    cfg.check_for(kind)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    driver = {_CLIP: _harvest_clip, _DIFF: _harvest_flux, _LM: _harvest_lm}[kind]
    return driver(cfg, loaded=loaded)


def _harvest_lm(cfg: HarvestConfig, *, loaded=None):
    """The language-model / encoder driver (see the module docstring)."""
    from tqdm.auto import tqdm

    import saekit
    from saekit.data.corpus import load_corpus
    from saekit.data.store import ActivationStore
    from saekit.data.store_writer import StoreWriter
    from saekit.data.tokenize import keep_mask, tokenize_corpus
    from saekit.hooks import HookPoint, resolve_module
    from saekit.models import load_model, resolve_dtype

    lm = (
        loaded
        if loaded is not None
        else load_model(cfg.model, dtype=resolve_dtype(cfg.dtype), quiet=cfg.quiet)
    )
    hp = HookPoint.parse(cfg.hook)
    resolve_module(lm.model, hp)
    encoder = lm.kind == "encoder"
    docs = load_corpus(cfg.corpus)
    specials = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    body = max(1, cfg.context_len - cfg.exclude_first - 2)
    budget = math.ceil(cfg.tokens * cfg.context_len / body * 1.05) + 3 * cfg.batch_size * cfg.context_len
    batch = tokenize_corpus(
        docs, lm.tokenizer, cfg.context_len, max_tokens=budget, prepend_bos=cfg.prepend_bos, encoder=encoder
    )
    # (outlier rows dropped after the forward pass are made up by the slack in `budget` and the
    # extra contexts below)
    keep = keep_mask(
        batch, special_ids=specials, exclude_special=cfg.exclude_special, exclude_first=cfg.exclude_first
    )
    kept_per_ctx = keep.sum(dim=1)
    cum = torch.cumsum(kept_per_ctx, 0)
    target = min(cfg.tokens, int(cum[-1]))
    if target < cfg.tokens and not cfg.quiet:
        print(
            f"saekit harvest: corpus {cfg.corpus!r} yields only {target} tokens after exclusions; storing those"
        )
    n_ctx = min(len(batch), int(torch.searchsorted(cum, torch.tensor(target))) + 1 + 2 * cfg.batch_size)
    probe = _forward(lm, hp, batch.token_id[:1, :8], batch.mask[:1, :8], True)  # only to learn d
    store_dtype = lm.dtype if cfg.store_dtype == "auto" else cfg.store_dtype
    if store_dtype not in ("float32", "bfloat16"):
        store_dtype = "float32"
    fields = {
        "model": lm.name,
        "hook_point": str(hp),
        "stream": hp.stream,
        "layer": hp.layer,
        "d": int(probe.shape[-1]),
        "dtype": store_dtype,
        "model_dtype": lm.dtype,
        "max_norm_ratio": cfg.max_norm_ratio,
        "corpus": cfg.corpus,
        "context_len": cfg.context_len,
        "batch_size": cfg.batch_size,
        "tokens_requested": cfg.tokens,
        "prepend_bos": cfg.prepend_bos,
        "exclusions": {"special_tokens": cfg.exclude_special, "first_positions": cfg.exclude_first},
        "position": "index of the token in its document; see tokens.safetensors for the document text",
        "saekit_version": saekit.__version__,
        "harvest_config": recorded_config(cfg, _LM),
    }
    writer = StoreWriter(cfg.out, fields, shard_rows=cfg.shard_rows, resume=True, overwrite=cfg.overwrite)
    if writer.complete:
        if not cfg.quiet:
            print(
                f"saekit harvest: {cfg.out} already holds this complete store ({writer.count} rows); nothing to do"
            )
        return ActivationStore.open(cfg.out)
    n_docs = int(batch.doc_id[:n_ctx].max()) + 1
    writer.write_token_table(batch.doc_tokens[:n_docs])
    # resume: batches always hold the same contexts, so restart at the batch of the next row
    first_batch, skip = writer.resume_cursor if writer.resume_cursor is not None else (0, 0)
    done = writer.count
    n_batches = math.ceil(n_ctx / cfg.batch_size)
    outliers = 0
    with tqdm(
        total=target, initial=done, unit="tok", unit_scale=True, desc="harvest", disable=cfg.quiet
    ) as bar:
        for b in range(first_batch, n_batches):
            if done >= target:
                break
            s, e = b * cfg.batch_size, min((b + 1) * cfg.batch_size, n_ctx)
            x = _forward(lm, hp, batch.token_id[s:e], batch.mask[s:e], cfg.stop_early)
            k = keep[s:e].clone()
            if cfg.max_norm_ratio > 0 and k.any():
                norms = x.float().norm(dim=-1)
                outlier = k & (norms > cfg.max_norm_ratio * norms[k].median())
                outliers += int(outlier.sum())
                k &= ~outlier
            rows = x[k]
            meta = {
                "doc_id": batch.doc_id[s:e][k],
                "position": batch.position[s:e][k],
                "token_id": batch.token_id[s:e][k].to(torch.int32),
            }
            hi = min(rows.shape[0], skip + target - done)
            if hi > skip:
                writer.add(rows[skip:hi], {n: v[skip:hi] for n, v in meta.items()}, unit=b, offset=skip)
                bar.update(hi - skip)
                done += hi - skip
            skip = 0
    if outliers and not cfg.quiet:
        print(f"saekit harvest: dropped {outliers} outlier rows (norm > {cfg.max_norm_ratio} x batch median)")
    if done < target:
        raise StoreError(
            f"harvest stored {done} rows of {target}: the corpus ran out after exclusions; "
            f"ask for fewer --tokens or lower --max-norm-ratio"
        )
    manifest = writer.close()
    if manifest["count"] != target:
        raise StoreError(f"internal: harvest wrote {manifest['count']} rows, expected {target}")
    return ActivationStore.open(cfg.out)


# -- image models ------------------------------------------------------------------------------------


def parse_clip_site(spec: str | None):
    """`TOWER:LAYER:TOKEN` -> ClipSite. `vision:-2:cls` (default, the seed recipe), `text:-1:eos`,
    `vision:5:all`, `text:-2:mean`, `vision:-2:3` (position 3), `vision:pooled`; `text:-2` means EOS."""
    from saekit.errors import HookPointError
    from saekit.models.clip import SEED_SITE, ClipSite

    if spec is None or not spec.strip():
        return SEED_SITE
    parts = [p.strip() for p in spec.strip().split(":")]
    if len(parts) == 2 and parts[1] == "pooled":
        return ClipSite(parts[0], -1, "pooled")  # type: ignore[arg-type]
    if len(parts) not in (2, 3):
        raise HookPointError(
            f"CLIP site {spec!r}: expected TOWER:LAYER:TOKEN, e.g. vision:-2:cls, text:-1:eos or vision:pooled"
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


class _Rows:
    """A StoreWriter stand-in that keeps the rows of one batch, so the driver can write them with
    resume bookkeeping (`unit` = batch index, `offset` = rows of it already stored)."""

    def __init__(self) -> None:
        self.acts: list[torch.Tensor] = []
        self.meta: list[dict[str, torch.Tensor]] = []

    def add(
        self, acts: torch.Tensor, meta: dict[str, torch.Tensor], *, unit: int = 0, offset: int = 0
    ) -> None:
        self.acts.append(acts)
        self.meta.append(meta)

    def take(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.acts:
            raise ShapeError(
                "internal: the batch produced no activation rows (is the step window inside the run?)"
            )
        return torch.cat(self.acts), {k: torch.cat([m[k] for m in self.meta]) for k in self.meta[0]}


def _open_image_writer(cfg: HarvestConfig, fields: dict):
    """A resumable StoreWriter, refusing to resume a store harvested with different image flags."""
    from saekit.data.manifest import MANIFEST, read_manifest
    from saekit.data.store_writer import StoreWriter

    if (cfg.out / MANIFEST).exists() and not cfg.overwrite:
        old = read_manifest(cfg.out).get("harvest_config")
        if old is not None and old != fields["harvest_config"]:
            diff = {k: (old.get(k), v) for k, v in fields["harvest_config"].items() if old.get(k) != v}
            raise StoreError(
                f"{cfg.out} holds a store harvested with other flags (found in folder, requested): {diff}; "
                "use another --out folder or --overwrite"
            )
    return StoreWriter(cfg.out, fields, shard_rows=cfg.shard_rows, resume=True, overwrite=cfg.overwrite)


def _drive(cfg: HarvestConfig, writer, n_batches: int, compute, desc: str):
    """Write batch after batch (`compute(b) -> (acts, meta)`) up to `cfg.tokens` rows, resuming at
    the writer's cursor; returns the opened store."""
    from tqdm.auto import tqdm

    from saekit.data.store import ActivationStore

    if writer.complete:
        if not cfg.quiet:
            print(
                f"saekit harvest: {cfg.out} already holds this complete store ({writer.count} rows); nothing to do"
            )
        return ActivationStore.open(cfg.out)
    first_batch, skip = writer.resume_cursor if writer.resume_cursor is not None else (0, 0)
    done = writer.count
    with tqdm(total=n_batches, initial=first_batch, unit="batch", desc=desc, disable=cfg.quiet) as bar:
        for b in range(first_batch, n_batches):
            if done >= cfg.tokens:
                break
            acts, meta = compute(b)
            hi = min(acts.shape[0], skip + cfg.tokens - done)
            if hi > skip:
                writer.add(acts[skip:hi], {k: v[skip:hi] for k, v in meta.items()}, unit=b, offset=skip)
                done += hi - skip
            skip = 0
            bar.update(1)
    if done < cfg.tokens and cfg.tokens != HarvestConfig.tokens and not cfg.quiet:
        print(f"saekit harvest: the inputs yield {done} rows (< --tokens {cfg.tokens}); storing those")
    writer.close()
    return ActivationStore.open(cfg.out)


def _store_dtype(cfg: HarvestConfig, model_dtype: str) -> str:
    out = model_dtype if cfg.store_dtype == "auto" else cfg.store_dtype
    return out if out in ("float32", "bfloat16") else "float32"


def _harvest_clip(cfg: HarvestConfig, *, loaded=None):
    """CLIP driver: one row per image/caption (or per token for TOKEN=all) at `cfg.site`."""
    import saekit
    from saekit.data.images import load_captions, load_images
    from saekit.models import load_model, resolve_dtype
    from saekit.models.clip import harvest_clip, hidden_state_hook, tower_module
    from saekit.models.loaded import dtype_name

    site = parse_clip_site(cfg.site)
    vision = site.tower == "vision"
    if vision and (cfg.images is None or cfg.captions is not None):
        raise SAEConfigError(
            f"harvest: site {site.tower}:{site.layer}:{site.token} reads the vision tower: give --images "
            "(skimage or a folder) and no --captions"
        )
    if not vision and (cfg.captions is None or cfg.images is not None):
        raise SAEConfigError("harvest: a text-tower site needs --captions FILE.jsonl|csv (and no --images)")
    clip = (
        loaded
        if loaded is not None
        else load_model(cfg.model, dtype=resolve_dtype(cfg.dtype), quiet=cfg.quiet)
    )
    model = clip.model
    tower, _ = tower_module(model, site.tower)
    hp = "pooler_output" if site.token == "pooled" else hidden_state_hook(model, site)
    inputs = load_images(cfg.images, limit=cfg.tokens) if vision else load_captions(cfg.captions)
    if vision and clip.processor is None:
        raise SAEConfigError(
            f"harvest: {cfg.model!r} has no image processor (preprocessor_config.json); save one beside the model"
        )
    if not vision and clip.tokenizer is None:
        raise SAEConfigError(
            f"harvest: {cfg.model!r} has no tokenizer; the text tower needs the CLIP tokenizer files"
        )
    model_dtype = dtype_name(next(model.parameters()).dtype)
    site_text = f"{site.tower}:{site.layer}:{site.token}"
    fields = {
        "model": clip.name,
        "hook_point": hp,
        "stream": None,
        "layer": site.layer,
        "site": site_text,
        "d": int(tower.config.hidden_size),
        "dtype": _store_dtype(cfg, model_dtype),
        "model_dtype": model_dtype,
        "corpus": str(cfg.images if vision else cfg.captions),
        "batch_size": cfg.batch_size,
        "tokens_requested": cfg.tokens,
        "position": "token position in the image/caption (-1 = a summary row: cls/eos/mean/pooled); doc_id = image/caption index",
        "saekit_version": saekit.__version__,
        "harvest_config": recorded_config(cfg, _CLIP),
    }
    writer = _open_image_writer(cfg, fields)
    bs = cfg.batch_size

    def compute(b: int):
        rows = _Rows()
        part = inputs[b * bs : (b + 1) * bs]
        if vision:
            harvest_clip(
                model, site, rows, images=part, processor=clip.processor, batch_size=len(part), quiet=True
            )
        else:
            harvest_clip(
                model,
                site,
                rows,
                captions=list(part),
                tokenizer=clip.tokenizer,
                batch_size=len(part),
                quiet=True,
            )
        acts, meta = rows.take()
        if not vision:  # image rows carry the ImageItem id already; caption ids restart at 0 per call
            meta["doc_id"] = meta["doc_id"] + b * bs
        return acts, meta

    return _drive(cfg, writer, math.ceil(len(inputs) / bs), compute, f"harvest CLIP {site_text}")


def _flux_inputs(cfg: HarvestConfig) -> tuple[list[dict], int | None, str]:
    """Per-image conditioning kwargs (prompt or embeddings), the text length if known, and a description."""
    from saekit.errors import CorpusError

    if cfg.prompt_embeds is not None:
        from safetensors.torch import load_file

        try:
            t = load_file(str(cfg.prompt_embeds))
        except Exception as exc:
            raise CorpusError(
                f"cannot read --prompt-embeds {cfg.prompt_embeds}: {exc}; give a .safetensors file"
            ) from exc
        if "prompt_embeds" not in t or "pooled_prompt_embeds" not in t:
            raise CorpusError(
                f"{cfg.prompt_embeds} must hold prompt_embeds [N, T, d] and pooled_prompt_embeds [N, d]; "
                f"found {sorted(t)}"
            )
        pe, pooled = t["prompt_embeds"], t["pooled_prompt_embeds"]
        if pe.ndim != 3 or pooled.ndim != 2 or pe.shape[0] != pooled.shape[0]:
            raise ShapeError(
                f"{cfg.prompt_embeds}: prompt_embeds {list(pe.shape)} / pooled_prompt_embeds "
                f"{list(pooled.shape)} must be [N, T, d] / [N, d] with the same N"
            )
        items = [
            {"prompt_embeds": pe[i : i + 1], "pooled_prompt_embeds": pooled[i : i + 1]}
            for i in range(pe.shape[0])
        ]
        return items, int(pe.shape[1]), f"embeds:{cfg.prompt_embeds}"
    if cfg.prompts is not None:
        if not cfg.prompts.is_file():
            raise CorpusError(
                f"--prompts {cfg.prompts} does not exist; give a text file with one prompt per line"
            )
        lines = [ln.strip() for ln in cfg.prompts.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not lines:
            raise CorpusError(f"--prompts {cfg.prompts} holds no prompts")
        source = str(cfg.prompts)
    else:
        lines, source = list(cfg.prompt), "prompt:" + "|".join(cfg.prompt)
    return [{"prompt": p} for p in lines], 512, source  # FluxPipeline pads T5 text to max_sequence_length=512


def _merge_inputs(items: list[dict]) -> dict:
    if "prompt" in items[0]:
        return {"prompt": [i["prompt"] for i in items]}
    return {k: torch.cat([i[k] for i in items]) for k in items[0]}


def _step_window(spec: str | None, n_steps: int) -> tuple[int, int] | None:
    from saekit.steer.diffusion import parse_steps

    steps = parse_steps(spec, n_steps)
    if steps is None:
        return None
    lo, hi = min(steps), max(steps)
    if steps != set(range(lo, hi + 1)) or hi >= n_steps:
        raise SAEConfigError(
            f"harvest: --steps {spec!r} must be one window A-B inside 0..{n_steps - 1} "
            f"(--num-inference-steps {n_steps})"
        )
    return lo, hi + 1


def _harvest_flux(cfg: HarvestConfig, *, loaded=None):
    """FLUX driver: run generation per batch of prompts and keep `tokens_per_step` random tokens of
    `cfg.hook` per image per step in the window, with the timestep per row."""
    import saekit
    from saekit.data.diffusion_harvest import DiffusionHarvestConfig, DiffusionHarvester
    from saekit.hooks import HookPoint
    from saekit.models import load_model, resolve_dtype
    from saekit.models.loaded import dtype_name

    if cfg.height % 16 or cfg.width % 16:
        raise SAEConfigError(
            f"harvest: FLUX needs --height/--width divisible by 16, found {cfg.height}x{cfg.width}"
        )
    window = _step_window(cfg.steps, cfg.num_inference_steps)
    items, text_len, source = _flux_inputs(cfg)
    pipe = (
        loaded
        if loaded is not None
        else load_model(cfg.model, dtype=resolve_dtype(cfg.dtype), quiet=cfg.quiet)
    )
    if "prompt" in items[0] and getattr(pipe, "text_encoder", None) is None:
        raise SAEConfigError(
            f"harvest: {cfg.model!r} has no text encoders, so it cannot read --prompt/--prompts; "
            "pass --prompt-embeds FILE.safetensors instead"
        )
    pipe.set_progress_bar_config(disable=True)  # one bar (ours) per batch of prompts
    hp = HookPoint.parse(cfg.hook)
    tr = pipe.transformer
    model_dtype = dtype_name(tr.dtype)
    fields = {
        "model": cfg.model,
        "hook_point": str(hp),
        "stream": hp.stream,
        "layer": hp.layer,
        "d": int(tr.inner_dim),
        "dtype": _store_dtype(cfg, model_dtype),
        "model_dtype": model_dtype,
        "corpus": source,
        "batch_size": cfg.batch_size,
        "tokens_requested": cfg.tokens,
        "steps": list(window) if window else None,
        "tokens_per_step": cfg.tokens_per_step,
        "num_inference_steps": cfg.num_inference_steps,
        "position": "token index in the stream at that step; timestep per row; doc_id = image index",
        "saekit_version": saekit.__version__,
        "harvest_config": recorded_config(cfg, _DIFF),
    }
    writer = _open_image_writer(cfg, fields)
    bs = cfg.batch_size

    def compute(b: int):
        rows = _Rows()
        part = items[b * bs : (b + 1) * bs]
        h = DiffusionHarvester(
            DiffusionHarvestConfig(
                hook_point=str(hp),
                steps=window,
                tokens_per_step=cfg.tokens_per_step,
                seed=cfg.seed + b,
                text_len=text_len,
            ),
            rows,
        )
        h.image_offset = b * bs
        kwargs = dict(
            _merge_inputs(part),
            num_inference_steps=cfg.num_inference_steps,
            height=cfg.height,
            width=cfg.width,
            guidance_scale=cfg.guidance_scale,
            output_type="latent",
            generator=torch.Generator().manual_seed(cfg.seed + b),
        )
        with torch.inference_mode(), h.active(tr):
            pipe(**kwargs)
        return rows.take()

    return _drive(cfg, writer, math.ceil(len(items) / bs), compute, f"harvest {hp}")
