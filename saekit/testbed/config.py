"""The testbed's one configuration dataclass (also the `saekit testbed` flags)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from saekit.errors import SAEConfigError
from saekit.steer.registry import get_method, method_names
from saekit.steer.strength import UNITS

DIRECTION_METHODS = ("diffmean", "decompose", "sae_ts")
"""Fixed-vector methods: DiffMean, its SAE decomposition, the SAE-TS vector (saekit.steer.concept.select)."""
METHODS = tuple(m for m in method_names() if get_method(m).takes_strength) + DIRECTION_METHODS
"""The SAE edit methods come from the one steering registry; one without a strength (ablate) cannot
add a class."""
WINDOWS = ("all", "first_half", "second_half")
STREAMS = ("image", "text")
DEPTHS = ("early", "middle", "late", "cond", "all")
"""Block depths; `cond` is the adaLN conditioning vector (its own site), `all` every block at once."""
SCENARIOS = ("null", "other")


@dataclass(frozen=True)
class TestbedConfig:
    """Everything that decides the testbed's numbers; saved beside the results."""

    __test__ = False  # not a pytest class

    seed: int = 0
    """Seed for data split, initialisation, noise and token sampling."""
    # --- generator -------------------------------------------------------------------------
    d_model: int = 48
    """Width of both streams."""
    n_heads: int = 4
    """Attention heads (joint attention over [text; image])."""
    n_joint: int = 2
    """Joint blocks (separate text/image weights, attention over the concatenation), like FLUX's 19."""
    n_single: int = 2
    """Single blocks on the concatenated sequence, like FLUX's 38."""
    mlp_ratio: int = 2
    """MLP hidden width / d_model (small: CPU time is dominated by the MLPs)."""
    text_tokens: int = 4
    """Tokens in the class ("text") stream; each class (and the null class) has its own prompt."""
    pooled_class: bool = True
    """Also feed the class to adaLN (like FLUX's pooled CLIP vector). False = the class reaches the
    model only through the text stream, so text-stream edits are not overridden by the modulation."""
    patch: int = 2
    """Patch side; 8x8 digits become (8/patch)^2 image tokens."""
    train_steps: int = 1500
    """Optimiser steps for the flow model."""
    batch_size: int = 128
    """Flow-model batch size."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, cosine decay)."""
    cfg_dropout: float = 0.1
    """Probability of replacing the class by the null class in training (enables CFG)."""
    classifier_steps: int = 1500
    """Optimiser steps for the digit classifier."""
    # --- sampling ------------------------------------------------------------------------
    sample_steps: int = 12
    """Euler steps from noise (t=1) to data (t=0)."""
    guidance: float = 3.0
    """Classifier-free guidance scale (1 = conditional only)."""
    # --- SAEs ----------------------------------------------------------------------------
    harvest_images: int = 300
    """Generated images whose block activations (all steps) are harvested per hook point."""
    tokens_per_step: int = 0
    """Random tokens kept per image per step (0 = all tokens of the stream)."""
    sae_expansion: int = 4
    """d_sae = sae_expansion * d_model."""
    sae_k: int = 8
    """Active latents per token (TopK)."""
    sae_steps: int = 1500
    """SAE optimiser steps."""
    sae_batch: int = 512
    """SAE batch size."""
    # --- sweep ---------------------------------------------------------------------------
    methods: tuple[str, ...] = METHODS
    """Steering methods compared (diffmean = class-mean minus global-mean direction, additive)."""
    streams: tuple[str, ...] = STREAMS
    """Streams steered."""
    depths: tuple[str, ...] = ("early", "middle", "late", "cond", "all")
    """Sites: early = first joint block, middle = first single block, late = last single block, cond =
    the adaLN conditioning vector (timestep + pooled class; an SAE of its own, like Kandinsky's CLIP
    embedding SAE), all = every block of the stream at once (each with its own SAE)."""
    units: tuple[str, ...] = UNITS
    """Strength units: abs (raw), norm (x mean activation norm), max (x feature's observed max)."""
    abs_strengths: tuple[float, ...] = (2.0, 12.0, 32.0, 62.0, 92.0)
    """Absolute strengths: the seed recipe's 2-92 range."""
    rel_strengths: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0)
    """Relative strengths for the norm and max units (the 0.1-5 range)."""
    windows: tuple[str, ...] = WINDOWS
    """Denoising-step windows steered: all steps, first half (high noise), second half."""
    source: str = "null"
    """What the steered generations are conditioned on: "null" (the CFG null class, i.e. unconditional:
    steering must add the class) or "other" (another digit: steering must override the conditioning,
    which also reaches every block through adaLN, like FLUX's pooled CLIP vector)."""
    scenarios: tuple[str, ...] = ()
    """Scenarios measured in one run (each as `source`); empty = just `source`. ("null", "other") gives
    the null-class and the class-to-class scenario side by side."""
    eval_per_target: int = 5
    """Generations per target class per configuration (x 10 targets: 5 gives the 50 per configuration
    that a reported rate with an interval needs)."""
    steer_uncond: bool = False
    """Also apply the opposite edit on CFG's unconditional branch."""
    threads: int = 1
    """torch CPU threads. 1 is fastest on a shared 2-core machine: with 2 threads and other processes
    busy, OpenMP barriers made these tiny ops up to 7x slower (measured)."""
    quiet: bool = False
    """No progress bars."""

    def __post_init__(self) -> None:
        def bad(what: str, found: Any, fix: str) -> SAEConfigError:
            return SAEConfigError(f"testbed config: {what}, found {found!r}; {fix}")

        if 8 % self.patch:
            raise bad("patch must divide 8", self.patch, "use 1, 2, 4 or 8")
        if self.d_model % self.n_heads:
            raise bad("d_model must be divisible by n_heads", (self.d_model, self.n_heads), "change either")
        if self.n_joint < 1 or self.n_single < 1:
            raise bad(
                "need at least one joint and one single block", (self.n_joint, self.n_single), "raise them"
            )
        for name, vals, known in (
            ("methods", self.methods, METHODS),
            ("units", self.units, UNITS),
            ("windows", self.windows, WINDOWS),
            ("streams", self.streams, STREAMS),
            ("depths", self.depths, DEPTHS),
            ("scenarios", self.scenarios or (self.source,), SCENARIOS),
        ):
            unknown = [v for v in vals if v not in known]
            if unknown or not vals:
                raise bad(f"{name} must be a non-empty subset of {known}", vals, "fix the list")
        if self.source not in ("null", "other"):
            raise bad("source must be 'null' or 'other'", self.source, "pick one")
        if not 0 < self.sae_k <= self.sae_expansion * self.d_model:
            raise bad("sae_k must be in 1..d_sae", self.sae_k, "lower sae_k")
        if self.sample_steps < 2:
            raise bad("sample_steps must be >= 2", self.sample_steps, "raise it")

    @property
    def n_image_tokens(self) -> int:
        return (8 // self.patch) ** 2

    def all_scenarios(self) -> tuple[str, ...]:
        return self.scenarios or (self.source,)

    def block_names(self) -> list[str]:
        return [f"transformer_blocks.{i}" for i in range(self.n_joint)] + [
            f"single_transformer_blocks.{i}" for i in range(self.n_single)
        ]

    def sites(self, depth: str, stream: str) -> list[tuple[str, str]]:
        """(block, stream) pairs a depth steers: one block, the conditioning vector, or all blocks."""
        if depth == "cond":
            return [("cond", "cond")]
        if depth == "all":
            return [(b, stream) for b in self.block_names()]
        return [(self.block_name(depth), stream)]

    def block_name(self, depth: str) -> str:
        """Module name (FLUX naming) of the block at `depth` (`cond` / `all`: those sites' names)."""
        if depth in ("cond", "all"):
            return depth
        if depth == "early":
            return "transformer_blocks.0"
        if depth == "middle":
            return "single_transformer_blocks.0"
        return f"single_transformer_blocks.{self.n_single - 1}"

    def model_key(self) -> dict[str, Any]:
        """Fields that decide the trained generator/classifier (cache key)."""
        keys = (
            "seed",
            "d_model",
            "n_heads",
            "n_joint",
            "n_single",
            "mlp_ratio",
            "text_tokens",
            "patch",
            "train_steps",
            "batch_size",
            "lr",
            "cfg_dropout",
            "classifier_steps",
        )
        key = {k: getattr(self, k) for k in keys}
        if not self.pooled_class:  # only when off, so caches made before this option stay valid
            key["pooled_class"] = False
        return key

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TestbedConfig:
        return dataclasses.replace(self, **changes)


def ci_config(**changes: Any) -> TestbedConfig:
    """A tiny configuration that trains and sweeps in well under a minute (tests)."""
    base = TestbedConfig(
        d_model=32,
        n_heads=2,
        n_joint=1,
        n_single=1,
        train_steps=700,
        batch_size=64,
        lr=3e-3,
        classifier_steps=200,
        sample_steps=8,
        harvest_images=60,
        sae_steps=200,
        sae_batch=256,
        methods=("additive", "clamp", "diffmean"),
        streams=("image",),
        depths=("late", "cond"),
        units=("norm",),
        rel_strengths=(1.0, 4.0),
        windows=("all",),
        eval_per_target=3,
        scenarios=("other",),
        quiet=True,
    )
    return base.replace(**changes)
