"""The `analyze real|synthetic|compare` jobs: their configs (the CLI flags; each nests the library
configs it drives) and the functions that run them end to end (load, analyse, save, plot).

`commands/analyze.py` only parses these configs and prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import torch
import tyro

from saekit.analysis.corpus_source import CorpusConfig
from saekit.analysis.image_report import ImageConfig
from saekit.analysis.real import RealConfig
from saekit.analysis.synthetic import SyntheticConfig
from saekit.errors import SaekitError

Flat = tyro.conf.arg(name="")  # nested library configs keep their own flag names


@dataclass(frozen=True)
class Common:
    """Flags shared by every analyze subcommand."""

    sae: str
    """SAE: a native folder or any format `saekit.load` reads (SAELens, sparsify, dictionary_learning)."""
    out: str = "analysis"
    """Output folder for analysis.json and the PNGs."""
    features: str = "top:10"
    """Feature spec: 0,5,10 | 0-20 | 0-10,50-60 | top:N | readable:N[:LO-HI] | active:"prompt" (ranges
    inclusive; readable:N = N features firing on 0.05-2% of tokens, spread over that band)."""
    model: str | None = None
    """Model name/path (default: the store manifest's or the SAE provenance's model)."""
    hook_point: str | None = None
    """Hook point (default: the SAE provenance's or the store manifest's)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    """dtype to load the model in (auto: the device's fast dtype)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N: where the model and the SAE run."""
    quiet: bool = False
    """No progress bars."""
    no_plots: bool = False
    """Write only analysis.json."""
    html: bool = False
    """Also build the HTML feature browser in OUT/browser (what `saekit browse OUT --sae SAE` does)."""


@dataclass(frozen=True)
class RealArgs(Common):
    """`analyze real`: one streaming pass over a store, or over a model + corpus."""

    store: str = ""
    """Activation store folder (from `saekit harvest`); or give --corpus instead."""
    source: Annotated[CorpusConfig, Flat] = field(default_factory=CorpusConfig)
    real: Annotated[RealConfig, Flat] = field(default_factory=RealConfig)
    images: Annotated[ImageConfig, Flat] = field(default_factory=ImageConfig)
    no_model: bool = False
    """Do not load the model: no token strings (ids shown), no logit effects, no regenerated images."""


@dataclass(frozen=True)
class SyntheticArgs(Common):
    """`analyze synthetic`: maximise each feature over token sequences."""

    store: str = ""
    """Store whose token table gives the real starts exactly (default: the analysis document's store)."""
    synthetic: Annotated[SyntheticConfig, Flat] = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class CompareArgs(SyntheticArgs, RealArgs):
    """`analyze compare`: real + synthetic + comparison plot (reuses results in --out)."""

    rerun: bool = False
    """Recompute real and synthetic parts even when --out has them."""


def _load_sae(path: str, device: torch.device):
    import saekit

    return saekit.load(path, device=device).eval()


def _model_name(a: Common, sae, manifest: dict | None) -> str:
    name = a.model or (manifest or {}).get("model") or sae.cfg.provenance.model
    if not name:
        raise SaekitError("no model known for this SAE: pass --model (e.g. --model smollm2)")
    return name


def _load_lm(a: Common, sae, manifest: dict | None, device: torch.device, loaded=None):
    """The model of `--model` (else the store's or the SAE's) on `device`; `loaded` is used as given."""
    from saekit.device import auto_model_dtype
    from saekit.models import load_model

    lm = loaded
    if lm is None:
        dtype = auto_model_dtype(device) if a.dtype == "auto" else a.dtype
        lm = load_model(_model_name(a, sae, manifest), dtype=dtype, quiet=a.quiet)
    if hasattr(lm, "model"):
        lm.model.to(device)
    return lm


def _hook_point(a: Common, sae, manifest: dict | None) -> str:
    hp = a.hook_point or sae.cfg.provenance.hook_point or (manifest or {}).get("hook_point")
    if not hp:
        raise SaekitError("no hook point known for this SAE: pass --hook-point (e.g. model.layers.15)")
    return hp


def _prompt_scorer(lm, sae, hp: str):
    def score(prompt: str) -> torch.Tensor:
        from saekit.hooks import capture

        ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"].to(lm.model.device)
        with torch.no_grad(), capture(lm.model, [hp], stop_after_last=True) as cap:
            lm.model(input_ids=ids)
        return sae.encode(next(iter(cap.activations.values()))[0].float()).amax(0).cpu()

    return score


def _source(a: RealArgs, sae, device: torch.device, loaded=None):
    """(row source, loaded LM or None) for --store or --corpus (`loaded`: the model, already loaded)."""
    from saekit.analysis.corpus_source import CorpusSource
    from saekit.analysis.store_rows import StoreRows

    if a.store and a.source.corpus:
        raise SaekitError("give either --store or --corpus, not both")
    if a.store:
        from saekit.analysis.image_report import image_kind

        src = StoreRows(a.store)
        lm = None
        if not a.no_model and image_kind(src) is None:  # a text store (token ids, no image source)
            lm = _load_lm(a, sae, src.manifest, device, loaded)
        return src, lm
    if not a.source.corpus:
        raise SaekitError(
            "analyze real needs activations: --store STORE_FOLDER (from `saekit harvest`), or --corpus FILE "
            "(with --model) to compute them on the fly"
        )
    lm = _load_lm(a, sae, None, device, loaded)
    return CorpusSource(lm, _hook_point(a, sae, None), a.source), lm


def run_real(a: RealArgs, *, loaded=None) -> dict:
    """`analyze real`: the pass, the document, image outputs for image stores, PNGs (`loaded`: the
    model, instead of loading the one the flags name)."""
    return _run_real(a, loaded)[0]


def _run_real(a: RealArgs, loaded=None) -> tuple[dict, object, object]:
    """(document, row source, the model used or None)."""
    from saekit.analysis import report
    from saekit.analysis.image_report import add_images, image_kind
    from saekit.analysis.logits import find_unembed
    from saekit.analysis.real import analyze_source
    from saekit.device import resolve_device

    device = resolve_device(a.device)
    sae = _load_sae(a.sae, device)
    source, lm = _source(a, sae, device, loaded)
    kw = {}
    if lm is not None:
        kw["tokenizer"] = lm.tokenizer
        kw["prompt_scores"] = _prompt_scorer(lm, sae, _hook_point(a, sae, source.manifest))
        if lm.kind == "causal_lm":
            kw["unembed"] = find_unembed(lm.model)
    doc = analyze_source(sae, source, a.features, a.real, sae_path=a.sae, quiet=a.quiet, **kw)
    if a.store:
        doc["source"]["path"] = a.store
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = image_kind(source)
    if kind is not None:
        add_images(doc, source, out, a.images, kind=kind, sae=sae, device=device, render=not a.no_model)
    report.save(doc, out)
    if not a.no_plots:
        from saekit.viz import analysis_plots as P

        if kind is None:
            for k in doc["features"]:
                P.feature_real_png(doc, int(k), out)
        P.summary_real_png(doc, out)
        P.statistics_real_png(doc, out)
    return doc, source, lm


def _starts_fn(a: SyntheticArgs, doc: dict, source, lm, hp: str):
    """`feat -> real start sequences` from the store's token table or the corpus, else the document."""
    from saekit.analysis.real_starts import real_starts

    src = source
    path = a.store or (doc["source"].get("path") if doc["source"].get("kind") == "store" else None)
    if src is None and path:
        from saekit.analysis.store_rows import StoreRows

        src = StoreRows(path)
    if src is None and doc["source"].get("kind") == "corpus":
        from saekit.analysis.corpus_source import CorpusSource

        src = CorpusSource(lm, hp, CorpusConfig(corpus=doc["source"]["corpus"]))
    if src is not None and not src.has_tokens():
        src = None
    man = {} if src is None else src.manifest
    bos = getattr(lm.tokenizer, "bos_token_id", None)

    def starts(feat: dict) -> list[list[int]]:
        return real_starts(
            feat, a.synthetic.restarts, tokens=None if src is None else src.tokens,
            context_len=man.get("context_len"), prepend_bos=bool(man.get("prepend_bos")), bos_id=bos,
        )  # fmt: skip

    return starts


def _search_model(lm, dtype: str, device, have=None):
    """The model in the synthetic search's dtype, or None when that is the model's own (float32);
    `have` (a LoadedModel the caller already holds, e.g. the demo's bf16 copy) is used when it is in
    that dtype, instead of casting another copy."""
    from saekit.models import resolve_dtype, with_dtype

    name = resolve_dtype(dtype, device)
    if name == lm.dtype:
        return None
    return have.model if have is not None and have.dtype == name else with_dtype(lm, name).model


def run_synthetic(
    a: SyntheticArgs, doc: dict | None = None, source=None, *, loaded=None, search_loaded=None
) -> dict:
    """`analyze synthetic`: maximise each selected feature, starting from its real contexts
    (tokens from `source`, the store given or named by the document, or the document itself).
    `loaded` (a LoadedModel; float32 for exact gradients) replaces loading the model."""
    from saekit.analysis import report
    from saekit.analysis.features import resolve_features
    from saekit.analysis.synthetic import maximise_feature
    from saekit.device import resolve_device

    device = resolve_device(a.device)
    sae = _load_sae(a.sae, device)
    out = Path(a.out)
    if doc is None and (out / report.FILE_NAME).is_file():
        doc = report.load(out)
    manifest = (
        {"model": doc["source"].get("model"), "hook_point": doc["source"].get("hook_point")} if doc else None
    )
    fp32 = replace(a, dtype="float32") if a.dtype == "auto" else a  # gradients: not bf16
    lm = _load_lm(fp32, sae, manifest, device, loaded)
    hp = _hook_point(a, sae, manifest)
    search = _search_model(lm, a.synthetic.search_dtype, device, search_loaded)
    counts, n_rows = None, None
    if doc and doc.get("all_features"):
        n_rows = int(doc["summary"]["n_rows"])
        counts = torch.tensor(doc["all_features"]["frequency"]) * n_rows
    features = resolve_features(
        a.features, sae.d_sae, firing_counts=counts, n_rows=n_rows, prompt_scores=_prompt_scorer(lm, sae, hp)
    )
    if doc is None:
        doc = report.new_document(
            report.sae_info(sae, a.sae), {"kind": "model", "model": lm.name, "hook_point": hp}, {}
        )
    starts = _starts_fn(a, doc, source, lm, hp)
    for f in features:
        feat = doc["features"].setdefault(str(f), {"index": f})
        real_max = feat.get("stats", {}).get("max") or None
        res = maximise_feature(
            lm.model, sae, hp, f, a.synthetic, tokenizer=lm.tokenizer, real_max=real_max,
            init_contexts=starts(feat) if "top_examples" in feat else (), quiet=a.quiet, search_model=search,
        )  # fmt: skip
        feat["synthetic"] = report.synthetic_entry(res, a.synthetic, lm.tokenizer, real_max)
        if not a.quiet:
            b = feat["synthetic"]["sequences"][0]
            rel = f" = {b['ratio_to_real_max']:.2f}x real max" if b["ratio_to_real_max"] else ""
            print(f"feature {f}: {b['text']!r} act {b['activation']:.3g}{rel}, ppl {b['perplexity']:.3g}")
    report.save(doc, out)
    if not a.no_plots:
        from saekit.viz import analysis_plots as P

        for f in features:
            P.feature_synthetic_png(doc, f, out)
    return doc


def run_compare(a: CompareArgs, *, loaded=None, search_loaded=None) -> dict:
    """`analyze compare`: real (unless --out has it), synthetic for the same features, comparison; the
    model is loaded once (or `loaded` used) for both parts when they want the same dtype."""
    from saekit.analysis import report
    from saekit.analysis.compare import compare_document

    out = Path(a.out)
    doc = report.load(out) if (out / report.FILE_NAME).is_file() and not a.rerun else None
    source = None
    if doc is None or not any("top_examples" in f for f in doc["features"].values()):
        doc, source, lm = _run_real(a, loaded)
        if (
            loaded is None
            and lm is not None
            and (a.dtype != "auto" or getattr(lm, "dtype", None) == "float32")
        ):
            loaded = lm  # what synthetic would load: reuse it
    feats = [k for k, f in doc["features"].items() if "top_examples" in f]
    if a.rerun or not all("synthetic" in doc["features"][k] for k in feats):
        doc = run_synthetic(
            replace(a, features=",".join(feats)), doc, source, loaded=loaded, search_loaded=search_loaded
        )
    compare_document(doc)
    report.save(doc, out)
    if not a.no_plots:
        from saekit.viz import analysis_plots as P

        P.comparison_png(doc, out)
    return doc
