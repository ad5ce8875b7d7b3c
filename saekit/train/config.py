"""Training configuration: one frozen dataclass that is saved with checkpoints and drives `saekit train`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import tyro

from saekit.errors import SAEConfigError
from saekit.sae.registry import needs_k
from saekit.train.sae_spec import ArchName, SAESpec, check_spec, spec_names

__all__ = ["ArchName", "DEFAULT_DEAD_TOKENS", "LOG_SINKS", "LogSink", "TrainConfig", "default_lr"]

DEFAULT_DEAD_TOKENS = 10_000_000
LogSink = Literal["tensorboard", "wandb"]
LOG_SINKS: tuple[str, ...] = get_args(LogSink)
"""Where `--log` can send the metrics besides train_log.jsonl (`saekit.train.metrics`)."""


def default_lr(d_sae: int) -> float:
    """The common scaling rule `2e-4 / sqrt(d_sae / 2**14)` (OpenAI / sparsify)."""
    return 2e-4 / math.sqrt(d_sae / 2**14)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Rerunning with the same values resumes exactly.

    The SAE's own fields (`--arch`, `--k`, `--aux-k`, `--init-tied`, ...) live in the nested `sae`
    (`SAESpec`, generated from `SAEConfig`); their flags carry no `sae.` prefix, so the CLI reads flat.
    """

    acts: str = ""
    """Activation store folder to train on (made by `saekit harvest`); several comma-separated stores
    (`A,B,C`) train one SAE per store, each in `out/<store folder name>` (split across torchrun ranks)."""
    out: str = "sae"
    """Output folder: the trained SAE (native format), `train_log.jsonl` and `checkpoint/` for resuming."""
    sae: Annotated[SAESpec, tyro.conf.OmitArgPrefixes] = dataclasses.field(default_factory=SAESpec)
    """Architecture and initialisation of the SAE (every SAEConfig field except the sizes)."""
    target: Literal["in", "out"] = "in"
    """What the dictionary learns to produce. `in`: an SAE reconstructing the store's rows (a paired
    store's inputs). `out`: a transcoder, which encodes a paired store's inputs (a module's input, from
    `saekit harvest --paired`) and predicts its targets (the module's output); `--skip` adds a learned
    linear skip term `x @ W_skip` (zero at init): a skip transcoder."""
    device: str = "auto"
    """Where to train: auto (CUDA when present), cpu, cuda or cuda:N. Under torchrun, auto/cuda mean
    cuda:LOCAL_RANK."""
    expansion: int = 16
    """d_sae = expansion * d_in unless --d-sae is given."""
    d_sae: int | None = None
    """Explicit number of latents (overrides expansion)."""
    autocast: Literal["none", "bfloat16"] = "none"
    """Run the encoder matmul in bf16 (fp32 master weights) on the training device. Only faster on CPUs
    with AVX512-BF16/AMX or on GPUs; on plain AVX2 CPUs bf16 matmuls are emulated and much slower."""
    encoder: Literal["auto", "exact", "screened", "screened-bf16", "screened-int8", "screened-fp16"] = "auto"
    """TopK encoder. `exact`: one fp32 matmul ranks all latents. `screened-bf16|int8|fp16`: a cheaper matmul
    in that dtype ranks them, the top k + margin are re-scored exactly in fp32 and the exact top k of those
    kept (values and gradients exact; the margin adapts so the sampled miss rate stays under 1% of rows,
    see `saekit.sae.screened`); `screened`: the fastest screen measured here. `auto`: times exact and every
    screen at this run's shapes once per machine (cached under $SAEKIT_CACHE/probes) and screens only where
    that is at least 10% faster (`saekit.sae.encoder_choice`); the choice is printed and kept in
    train_summary.json."""
    tf32: bool = False
    """Allow TF32 tensor-core matmuls on CUDA (fp32 GEMMs several times faster, ~1e-3 relative error);
    no effect on the CPU."""
    compile: bool = False
    """Wrap the SAE in `torch.compile` (first steps slower while it compiles; needs a C++ compiler on CPU)."""
    prefetch: int = 2
    """Batches read ahead from the store in a background thread while the current step runs; 0 reads in
    the training loop. The batches and their order are the same either way."""
    cache_mb: int = 2048
    """Hold an activation store of at most this many MB (in its stored dtype) in memory while training:
    each shuffled batch is then one index_select instead of a gather from the shard files (same rows,
    same order; `saekit.train.cached`). 0 reads the files every step."""
    distributed: bool = False
    """Require a torchrun launch (`torchrun --nproc_per_node N -m saekit train ...`): one SAE trained
    data-parallel over the ranks. torchrun launches are detected without this flag; it only makes a
    plain launch an error instead of a single-process run."""
    batch_size: int = 4096
    """Activation rows per optimiser step."""
    total_tokens: int | None = None
    """Rows to train on; None = one pass over the store, but at least min(3 passes, 1M rows) (one pass over a
    small store stops far from converged; `saekit.train.convergence`). More than the store means several
    shuffled epochs."""
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
    sparsity_warmup_frac: float = 0.05
    """Fraction of the run over which the sparsity coefficient ramps linearly from 0 to its value."""
    dead_tokens: int | None = None
    """A latent is dead (and trained by aux-k) when it has not fired for this many rows. None = OpenAI's
    and sparsify's 10M. Shorter thresholds measured harmful: aux-k then pulls rare-but-alive latents down
    and more of them end up never firing (docs/results/fvu_vs_sparsify.md)."""
    resample_every: int | None = None
    """Resample dormant latents every N steps (relu and topk). None = at 25/50/75% of the run for relu; for
    topk every `revive_tokens / (2 * batch_size)` steps in the first half of the run (measured: ~10% lower
    FVU and ~5x fewer never-firing latents than sparsify at the same tokens); never for other
    architectures; 0 = never (`saekit.train.revive`)."""
    revive_tokens: int | None = None
    """Rows without firing after which a latent is dormant (resampled, or nudged by `revive_bias_step`);
    separate from `dead_tokens` (aux-k). None = `32 * d_sae / k` for topk (capped at dead_tokens), else
    dead_tokens."""
    revive_bias_step: float | None = None
    """Add this to a dormant latent's encoder bias after every step until it fires again (pre-activation
    units of the normalised input). None = 0.005 for topk, else 0 (off)."""
    resample_encoder_scale: float = 0.2
    """Resampled encoder columns start at this multiple of the mean live encoder norm (Anthropic's 0.2;
    on SmolLM2 0.1 was too weak to win a top-k and 1.0 diverged)."""
    resample_until: float | None = None
    """Resample only before this fraction of the run; None = 0.5 for topk, 1.0 for relu."""
    encoder_lr_scale: float = 1.0
    """LR multiplier for the encoder (W_enc, b_enc): Adam moves each weight ~LR per step whatever its
    size, so this changes how fast the encoder moves relative to its init without changing the init."""
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = "mean"
    """How b_dec is initialised from the sample (mean: as sparsify; measured slightly lower FVU than the
    geometric median with the default encoder scale)."""
    init_sample: int = 8192
    """Rows sampled from the store to fit the input scale and b_dec."""
    seed: int = 0
    """Seed for initialisation, data order and resampling."""
    log_every: int = 10
    """Steps between metric lines in train_log.jsonl."""
    checkpoint_every: int = 100
    """Steps between atomic checkpoints (one is always written at the end)."""
    num_threads: int | None = None
    """torch CPU threads; None leaves torch's setting alone."""
    log: Annotated[tuple[LogSink, ...], tyro.conf.UseAppendAction] = ()
    """Also send every log step's metrics (loss, FVU, L0, dead %, LR, tokens/s, ...) and the final metrics
    to TensorBoard (`out/tb`) and/or Weights & Biases (`out/wandb`, offline unless WANDB_MODE says
    otherwise): `--log tensorboard --log wandb`. train_log.jsonl is written either way. A sink whose
    package is missing stops the run at start, naming what to install (`pip install saekit[log]`)."""
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
        if self.cache_mb < 0:
            raise SAEConfigError(f"cache_mb must be >= 0, got {self.cache_mb}")
        if self.prefetch < 0:
            raise SAEConfigError(f"prefetch must be >= 0 batches, got {self.prefetch}")
        unknown_sinks = [s for s in self.log if s not in LOG_SINKS]
        if unknown_sinks:
            raise SAEConfigError(f"--log {unknown_sinks[0]!r} is not a sink; choose from {list(LOG_SINKS)}")
        self._check_revival()
        if needs_k(self.sae.arch) and not self.sae.k:
            raise SAEConfigError(f"arch={self.sae.arch!r} needs --k (active latents per row), e.g. --k 32")
        self._check_target()

    def _check_target(self) -> None:
        if self.target not in ("in", "out"):
            raise SAEConfigError(f"--target is 'in' (an SAE) or 'out' (a transcoder), not {self.target!r}")
        if self.sae.skip_connection and self.target != "out":
            raise SAEConfigError(
                "--skip (a learned linear skip term) is for transcoders: add --target out and train on a "
                "paired store (an SAE with a skip term would learn the identity map through it)"
            )
        check_spec(self.sae, transcode=self.target == "out")

    def _check_revival(self) -> None:
        if self.resample_until is not None and not 0.0 <= self.resample_until <= 1.0:
            raise SAEConfigError(f"resample_until is a fraction in [0, 1], got {self.resample_until}")
        if self.revive_tokens is not None and self.revive_tokens < 1:
            raise SAEConfigError(f"revive_tokens must be >= 1 row, got {self.revive_tokens}")
        if self.resample_encoder_scale <= 0 or self.encoder_lr_scale <= 0:
            raise SAEConfigError("resample_encoder_scale and encoder_lr_scale must be > 0")
        if self.revive_bias_step is not None and self.revive_bias_step < 0:
            raise SAEConfigError(f"revive_bias_step must be >= 0, got {self.revive_bias_step}")

    #: fields that do not change the numbers a run produces (may differ when resuming)
    COSMETIC = (
        "quiet",
        "log",  # where the metrics go, not what they are: a run may resume with other sinks
        "num_threads",
        "log_every",
        "checkpoint_every",
        "acts",
        "out",
        "device",  # changes rounding, not what is computed: a CPU run may resume on a GPU
        "tf32",
        "compile",
        "prefetch",
        "cache_mb",
        "distributed",  # the global batch (and BatchTopK's selection over it) is the same for any ranks
    )

    def __getattr__(self, name: str) -> Any:
        """Read SAE fields flat (`cfg.k` is `cfg.sae.k`), as code written before the nesting does."""
        if name in spec_names():
            return getattr(self.sae, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat_dict(self) -> dict[str, Any]:
        """Training and SAE fields side by side (the CLI's view; names do not collide)."""
        d = self.to_dict()
        return {**{k: v for k, v in d.items() if k != "sae"}, **d["sae"]}

    @classmethod
    def flat(cls, **fields: Any) -> TrainConfig:
        """From flat keywords, SAE fields beside training ones: `TrainConfig.flat(arch="topk", k=32)`."""
        return cls.from_dict(fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From `to_dict()` output, a flat dict, or a pre-nesting checkpoint's config (migrated)."""
        data = dict(data)
        sae = dict(data.pop("sae", None) or {})
        names = spec_names()
        for key in [k for k in data if k in names]:
            sae[key] = data.pop(key)
        if isinstance(sae.get("matryoshka"), list):  # from JSON: the spec holds a tuple
            sae["matryoshka"] = tuple(sae["matryoshka"])
        if sae.get("sparsity_coefficient", 0.0) is None:  # old TrainConfig: None meant SAEConfig's default
            del sae["sparsity_coefficient"]
        _migrate_log_flags(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SAEConfigError(
                f"unknown train config field(s) {unknown}; known: {sorted(known | set(names))}"
            )
        return cls(**data, sae=SAESpec(**sae))

    def replace(self, **changes: Any) -> TrainConfig:
        """`dataclasses.replace`, accepting SAE fields by name too (`cfg.replace(k=16)`)."""
        names = spec_names()
        sae = {k: changes.pop(k) for k in list(changes) if k in names}
        if sae:
            changes["sae"] = dataclasses.replace(changes.get("sae", self.sae), **sae)
        return dataclasses.replace(self, **changes)


def _migrate_log_flags(data: dict[str, Any]) -> None:
    """Configs written before `log` had the booleans `tensorboard` / `wandb`: a true one becomes a sink;
    `log` read back from JSON is a list."""
    sinks = list(data.get("log") or ())
    for name in LOG_SINKS:
        if name in data and data.pop(name) and name not in sinks:
            sinks.append(name)
    if "log" in data or sinks:
        data["log"] = tuple(sinks)
