"""`saekit eval`: held-out reconstruction metrics plus spliced-in CE / KL, as a JSON report and a PNG.

A transcoder is evaluated on what it predicts: FVU etc. of its prediction of the module's output from the
module's input, and CE / KL with that prediction spliced in place of the module's output.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from saekit.errors import SaekitError


@dataclass(frozen=True)
class EvalConfig:
    """Flags of `saekit eval`."""

    sae: str
    """SAE to evaluate: a saekit folder or any format `saekit.load` reads (SAELens, sparsify, ...)."""
    model: str | None = None
    """Model to splice the SAE into; None = the model named in the SAE's provenance (e.g. smollm2)."""
    hook_point: str | None = None
    """Hook point; None = the SAE's provenance hook point. For a transcoder: the module whose output it
    replaces (its input is read at `MODULE:in`); None = the transcoder's provenance."""
    corpus: str = "shakespeare"
    """Held-out text: `shakespeare`, `bible`, `default`, a .txt/.jsonl path. Documents are taken from the
    end of the corpus (harvest reads from the start), so they are unlikely to be training data."""
    tokens: int = 4096
    """Evaluated tokens (positions scored)."""
    context_len: int = 128
    """Tokens per context."""
    batch_size: int = 4
    """Contexts per batch; each batch runs its 4 variants (original, SAE, zero, mean) in one forward."""
    device: str = "auto"
    """Where the model and SAE run: auto (CUDA when present), cpu, cuda, cuda:N."""
    share_prefix: bool = True
    """Compute the model up to the hook once and only the layers after it per variant (identical numbers;
    off = four full forward passes, the reference)."""
    baseline_cache: bool = True
    """Reuse the SAE-independent part (prefix activations, zero / mean ablation CEs) of an earlier eval
    at the same model, hook, tokens and batch size, from `$SAEKIT_CACHE/eval_baselines` (checked against
    the model before use; identical numbers). Off = compute everything and write nothing."""
    exclude_first: int = 1
    """Context positions never spliced nor scored (the attention sink), as in harvest."""
    acts: str | None = None
    """Optional activation store: FVU/L0/dead % are then also computed on `--acts-rows` of its rows."""
    acts_rows: int = 8192
    """Rows of --acts used."""
    dtype: str = "float32"
    """Model dtype: float32 (exact), bfloat16, or auto."""
    out: str | None = None
    """Report folder; None = `<sae>/eval` (eval.json + eval.png)."""
    threads: int | None = None
    """torch CPU threads; None leaves torch's setting alone."""
    quiet: bool = False
    """No progress bar."""


def _sae_reconstructor(sae):
    def reconstruct(x):
        return sae.reconstruct(x.float()).to(x.dtype)

    return reconstruct


def heldout_tokens(docs, tokenizer, context_len: int, tokens: int):
    """Tokenise documents from the end of the corpus (renumbered) until `tokens` real tokens."""
    from saekit.data.corpus import Document
    from saekit.data.tokenize import tokenize_corpus

    rev = [Document(id=i, text=d.text, source=d.source) for i, d in enumerate(reversed(docs))]
    return tokenize_corpus(rev, tokenizer, context_len, max_tokens=int(tokens * 1.3) + context_len)


def evaluate(cfg: EvalConfig, *, loaded=None) -> dict[str, Any]:
    """Run the evaluation; writes `eval.json` and `eval.png` into the report folder and returns the report."""
    from tqdm.auto import tqdm

    import saekit
    from saekit.atomic import write_json_atomic
    from saekit.data.corpus import load_corpus
    from saekit.data.harvest.lm import LMHarvestConfig
    from saekit.device import resolve_device
    from saekit.eval.activations import activation_metrics, check_width, inlier_metrics
    from saekit.eval.plots import eval_png
    from saekit.eval.spliced import eval_positions
    from saekit.formats import output_folder
    from saekit.hooks import HookPoint, resolve_module
    from saekit.train.metrics import read_log

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    sae = saekit.load(cfg.sae).eval().to(device)
    prov = sae.cfg.provenance
    model_name = cfg.model or prov.model
    hook, source_hook = _hooks(cfg, sae)
    if not model_name or not hook:
        raise SaekitError(
            f"{cfg.sae}: the SAE's provenance does not name its model/hook point; "
            "pass --model and --hook-point"
        )
    out_dir = Path(cfg.out) if cfg.out else output_folder(cfg.sae) / "eval"  # single-file SAEs too
    report: dict[str, Any] = {
        "sae": str(cfg.sae),
        "model": model_name,
        "hook_point": hook,
        "source_hook_point": source_hook,
        "config": asdict(cfg),
        "sae_config": sae.cfg.to_dict(),
    }
    if cfg.acts:
        from saekit.train.source import open_source

        store = open_source(cfg.acts)
        check_width(sae, store.d, f"activation store {cfg.acts}")
        if sae.cfg.transcode:
            from saekit.data.paired import PairedRows, split_pair

            rows = PairedRows(store).sample(min(cfg.acts_rows, len(store)), 12345)
            x, y = split_pair(rows, sae.d_in)
            batches = list(zip(x.split(1024), y.split(1024)))
        else:
            batches = store.sample(min(cfg.acts_rows, len(store)), 12345).split(1024)
        report["store_metrics"] = activation_metrics(sae, batches).to_dict()

    if loaded is None:
        from saekit.models import load_model, resolve_dtype

        loaded = load_model(model_name, dtype=resolve_dtype(cfg.dtype, device), quiet=cfg.quiet)
    loaded.model.to(device)
    hp = HookPoint.parse(hook)
    resolve_module(loaded.model, hp)
    if source_hook is not None:
        resolve_module(loaded.model, source_hook)
    docs = load_corpus(cfg.corpus)
    batch = heldout_tokens(docs, loaded.tokenizer, cfg.context_len, cfg.tokens)
    specials = set(getattr(loaded.tokenizer, "all_special_ids", []) or [])
    pos = eval_positions(batch.token_id, batch.mask, specials, cfg.exclude_first)
    # keep whole contexts until the token budget is reached
    cum = pos.sum(1).cumsum(0)
    n_ctx = int(torch.searchsorted(cum, torch.tensor(cfg.tokens))) + 1
    ids, mask, pos = batch.token_id[:n_ctx], batch.mask[:n_ctx], pos[:n_ctx]
    acts: list[torch.Tensor] = []
    sources: list[torch.Tensor] = []  # a transcoder's inputs (acts then holds the outputs it predicts)

    def on_acts(x, src=None):
        if src is not None:
            check_width(sae, src.shape[-1], f"model {model_name!r} at {source_hook}")
            sources.append(src.float().cpu())
        else:
            check_width(sae, x.shape[-1], f"model {model_name!r} at {hook}")
        acts.append(x.float().cpu())

    bar = tqdm(total=int(pos.sum()), desc="eval", unit="tok", disable=cfg.quiet)
    try:
        sp = _spliced(
            cfg, loaded.model, hp, _sae_reconstructor(sae), ids, mask, pos, on_acts, bar, source_hook
        )
    finally:
        bar.close()
    if sources:
        heldout = activation_metrics(sae, zip(sources, acts, strict=True))
        inliers, n_out = inlier_metrics(
            sae, torch.cat(sources), LMHarvestConfig.max_norm_ratio, torch.cat(acts)
        )
    else:
        heldout = activation_metrics(sae, acts)
        inliers, n_out = inlier_metrics(sae, torch.cat(acts), LMHarvestConfig.max_norm_ratio)
    report["heldout_metrics"] = heldout.to_dict()
    report["heldout_metrics_inliers"] = inliers.to_dict() | {"norm_outliers_left_out": n_out}
    report["spliced"] = sp._asdict()
    log_path = Path(cfg.sae) / "train_log.jsonl"
    log = read_log(log_path) if log_path.exists() else None
    out_dir.mkdir(parents=True, exist_ok=True)
    png = eval_png(
        out_dir / "eval.png",
        heldout.density,
        log,
        title=f"{sae.arch} d_sae={sae.d_sae} @ {model_name}:{hook}  FVU {heldout.fvu:.3f}  "
        f"L0 {heldout.l0:.1f}  CE recovered {sp.ce_recovered:.3f}",
    )
    report["png"] = str(png)
    write_json_atomic(out_dir / "eval.json", report)
    return report


def _hooks(cfg: EvalConfig, sae) -> tuple[str | None, str | None]:
    """(hook point spliced, hook point read for a transcoder's input or None): from --hook-point (for a
    transcoder, the module: its input and output) or the provenance."""
    from saekit.hooks import HookPoint

    prov = sae.cfg.provenance
    if not sae.cfg.transcode:
        return cfg.hook_point or prov.hook_point, None
    if cfg.hook_point:
        source, target = HookPoint.parse(cfg.hook_point).module_pair()
        return str(target), str(source)
    if prov.target_hook_point and prov.hook_point:
        return prov.target_hook_point, prov.hook_point
    raise SaekitError(
        f"{cfg.sae} is a transcoder whose provenance does not name the module it predicts; pass "
        "--hook-point MODULE (e.g. model.layers.8.mlp: its output is replaced by the prediction from its "
        "input)"
    )


def _spliced(cfg: EvalConfig, model, hp, reconstruct, ids, mask, pos, on_acts, bar, source_hook=None):
    """Spliced metrics, through the on-disk baseline cache when it is on (and the prefix is shared:
    the full-pass reference must recompute everything; a transcoder's source activations are not cached)."""
    from saekit.eval.baseline_cache import baseline_key, baseline_path, load_baseline, save_baseline
    from saekit.eval.spliced import spliced_metrics_and_baseline

    use_cache = cfg.baseline_cache and cfg.share_prefix and source_hook is None
    path = baseline_path(baseline_key(model, hp, ids, mask, pos, cfg.batch_size)) if use_cache else None
    cached = load_baseline(path) if path is not None else None
    sp, baseline = spliced_metrics_and_baseline(
        model,
        hp,
        reconstruct,
        ids,
        mask,
        pos,
        batch_size=cfg.batch_size,
        on_activations=on_acts,
        progress=bar,
        share_prefix=cfg.share_prefix,
        baseline=cached,
        source_hook=source_hook,
    )
    if path is not None and not sp.baseline_reused:
        try:
            save_baseline(path, baseline)
        except OSError as err:  # a read-only or full cache disk must not fail the eval
            import warnings

            warnings.warn(f"eval: could not write the baseline cache {path}: {err}", stacklevel=2)
    return sp


def summary_line(report: dict[str, Any]) -> str:
    h, s = report["heldout_metrics"], report["spliced"]
    hi = report.get("heldout_metrics_inliers")
    inl = f" ({hi['fvu']:.4f} without {hi['norm_outliers_left_out']} norm outliers)" if hi else ""
    return (
        f"FVU {h['fvu']:.4f}{inl}  L0 {h['l0']:.1f}  "
        f"not fired in these {h['n_rows']} tokens {h['dead_pct']:.2f}%  "
        f"shrinkage {h['shrinkage']:.3f}  "
        f"CE orig {s['ce_orig']:.4f} sae {s['ce_sae']:.4f} zero {s['ce_zero']:.4f}  "
        f"recovered {s['ce_recovered']:.4f}  (vs mean ablation {s['ce_mean']:.4f}: "
        f"{s['ce_recovered_mean']:.4f})  KL {s['kl']:.4f}  ({s['n_tokens']} tokens"
        f"{'; prefix and ablation CEs from the baseline cache' if s.get('baseline_reused') else ''})"
    )


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
