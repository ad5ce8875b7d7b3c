"""The language-model / encoder driver: a corpus cut into contexts, one or many hook points per pass.

Rows are the kept tokens in corpus order (special tokens, the first positions of every context and
norm outliers dropped), written shard by shard. Batches always hold the same contexts, so an
interrupted harvest resumes to a byte-identical store, and several hook points (`--hook-point a,b,c`) share
one forward pass that stops after the deepest of them; each gets its own store in OUT/<hook point>/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from saekit.data.harvest.common import StoreOptions, build_manifest, hook_folder, split_hooks
from saekit.errors import SAEConfigError, StoreError


@dataclass(frozen=True)
class LMHarvestConfig(StoreOptions):
    """`saekit harvest lm`: a language model (or text encoder) over a text corpus."""

    model: str = "smollm2"
    """`smollm2` (embedded), `minilm` (embedded encoder), a transformers id or a local folder."""
    hook_point: str = "model.layers.15"
    """Hook point(s) `module.path[:in][@stream]`, e.g. `model.layers.15`; several, comma-separated
    (`model.layers.5,model.layers.10`), share one forward pass and get one store each."""
    corpus: str = "default"
    """`shakespeare`, `bible`, `default` (both), a .txt file/folder, a .jsonl (field text), or "
    "hf:<dataset>."""
    context_len: int = 128
    """Tokens per context window fed to the model."""
    exclude_special: bool = True
    """Drop special tokens (BOS/EOS/pad, [CLS]/[SEP]) from the store."""
    exclude_first: int = 1
    """Drop the first N positions of every context (position 0 is an attention sink with outlier norm)."""
    prepend_bos: bool = False
    """Prepend the tokenizer's BOS to every context (SmolLM2's tokenizer does not add it)."""
    max_norm_ratio: float = 50.0
    """Drop rows whose norm exceeds this multiple of the batch's median norm (attention sinks that are
    not at position 0); 0 disables."""
    stop_early: bool = True
    """Abort each forward pass after the (deepest) hooked module."""
    paired: bool = False
    """Record each hooked module's input *and* output in one pass into a paired store (`acts` = input,
    `target` = output, side by side in every shard): what `saekit train --target out` trains a transcoder
    on. Give the module (`--hook-point model.layers.8.mlp --paired`); a row dropped as a norm outlier on
    either side is dropped from both."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.context_len < 1:
            raise SAEConfigError(f"harvest: --context-len must be >= 1, found {self.context_len}")
        if not 0 <= self.exclude_first < self.context_len:
            raise SAEConfigError(
                f"harvest: --exclude-first must be in [0, context_len), found {self.exclude_first}"
            )


def _contexts(cfg: LMHarvestConfig, lm):
    """Tokenised contexts, the keep mask, how many rows to store and how many contexts to run."""
    from saekit.data.corpus import load_corpus
    from saekit.data.tokenize import keep_mask, tokenize_corpus

    specials = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    body = max(1, cfg.context_len - cfg.exclude_first - 2)
    # slack for outlier rows dropped after the forward pass
    budget = math.ceil(cfg.tokens * cfg.context_len / body * 1.05) + 3 * cfg.batch_size * cfg.context_len
    batch = tokenize_corpus(
        load_corpus(cfg.corpus),
        lm.tokenizer,
        cfg.context_len,
        max_tokens=budget,
        prepend_bos=cfg.prepend_bos,
        encoder=lm.kind == "encoder",
    )
    keep = keep_mask(
        batch, special_ids=specials, exclude_special=cfg.exclude_special, exclude_first=cfg.exclude_first
    )
    cum = torch.cumsum(keep.sum(dim=1), 0)
    target = min(cfg.tokens, int(cum[-1]))
    if target < cfg.tokens and not cfg.quiet:
        print(
            f"saekit harvest: corpus {cfg.corpus!r} yields only {target} tokens after exclusions; "
            "storing those"
        )
    n_ctx = min(len(batch), int(torch.searchsorted(cum, torch.tensor(target))) + 1 + 2 * cfg.batch_size)
    return batch, keep, target, n_ctx


def _fields(cfg: LMHarvestConfig, lm, hp, d: int, target=None) -> dict:
    """The manifest fields of one store; `target = (output hook point, d_out)` for a paired store."""
    extra = {}
    if target is not None:
        extra = {"paired": True, "target_hook_point": str(target[0]), "d_out": int(target[1])}
    fields = build_manifest(
        cfg,
        model=lm.name,
        hook_point=str(hp),
        stream=hp.stream,
        layer=hp.layer,
        d=d,
        model_dtype=lm.dtype,
        corpus=cfg.corpus,
        position="index of the token in its document; see tokens.safetensors for the document text",
        max_norm_ratio=cfg.max_norm_ratio,
        context_len=cfg.context_len,
        prepend_bos=cfg.prepend_bos,
        exclusions={"special_tokens": cfg.exclude_special, "first_positions": cfg.exclude_first},
        **extra,
    )
    fields["harvest_config"]["hook"] = str(hp)  # each store records its own hook point
    return fields


def _load(cfg: LMHarvestConfig, loaded, device: torch.device):
    from saekit.models import load_model, resolve_dtype

    lm = (
        loaded
        if loaded is not None
        else load_model(cfg.model, dtype=resolve_dtype(cfg.dtype, device), quiet=cfg.quiet)
    )
    if next(lm.model.parameters()).device != device:
        lm.model.to(device)
    return lm


def harvest_lm(cfg: LMHarvestConfig, *, loaded=None) -> list:
    """Harvest every hook point of `cfg.hook_point`; returns one opened ActivationStore per hook point.

    `loaded` (a LoadedModel) skips loading `cfg.model` -- for tests and benchmarks.
    """
    from saekit.data.harvest.drive import drive, open_sink
    from saekit.data.harvest.finish import finish
    from saekit.data.harvest.ranks import current_ranks
    from saekit.hooks import HookPoint, resolve_module
    from saekit.models.activations import lm_activations, norm_outliers

    ranks = current_ranks()
    device = ranks.device(cfg.device)
    lm = _load(cfg, loaded, device)
    specs = [HookPoint.parse(h) for h in split_hooks(cfg.hook_point)]
    # each store reads (source, target): the module's input and output when paired, else (hook, None)
    pairs = [hp.module_pair() if cfg.paired else (hp, None) for hp in specs]
    hps = list(dict.fromkeys(h for pair in pairs for h in pair if h is not None))
    for hp in hps:
        resolve_module(lm.model, hp)
    batch, keep, target, n_ctx = _contexts(cfg, lm)
    probe = lm_activations(lm, hps, batch.token_id[:1, :8].to(device), batch.mask[:1, :8].to(device))
    sinks = []
    for spec, (hp, out_hp) in zip(specs, pairs):
        folder = hook_folder(cfg.out, str(spec), len(specs))
        out_d = None if out_hp is None else (out_hp, probe[str(out_hp)].shape[-1])
        fields = _fields(cfg, lm, hp, probe[str(hp)].shape[-1], out_d)
        sinks.append(open_sink(folder, fields, target, cfg, ranks))
        if ranks.rank == 0 and not sinks[-1].writer.complete:
            n_docs = int(batch.doc_id[:n_ctx].max()) + 1
            sinks[-1].writer.write_token_table(batch.doc_tokens[:n_docs], folder)
    outliers = [0]

    def compute(b: int):
        s, e = b * cfg.batch_size, min((b + 1) * cfg.batch_size, n_ctx)
        acts = lm_activations(
            lm, hps, batch.token_id[s:e].to(device), batch.mask[s:e].to(device), stop_early=cfg.stop_early
        )
        out = []
        for hp, out_hp in pairs:
            x = acts[str(hp)]
            k = keep[s:e].to(device)
            drop = norm_outliers(x, k, cfg.max_norm_ratio)
            if out_hp is not None:  # a pair keeps a row only where both sides are inliers
                drop |= norm_outliers(acts[str(out_hp)], k, cfg.max_norm_ratio)
            outliers[0] += int(drop.sum())
            k_host = (k & ~drop).cpu()
            meta = {
                "doc_id": batch.doc_id[s:e][k_host],
                "position": batch.position[s:e][k_host],
                "token_id": batch.token_id[s:e][k_host].to(torch.int32),
            }
            if out_hp is not None:  # rides with the row metadata through the drive loop (StoreWriter)
                meta["target"] = acts[str(out_hp)][k_host.to(device)]
            out.append((x[k_host.to(device)], meta))
        return out

    got = drive(
        sinks, math.ceil(n_ctx / cfg.batch_size), compute, ranks, device, desc="harvest", quiet=cfg.quiet
    )
    if outliers[0] and not cfg.quiet:
        print(
            f"saekit harvest: dropped {outliers[0]} outlier rows (norm > {cfg.max_norm_ratio} x batch median)"
        )
    if min(got) < target:
        raise StoreError(
            f"harvest stored {min(got)} rows of {target}: the corpus ran out after exclusions; "
            "ask for fewer --tokens or lower --max-norm-ratio"
        )
    return finish(sinks, ranks, quiet=cfg.quiet)
