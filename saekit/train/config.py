"""Training configuration: one frozen dataclass that is saved with checkpoints and drives `saekit train`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from saekit.errors import SAEConfigError
from saekit.sae.registry import architectures, needs_k

#: CLI choices for --arch, read from the architecture registry (one source of truth).
ArchName = Literal[tuple(architectures())]

DEFAULT_DEAD_TOKENS = 10_000_000


def default_lr(d_sae: int) -> float:
    """The common scaling rule `2e-4 / sqrt(d_sae / 2**14)` (OpenAI / sparsify)."""
    return 2e-4 / math.sqrt(d_sae / 2**14)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Rerunning with the same values resumes exactly."""

    acts: str = ""
    """Activation store folder to train on (made by `saekit harvest`)."""
    out: str = "sae"
    """Output folder: the trained SAE (native format), `train_log.jsonl` and `checkpoint/` for resuming."""
    arch: ArchName = "topk"
    """SAE architecture."""
    k: int | None = 32
    """Active latents per row (topk) or mean per row (batchtopk); ignored by other architectures."""
    expansion: int = 16
    """d_sae = expansion * d_in unless --d-sae is given."""
    d_sae: int | None = None
    """Explicit number of latents (overrides expansion)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Parameter (master weight) dtype."""
    autocast: Literal["none", "bfloat16"] = "none"
    """Run the encoder matmul in bf16 (fp32 master weights). Only faster on CPUs with AVX512-BF16/AMX or
    on GPUs; on plain AVX2 CPUs bf16 matmuls are emulated and much slower."""
    encoder: Literal["auto", "exact", "screened"] = "auto"
    """TopK encoder. `exact`: one fp32 matmul ranks all latents. `screened`: a cheaper int8 matmul ranks
    them, the top k + margin are re-scored exactly in fp32 and the exact top k of those kept (values and
    gradients exact; the margin adapts so the sampled miss rate stays under 1% of rows, see
    `saekit.sae.screened`). `auto`: screened where measured faster at equal FVU (`AUTO_SCREENS_ON`
    there; none yet), else exact."""
    batch_size: int = 4096
    """Activation rows per optimiser step."""
    total_tokens: int | None = None
    """Rows to train on; None = one pass over the store. More than the store means several shuffled epochs."""
    lr: float | None = None
    """Peak learning rate; None = `2e-4 / sqrt(d_sae / 2**14)`."""
    beta1: float = 0.9
    """Adam beta1."""
    beta2: float = 0.999
    """Adam beta2."""
    eps: float = 1e-8
    """Adam epsilon."""
    lr_warmup_steps: int = 50
    """Linear LR warm-up from 0 over this many steps (capped at 10% of the run)."""
    lr_decay: Literal["none", "linear", "cosine"] = "linear"
    """LR decay to 0 after `lr_decay_start` of the run."""
    lr_decay_start: float = 0.8
    """Fraction of the run after which the LR decays (Anthropic: the last 20%)."""
    sparsity_coefficient: float | None = None
    """L1/L0 weight for relu/jumprelu/gated; None = the SAEConfig default."""
    sparsity_warmup_frac: float = 0.05
    """Fraction of the run over which the sparsity coefficient ramps linearly from 0 to its value."""
    aux_k: int | None = None
    """Dead latents used by the aux-k loss (topk/batchtopk); None = d_in // 2."""
    aux_k_coefficient: float = 1 / 32
    """Weight of the aux-k loss (OpenAI: 1/32); 0 disables it."""
    dead_tokens: int | None = None
    """A latent is dead when it has not fired for this many rows. None = min(10M, total_tokens // 10,
    at least one batch): OpenAI's 10M tokens, scaled down so short runs can see dead latents at all."""
    resample_every: int | None = None
    """ReLU only: resample dead latents every N steps (Anthropic). None = at 25/50/75% of the run for relu,
    never for other architectures; 0 = never."""
    normalization: Literal["none", "expected_norm"] = "expected_norm"
    """Input normalisation fitted on a sample; `expected_norm` scales rows to mean norm sqrt(d_in)."""
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
    """How b_dec is initialised from the sample."""
    init_sample: int = 8192
    """Rows sampled from the store to fit the input scale and b_dec."""
    normalize_decoder: bool = True
    """Keep decoder rows unit-norm: project out the parallel gradient, then renormalise after each step."""
    seed: int = 0
    """Seed for initialisation, data order and resampling."""
    log_every: int = 10
    """Steps between metric lines in train_log.jsonl."""
    checkpoint_every: int = 100
    """Steps between atomic checkpoints (one is always written at the end)."""
    num_threads: int | None = None
    """torch CPU threads; None leaves torch's setting alone."""
    tensorboard: bool = False
    """Also log to TensorBoard (out/tb) when `torch.utils.tensorboard` is importable."""
    wandb: bool = False
    """Also log to wandb in offline mode when wandb is importable."""
    quiet: bool = False
    """No progress bar."""

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise SAEConfigError(f"batch_size must be positive, got {self.batch_size}")
        if self.expansion <= 0 and self.d_sae is None:
            raise SAEConfigError(f"expansion must be positive, got {self.expansion}")
        if self.total_tokens is not None and self.total_tokens < self.batch_size:
            raise SAEConfigError(
                f"total_tokens={self.total_tokens} is less than one batch ({self.batch_size}); "
                "raise --total-tokens or lower --batch-size"
            )
        if not 0.0 <= self.lr_decay_start <= 1.0:
            raise SAEConfigError(f"lr_decay_start is a fraction in [0, 1], got {self.lr_decay_start}")
        if not 0.0 <= self.sparsity_warmup_frac <= 1.0:
            raise SAEConfigError(
                f"sparsity_warmup_frac is a fraction in [0, 1], got {self.sparsity_warmup_frac}"
            )
        if self.lr is not None and self.lr <= 0:
            raise SAEConfigError(f"lr must be positive, got {self.lr}")
        if self.log_every <= 0 or self.checkpoint_every <= 0:
            raise SAEConfigError("log_every and checkpoint_every must be positive")
        if needs_k(self.arch) and not self.k:
            raise SAEConfigError(f"arch={self.arch!r} needs --k (active latents per row), e.g. --k 32")

    #: fields that do not change the numbers a run produces (may differ when resuming)
    COSMETIC = (
        "quiet",
        "tensorboard",
        "wandb",
        "num_threads",
        "log_every",
        "checkpoint_every",
        "acts",
        "out",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SAEConfigError(f"unknown train config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
