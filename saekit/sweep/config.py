"""The sweep's configuration (the `saekit sweep` flags), its presets and its result record.

`--protocol small` (3 concepts, 2+2 prompts, 2 strengths, 16 tokens) is the quick configuration;
`--protocol full` (12 concepts, 5+5 prompts, 4 strengths, 32 tokens, 8 arms) the ~2-hour benchmark.
Any grid field given explicitly overrides the preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from saekit.steer.concept.evidence import SelectionConfig
from saekit.steer.concept.learned import CONCEPT_INSTRUCTION

SMALL_ARMS = (
    "input:additive",
    "input:clamp",
    "output:additive",
    "decompose:additive",
    "sae_ts:additive",
    "diffmean",
)
FULL_ARMS = ("input:additive", "input:clamp", "input:surgery", "output:additive", "output:clamp",
             "decompose:additive", "sae_ts:additive", "diffmean")  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"n_concepts": 3, "n_train": 2, "n_test": 2, "arms": SMALL_ARMS,
              "strengths": "0.25norm,0.5norm", "max_new_tokens": 16},
    "full": {"n_concepts": 12, "n_train": 5, "n_test": 5, "arms": FULL_ARMS,
             "strengths": "0.1norm,0.25norm,0.5norm,1norm", "max_new_tokens": 32},
}  # fmt: skip
PROMPTING_TEMPLATE = CONCEPT_INSTRUCTION  # the supervised arms fit on continuations of this instruction


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and how to judge it (grid fields left unset come from `protocol`)."""

    sae: tuple[str, ...]
    """SAE folder(s), one per hook layer; their provenance gives the hook point."""
    out: str = "sweep_out"
    """Output folder: sweep.json, table.md, score_vs_strength.png, tradeoff.png, test_table.png."""
    protocol: Literal["small", "full"] = "small"
    """Preset for the grid fields below that are not given."""
    concepts: str = "protocol"
    """`protocol` (the bundled 12), `default` (the built-in 5) or a JSON file (`saekit.steer.concept`)."""
    n_concepts: int | None = None
    """How many concepts to use (first n)."""
    prompts: str = "protocol"
    """`protocol` (bundled 5 train + 5 test instructions) or a JSON file {"train": [...], "test": [...]}."""
    n_train: int | None = None
    """Train prompts used (first n): strengths and layers are chosen on these."""
    n_test: int | None = None
    """Test prompts used (first n): the reported numbers."""
    arms: tuple[str, ...] | None = None
    """`selection:method` (selection in input/output/decompose/sae_ts/sparse/confidence), `diffmean` or
    `free` (the supervised vector without SAE features)."""
    strengths: str | None = None
    """Strength grid (units abs/norm/max); `norm` is comparable across arms."""
    max_new_tokens: int | None = None
    """Continuation length."""
    prompting: bool = True
    """Run the prompting baseline (the concept named in the instruction)."""
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    """How features are chosen."""
    positions: str = "all"
    """Positions to edit: all / prompt / generated."""
    keep_error: bool = False
    """boost_active: keep the SAE error term."""
    seed: int = 0
    """Generation and bootstrap seed."""
    greedy: bool = True
    """Greedy decoding (else sampled with the seed)."""
    chat: bool = True
    """Use the model's chat template."""
    model: str | None = None
    """Model name (default: the first SAE's provenance, else smollm2)."""
    dtype: str = "auto"
    """Model dtype: auto, bfloat16, float32."""
    device: str = "auto"
    """Device: auto | cpu | cuda | cuda:N."""
    calib_corpus: str = "shakespeare"
    """Corpus for an automatic `saekit scale` when an SAE has no calibration."""
    calib_tokens: int = 8000
    """Tokens for that automatic calibration."""
    threads: int = 2
    """torch CPU threads (1 is faster on a busy shared machine)."""
    quiet: bool = False
    """No progress bars."""

    def resolved(self) -> SweepConfig:
        """This config with every unset grid field taken from the protocol preset."""
        preset = PRESETS[self.protocol]
        return dataclasses.replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})


@dataclass
class SweepResult:
    """Everything the sweep measured (written to sweep.json)."""

    config: dict
    concepts: list[dict]
    records: list[dict] = field(default_factory=list)
    protocol: dict = field(default_factory=dict)
    summary: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def config_dict(cfg: SweepConfig) -> dict:
    """The config as written into sweep.json, with the split rule spelled out."""
    d = asdict(cfg)
    d["prompt_split"] = "train prompts choose strength/layer; test prompts are reported"
    return d
