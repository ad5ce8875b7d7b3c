"""`harvest(cfg)`: run a model over a corpus and store the activations at one hook point.

The forward pass stops right after the hooked module (for a mid-depth layer this skips half the
layers and the 49k-vocabulary head). Rows are the kept tokens in corpus order, written shard by
shard; re-running an interrupted harvest resumes from the last complete shard and produces a store
identical to an uninterrupted run, because batches always hold the same contexts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from saekit.errors import SAEConfigError, ShapeError, StoreError


@dataclass(frozen=True)
class HarvestConfig:
    """Flags of `saekit harvest` (also the library entry point's config)."""

    model: str = "smollm2"
    """Model: `smollm2` (embedded), `minilm` (embedded encoder), or a transformers id / local folder."""
    hook: str = "model.layers.15"
    """Hook point `module.path[:in][@stream]`, e.g. `model.layers.15` (output of decoder layer 15)."""
    corpus: str = "default"
    """`shakespeare`, `bible`, `default` (both), a .txt file/folder, a .jsonl (field text), or hf:<dataset>."""
    tokens: int = 200_000
    """Number of activation rows to store (kept tokens, after exclusions)."""
    out: Path = Path("acts")
    """Output folder of the store; an interrupted harvest into it resumes."""
    context_len: int = 128
    """Tokens per context window fed to the model."""
    batch_size: int = 8
    """Contexts per forward pass."""
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

    def __post_init__(self) -> None:
        for name in ("tokens", "context_len", "batch_size", "shard_rows"):
            if getattr(self, name) < 1:
                raise SAEConfigError(f"harvest: --{name.replace('_', '-')} must be >= 1, found {getattr(self, name)}")
        if not 0 <= self.exclude_first < self.context_len:
            raise SAEConfigError(f"harvest: --exclude-first must be in [0, context_len), found {self.exclude_first}")


_NOT_RECORDED = ("out", "quiet", "threads", "overwrite")
"""Config fields that do not affect the store's contents (kept out of the manifest)."""


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
        raise ShapeError(f"hook point {str(hp)!r} gave {list(x.shape)}; harvest needs [batch, tokens, d] = "
                         f"[{ids.shape[0]}, {ids.shape[1]}, d]")
    return x


def harvest(cfg: HarvestConfig, *, loaded=None):
    """Harvest activations as configured; returns the opened ActivationStore.

    `loaded` (a LoadedModel) skips loading `cfg.model` -- for tests and benchmarks.
    """
    from tqdm.auto import tqdm

    import saekit
    from saekit.data.corpus import load_corpus
    from saekit.data.store import ActivationStore
    from saekit.data.store_writer import StoreWriter
    from saekit.data.tokenize import keep_mask, tokenize_corpus
    from saekit.hooks import HookPoint, resolve_module
    from saekit.models import load_model, resolve_dtype

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    lm = loaded if loaded is not None else load_model(cfg.model, dtype=resolve_dtype(cfg.dtype), quiet=cfg.quiet)
    hp = HookPoint.parse(cfg.hook)
    resolve_module(lm.model, hp)
    encoder = lm.kind == "encoder"
    docs = load_corpus(cfg.corpus)
    specials = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    body = max(1, cfg.context_len - cfg.exclude_first - 2)
    budget = math.ceil(cfg.tokens * cfg.context_len / body * 1.05) + 3 * cfg.batch_size * cfg.context_len
    batch = tokenize_corpus(docs, lm.tokenizer, cfg.context_len, max_tokens=budget, prepend_bos=cfg.prepend_bos,
                            encoder=encoder)
    # (outlier rows dropped after the forward pass are made up by the slack in `budget` and the
    # extra contexts below)
    keep = keep_mask(batch, special_ids=specials, exclude_special=cfg.exclude_special, exclude_first=cfg.exclude_first)
    kept_per_ctx = keep.sum(dim=1)
    cum = torch.cumsum(kept_per_ctx, 0)
    target = min(cfg.tokens, int(cum[-1]))
    if target < cfg.tokens and not cfg.quiet:
        print(f"saekit harvest: corpus {cfg.corpus!r} yields only {target} tokens after exclusions; storing those")
    n_ctx = min(len(batch), int(torch.searchsorted(cum, torch.tensor(target))) + 1 + 2 * cfg.batch_size)
    probe = _forward(lm, hp, batch.token_id[:1, :8], batch.mask[:1, :8], True)  # only to learn d
    store_dtype = lm.dtype if cfg.store_dtype == "auto" else cfg.store_dtype
    if store_dtype not in ("float32", "bfloat16"):
        store_dtype = "float32"
    fields = {
        "model": lm.name, "hook_point": str(hp), "stream": hp.stream, "layer": hp.layer, "d": int(probe.shape[-1]),
        "dtype": store_dtype, "model_dtype": lm.dtype, "max_norm_ratio": cfg.max_norm_ratio, "corpus": cfg.corpus,
        "context_len": cfg.context_len, "batch_size": cfg.batch_size, "tokens_requested": cfg.tokens, "prepend_bos": cfg.prepend_bos,
        "exclusions": {"special_tokens": cfg.exclude_special, "first_positions": cfg.exclude_first},
        "position": "index of the token in its document; see tokens.safetensors for the document text",
        "saekit_version": saekit.__version__,
        "harvest_config": {k: str(v) for k, v in asdict(cfg).items() if k not in _NOT_RECORDED},
    }
    writer = StoreWriter(cfg.out, fields, shard_rows=cfg.shard_rows, resume=True, overwrite=cfg.overwrite)
    if writer.complete:
        if not cfg.quiet:
            print(f"saekit harvest: {cfg.out} already holds this complete store ({writer.count} rows); nothing to do")
        return ActivationStore.open(cfg.out)
    n_docs = int(batch.doc_id[:n_ctx].max()) + 1
    writer.write_token_table(batch.doc_tokens[:n_docs])
    # resume: batches always hold the same contexts, so restart at the batch of the next row
    first_batch, skip = writer.resume_cursor if writer.resume_cursor is not None else (0, 0)
    done = writer.count
    n_batches = math.ceil(n_ctx / cfg.batch_size)
    outliers = 0
    with tqdm(total=target, initial=done, unit="tok", unit_scale=True, desc="harvest", disable=cfg.quiet) as bar:
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
            meta = {"doc_id": batch.doc_id[s:e][k], "position": batch.position[s:e][k],
                    "token_id": batch.token_id[s:e][k].to(torch.int32)}
            hi = min(rows.shape[0], skip + target - done)
            if hi > skip:
                writer.add(rows[skip:hi], {n: v[skip:hi] for n, v in meta.items()}, unit=b, offset=skip)
                bar.update(hi - skip)
                done += hi - skip
            skip = 0
    if outliers and not cfg.quiet:
        print(f"saekit harvest: dropped {outliers} outlier rows (norm > {cfg.max_norm_ratio} x batch median)")
    if done < target:
        raise StoreError(f"harvest stored {done} rows of {target}: the corpus ran out after exclusions; "
                         f"ask for fewer --tokens or lower --max-norm-ratio")
    manifest = writer.close()
    if manifest["count"] != target:
        raise StoreError(f"internal: harvest wrote {manifest['count']} rows, expected {target}")
    return ActivationStore.open(cfg.out)
