"""`saekit analyze real|synthetic|compare`: what SAE features mean.

* `real`: one pass over an activation store -> top contexts, statistics, logit effects.
* `synthetic`: token sequences that maximise each feature (needs the model).
* `compare`: real + synthetic (reusing what --out already holds for those features) + comparison.
All three write/extend `OUT/analysis.json` and PNGs in OUT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import torch

from saekit.errors import SaekitError


@dataclass(frozen=True)
class Common:
    """Flags shared by every analyze subcommand."""

    sae: str
    """SAE folder (native or a detected foreign format)."""
    out: str = "analysis"
    """Output folder for analysis.json and the PNGs."""
    features: str = "top:10"
    """Feature spec: 0,5,10 | 0-20 | 0-10,50-60 | top:N | active:"prompt" (ranges inclusive)."""
    model: str | None = None
    """Model name/path (default: the store manifest's or the SAE provenance's model)."""
    hook_point: str | None = None
    """Hook point (default: the SAE provenance's or the store manifest's)."""
    model_dtype: Literal["float32", "bfloat16"] = "float32"
    """dtype to load the model in."""
    quiet: bool = False
    """No progress bars."""
    no_plots: bool = False
    """Write only analysis.json."""
    html: bool = False
    """Also build the HTML feature browser in OUT/browser (what `saekit browse OUT --sae SAE` does)."""


@dataclass(frozen=True)
class RealArgs(Common):
    """`analyze real`: one streaming pass over an activation store."""

    store: str = ""
    """Activation store folder (from `saekit harvest`)."""
    n_top: int = 20
    """Top examples per feature."""
    batch_size: int = 4096
    """Rows per SAE encode."""
    context_before: int = 12
    """Context tokens before each top example."""
    context_after: int = 4
    """Context tokens after each top example."""
    max_rows: int | None = None
    """Use only the first rows of the store."""
    no_model: bool = False
    """Do not load the model: no token strings (ids shown), no logit effects."""


@dataclass(frozen=True)
class SyntheticArgs(Common):
    """`analyze synthetic`: maximise each feature over token sequences."""

    n_steps: int = 40
    """Optimisation steps per restart."""
    seq_len: int = 8
    """Tokens per sequence (feature read at the last)."""
    learning_rate: float = 0.1
    """Soft-prompt Adam step (method=soft)."""
    restarts: int = 2
    """Random restarts."""
    seed: int = 0
    """Random seed."""
    method: Literal["gcg", "soft"] = "gcg"
    """gcg (gradient-guided token swaps) or soft (soft prompt projected to tokens)."""
    n_candidates: int = 48
    """gcg: swaps scored per step."""
    top_k_tokens: int = 64
    """gcg: substitutions proposed per position."""
    fluency_weight: float = 0.05
    """Weight of the model's CE in the score, in units of the feature's real max."""


@dataclass(frozen=True)
class CompareArgs(SyntheticArgs, RealArgs):
    """`analyze compare`: real + synthetic + comparison plot (reuses results in --out)."""

    rerun: bool = False
    """Recompute real and synthetic parts even when --out has them."""


def _load_sae(path: str):
    import saekit

    return saekit.load(path).eval()


def _load_model(a: Common, sae, manifest: dict | None):
    from saekit.models import load_model

    name = a.model or (manifest or {}).get("model") or sae.cfg.provenance.model
    if not name:
        raise SaekitError("no model known for this SAE: pass --model (e.g. --model smollm2)")
    return load_model(name, dtype=a.model_dtype)


def _hook_point(a: Common, sae, manifest: dict | None) -> str:
    hp = a.hook_point or sae.cfg.provenance.hook_point or (manifest or {}).get("hook_point")
    if not hp:
        raise SaekitError("no hook point known for this SAE: pass --hook-point (e.g. model.layers.15)")
    return hp


def _prompt_scorer(lm, sae, hp: str):
    def score(prompt: str) -> torch.Tensor:
        from saekit.hooks import capture

        ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad(), capture(lm.model, [hp], stop_after_last=True) as cap:
            lm.model(input_ids=ids)
        return sae.encode(next(iter(cap.activations.values()))[0].float()).amax(0)

    return score


def run_real(a: RealArgs) -> dict:
    from saekit.analysis import report
    from saekit.analysis.logits import find_unembed
    from saekit.analysis.real import RealConfig, analyze_store
    from saekit.analysis.store_rows import StoreRows

    if not a.store:
        raise SaekitError(
            "analyze real needs --store STORE_FOLDER (an activation store from `saekit harvest`)"
        )
    sae = _load_sae(a.sae)
    manifest = StoreRows(a.store).manifest
    lm = tokenizer = unembed = scorer = None
    if not a.no_model:
        lm = _load_model(a, sae, manifest)
        tokenizer = lm.tokenizer
        if lm.kind == "causal_lm":
            unembed = find_unembed(lm.model)
        scorer = _prompt_scorer(lm, sae, _hook_point(a, sae, manifest))
    cfg = RealConfig(
        n_top=a.n_top,
        batch_size=a.batch_size,
        context_before=a.context_before,
        context_after=a.context_after,
        max_rows=a.max_rows,
        quiet=a.quiet,
    )
    doc = analyze_store(
        sae,
        a.store,
        a.features,
        cfg,
        tokenizer=tokenizer,
        unembed=unembed,
        sae_path=a.sae,
        prompt_scores=scorer,
    )
    out = Path(a.out)
    report.save(doc, out)
    if not a.no_plots:
        from saekit.viz import analysis_plots as P

        for k in doc["features"]:
            P.feature_real_png(doc, int(k), out)
        P.summary_real_png(doc, out)
        P.statistics_real_png(doc, out)
    if not a.quiet:
        s = doc["summary"]
        print(
            f"analyze real: {s['n_rows']:,} tokens, {s['n_selected']} features reported, {s['n_dead']} of "
            f"{s['n_features']} never fired -> {out / report.FILE_NAME}"
        )
    return doc


def run_synthetic(a: SyntheticArgs, doc: dict | None = None) -> dict:
    from saekit.analysis import report
    from saekit.analysis.features import resolve_features
    from saekit.analysis.synthetic import SyntheticConfig, maximise_feature

    sae = _load_sae(a.sae)
    out = Path(a.out)
    if doc is None and (out / report.FILE_NAME).is_file():
        doc = report.load(out)
    manifest = (
        {"model": doc["source"].get("model"), "hook_point": doc["source"].get("hook_point")} if doc else None
    )
    lm = _load_model(a, sae, manifest)
    hp = _hook_point(a, sae, manifest)
    counts = None
    if doc and doc.get("all_features"):
        n_rows = doc["summary"]["n_rows"]
        counts = torch.tensor(doc["all_features"]["frequency"]) * n_rows
    features = resolve_features(
        a.features, sae.d_sae, firing_counts=counts, prompt_scores=_prompt_scorer(lm, sae, hp)
    )
    if doc is None:
        doc = report.new_document(
            report.sae_info(sae, a.sae), {"kind": "model", "model": lm.name, "hook_point": hp}, {}
        )
    cfg = SyntheticConfig(
        n_steps=a.n_steps,
        seq_len=a.seq_len,
        learning_rate=a.learning_rate,
        restarts=a.restarts,
        seed=a.seed,
        method=a.method,
        n_candidates=a.n_candidates,
        top_k_tokens=a.top_k_tokens,
        fluency_weight=a.fluency_weight,
        quiet=a.quiet,
    )
    model = lm.model.float() if a.model_dtype == "float32" else lm.model
    for f in features:
        feat = doc["features"].setdefault(str(f), {"index": f})
        real_max = feat.get("stats", {}).get("max") or None
        res = maximise_feature(model, sae, hp, f, cfg, tokenizer=lm.tokenizer, real_max=real_max)
        feat["synthetic"] = report.synthetic_entry(res, cfg, lm.tokenizer, real_max)
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


def run_compare(a: CompareArgs) -> dict:
    from saekit.analysis import report
    from saekit.analysis.compare import compare_document

    out = Path(a.out)
    doc = report.load(out) if (out / report.FILE_NAME).is_file() and not a.rerun else None
    if doc is None or not any("top_examples" in f for f in doc["features"].values()):
        doc = run_real(RealArgs(**{f.name: getattr(a, f.name) for f in dataclasses.fields(RealArgs)}))
    feats = [k for k, f in doc["features"].items() if "top_examples" in f]
    if a.rerun or not all("synthetic" in doc["features"][k] for k in feats):
        syn_args = SyntheticArgs(
            **{
                **{f.name: getattr(a, f.name) for f in dataclasses.fields(SyntheticArgs)},
                "features": ",".join(feats),
            }
        )
        doc = run_synthetic(syn_args, doc)
    comp = compare_document(doc)
    report.save(doc, out)
    if not a.no_plots:
        from saekit.viz import analysis_plots as P

        P.comparison_png(doc, out)
    if not a.quiet:
        for k, c in comp.items():
            r = c["ratio_to_real_max"]
            print(
                f"feature {k}: synthetic/real max = {r:.2f}"
                if r is not None
                else f"feature {k}: never fired in real data"
            )
    return doc


def main(argv: list[str]) -> int:
    import tyro

    Cmd = Union[  # noqa: UP007 - tyro needs a Union of annotated subcommands
        Annotated[RealArgs, tyro.conf.subcommand("real")],
        Annotated[SyntheticArgs, tyro.conf.subcommand("synthetic")],
        Annotated[CompareArgs, tyro.conf.subcommand("compare")],
    ]
    args = tyro.cli(Cmd, args=argv, prog="saekit analyze", description=__doc__)
    if isinstance(args, CompareArgs):
        run_compare(args)
    elif isinstance(args, RealArgs):
        run_real(args)
    else:
        run_synthetic(args)
    if args.html:
        from saekit.commands.browse import build_and_report

        build_and_report(args.out, sae=args.sae, quiet=args.quiet)
    return 0
