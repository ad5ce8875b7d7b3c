"""`BenchConfig`: the flags of `saekit bench`, nesting each metric family's own config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from saekit.bench.absorption import AbsorptionConfig
from saekit.bench.core import CoreConfig
from saekit.bench.probing import ProbingConfig
from saekit.errors import SAEConfigError

Metric = Literal["core", "probing", "absorption"]
METRICS: tuple[Metric, ...] = ("core", "probing", "absorption")


@dataclass(frozen=True)
class BenchConfig:
    """Which SAEs to compare, on which model, and how (SAEBench-style metrics, offline, with intervals)."""

    sae: tuple[str, ...]
    """SAEs to compare (any folder or file `saekit.load` reads), all at the same hook point of one model."""
    out: str = "bench"
    """Output folder: bench.json, bench.md, bench.png."""
    model: str | None = None
    """Model the SAEs read; None = the model named in the SAEs' provenance (e.g. smollm2)."""
    hook: str | None = None
    """Hook point; None = the SAEs' provenance hook point."""
    metrics: tuple[Metric, ...] = METRICS
    """Metric families to run: core (FVU, L0, CE/KL recovered), probing (sparse probing), absorption."""
    group_seeds: bool = False
    """SAEs whose configurations are the same except the seed (config.json, and the training config when
    the folder has train_summary.json) are also reported as one group: mean, sd, min and max across them."""
    steering: bool = False
    """Steerability. Not part of the bench: an honest number needs generations judged per concept, which
    `saekit sweep` does (minutes per SAE on a CPU). Asking for it is an error, never a made-up figure."""
    n_boot: int = 1000
    """Bootstrap replicates per interval (0 = no intervals)."""
    seed: int = 0
    """Bootstrap seed."""
    dtype: str = "float32"
    """Model dtype: float32 (as `saekit eval`), bfloat16 (about 2x faster on CPUs with native bf16), auto."""
    device: str = "auto"
    """Where the model and SAEs run: auto (CUDA when present), cpu, cuda, cuda:N."""
    threads: int | None = None
    """torch CPU threads; None leaves torch's setting alone."""
    quiet: bool = False
    """No progress bars."""
    core: CoreConfig = dataclasses.field(default_factory=CoreConfig)
    probing: ProbingConfig = dataclasses.field(default_factory=ProbingConfig)
    absorption: AbsorptionConfig = dataclasses.field(default_factory=AbsorptionConfig)

    def __post_init__(self) -> None:
        if not self.sae:
            raise SAEConfigError("bench: give at least one SAE: --sae PATH [PATH ...]")
        if self.steering:
            raise SAEConfigError(
                "bench: --steering is not implemented (steerability needs judged generations per concept); "
                "run `saekit sweep --sae SAE --protocol small` for steering with intervals"
            )
        if not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise SAEConfigError(
                f"bench: --metrics needs distinct families from {METRICS}, got {self.metrics}"
            )
        if self.n_boot < 0:
            raise SAEConfigError(f"bench: --n-boot must be >= 0, got {self.n_boot}")
