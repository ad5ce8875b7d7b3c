"""SAE configuration: one frozen dataclass serialised to `config.json` and used for CLI flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from saekit.errors import SAEConfigError

DTYPES = ("float32", "bfloat16", "float16", "float64")
NORMALIZATIONS = ("none", "expected_norm", "layer_norm")
#: `layer_norm`'s epsilon, added to the per-row standard deviation (OpenAI's and SAELens' value).
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class Provenance:
    """Where the activations an SAE was trained on came from. Informational; never used to compute."""

    model: str | None = None
    """Model name or path the activations came from (e.g. `smollm2`)."""
    hook_point: str | None = None
    """Hook point spec, e.g. `model.layers.15` or `transformer_blocks.3@image`."""
    stream: str | None = None
    """Stream name or index for modules whose output is a tuple."""
    layer: int | None = None
    """Layer number, when the hook point has one."""
    tokens_trained: int = 0
    """Number of activation rows the SAE has been trained on."""
    model_dtype: str | None = None
    """dtype the model ran in when the activations were produced."""
    tower: str | None = None
    """Which encoder of a two-tower model (CLIP `text` or `vision`), when known."""
    source_format: str | None = None
    """The library format the SAE was converted from (`saelens`, `reny`, ...); None for native training."""
    source_name: str | None = None
    """The foreign folder or file name it was converted from (hub names carry tower/block/stream)."""
    target_hook_point: str | None = None
    """For a transcoder: the hook point whose activations it predicts (e.g. `model.layers.8.mlp`, the module
    whose input `hook_point` is, `model.layers.8.mlp:in`); None for an SAE."""


@dataclass(frozen=True)
class SAEConfig:
    """Architecture and initialisation of one sparse autoencoder.

    Weight layout (native format): `W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]`,
    `b_dec [d_in]`, scalar buffer `input_scale`. Raw activations are multiplied by `input_scale`
    before encoding and reconstructions divided by it after decoding, so a saved SAE works on raw
    activations.
    """

    d_in: int
    """Width of the activations (e.g. 576 for SmolLM2's residual stream)."""
    d_sae: int
    """Number of latents (dictionary size)."""
    arch: str = "topk"
    """Architecture: one of `saekit.sae.registry.architectures()` (topk, batchtopk, relu, jumprelu, gated,
    topk_abs, topk_signed, ...)."""
    k: int | None = None
    """Active latents per row (topk) or mean active latents per row (batchtopk)."""
    dtype: str = "float32"
    """Parameter dtype; the SAE computes in it and callers cast at the boundary."""
    aux_k: int | None = None
    """Dead latents used by the aux-k loss (topk family); None means d_in // 2."""
    aux_k_coefficient: float = 1 / 32
    """Weight of the aux-k loss (OpenAI's recipe uses 1/32)."""
    sparsity_coefficient: float = 5.0
    """L1 weight (relu, gated) or L0 weight (jumprelu). Ignored by topk/batchtopk."""
    jumprelu_bandwidth: float = 0.001
    """Width of the rectangle kernel in JumpReLU's straight-through estimator."""
    jumprelu_init_threshold: float = 0.001
    """Initial per-latent JumpReLU threshold."""
    normalize_decoder: bool = True
    """Keep decoder rows at unit norm (projected after every optimiser step)."""
    init_tied: bool = True
    """Initialise `W_enc` as `W_dec.T` (independent tensors afterwards)."""
    init_encoder_scale: float = 1.0
    """Norm of the encoder's columns at initialisation, as a multiple of the decoder rows' (tied init)."""
    init_orthonormal: bool = False
    """Initialise decoder rows as orthonormal blocks instead of random directions."""
    init_decoder_norm: float = 1.0
    """Norm of decoder rows at initialisation (ignored when normalize_decoder=True: rows are unit)."""
    normalization: Literal["none", "expected_norm", "layer_norm"] = "none"
    """Input normalisation. `expected_norm` scales inputs so the mean row norm is sqrt(d_in); the
    factor is stored as the `input_scale` buffer and saved with the weights. `layer_norm` (imported
    OpenAI / SAELens SAEs) standardises every row by its own mean and std before encoding and restores
    them after decoding, so decode needs the input row: `decode(latents, x)`."""
    matryoshka: tuple[int, ...] | None = None
    """Nested prefix sizes of a Matryoshka SAE (e.g. 1024 2048 4096 9216): the first m latents must
    reconstruct on their own for every size m, and the training loss sums those reconstructions' errors
    (d_sae is added as the last size when missing). None for a Matryoshka arch = d_sae/8, /4, /2, d_sae.
    Ignored by other architectures."""
    skip_connection: bool = False
    """A linear skip term `x @ W_skip` (`W_skip [d_in, d_out]`, initialised to zero) added to the output
    (skip transcoders); decode then needs the input row: `decode(latents, x)`. In a transcoder `x` is the
    normalised input and the term is part of the normalised prediction; in an SAE (sparsify imports only)
    it is added in raw units."""
    transcode: bool = False
    """A transcoder: encode a module's input, decode a prediction of its output (`W_dec [d_sae, d_out]`,
    `b_dec [d_out]`). The encoder takes the normalised input as it is (no `- b_dec`: b_dec lives in the
    output's space), and the output has its own saved scale, the `output_scale` buffer: the prediction in
    raw units is `(latents @ W_dec + b_dec [+ x_n @ W_skip]) / output_scale` with `x_n = x * input_scale`.
    Only architectures whose class says `transcodes` support it."""
    d_out: int | None = None
    """Width of a transcoder's output (None = d_in, e.g. an MLP's output); only with `transcode`."""
    provenance: Provenance = field(default_factory=Provenance)
    """Where the training data came from."""

    def __post_init__(self) -> None:
        self._check_sizes()
        self._check_choices()
        self._check_coefficients()
        self._check_transcoder()

    @property
    def output_width(self) -> int:
        """Width of what the decoder produces: `d_out` for a transcoder, else `d_in`."""
        return self.d_out if self.d_out is not None else self.d_in

    def _check_transcoder(self) -> None:
        from saekit.sae.registry import architectures, get_class

        if self.d_out is not None:
            if not isinstance(self.d_out, int) or isinstance(self.d_out, bool) or self.d_out <= 0:
                raise SAEConfigError(f"d_out must be a positive integer (or None), got {self.d_out!r}")
            if not self.transcode:
                raise SAEConfigError(
                    f"d_out={self.d_out} is the output width of a transcoder: set transcode=True or drop it"
                )
        if not self.transcode:
            return
        if not getattr(get_class(self.arch), "transcodes", False):
            able = [a for a in architectures() if getattr(get_class(a), "transcodes", False)]
            raise SAEConfigError(
                f"arch={self.arch!r} cannot be trained or loaded as a transcoder; transcoders are: "
                f"{', '.join(able)}"
            )
        if self.normalization == "layer_norm":
            raise SAEConfigError(
                "a transcoder cannot use normalization='layer_norm' (the per-row statistics of the input do "
                "not restore the output); use expected_norm or none"
            )
    def _check_sizes(self) -> None:
        from saekit.sae.registry import get_class, needs_k

        get_class(self.arch)  # raises, listing the registered architectures, when unknown
        for name in ("d_in", "d_sae", "k", "aux_k"):
            value = getattr(self, name)
            if value is None and name in ("k", "aux_k"):
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise SAEConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
        if self.d_in <= 0 or self.d_sae <= 0:
            raise SAEConfigError(f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}")
        if needs_k(self.arch):
            if self.k is None:
                raise SAEConfigError(f"arch={self.arch!r} needs k (active latents per row), e.g. k=32")
            if not 0 < self.k <= self.d_sae:
                raise SAEConfigError(f"k must be in [1, d_sae={self.d_sae}], got k={self.k}")
        if self.matryoshka is not None:
            sizes = list(self.matryoshka)
            if not sizes or any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in sizes):
                raise SAEConfigError(f"matryoshka sizes must be positive integers, got {self.matryoshka!r}")
            if sizes != sorted(set(sizes)) or sizes[-1] > self.d_sae:
                raise SAEConfigError(
                    f"matryoshka sizes must increase strictly and end at or below d_sae={self.d_sae}, got "
                    f"{sizes}; e.g. --matryoshka {self.d_sae // 4} {self.d_sae // 2} {self.d_sae}"
                )
        if self.aux_k is not None and self.aux_k < 1:
            raise SAEConfigError(f"aux_k must be >= 1 (or None for d_in // 2), got {self.aux_k}")

    def _check_choices(self) -> None:
        if self.dtype not in DTYPES:
            raise SAEConfigError(f"dtype {self.dtype!r} not supported; choose one of {', '.join(DTYPES)}")
        if self.normalization not in NORMALIZATIONS:
            raise SAEConfigError(
                f"normalization {self.normalization!r} not supported; choose one of "
                f"{', '.join(NORMALIZATIONS)}"
            )

    def _check_coefficients(self) -> None:
        if self.jumprelu_bandwidth <= 0:
            raise SAEConfigError(f"jumprelu_bandwidth must be > 0, got {self.jumprelu_bandwidth}")
        if self.jumprelu_init_threshold <= 0:
            raise SAEConfigError(
                "jumprelu_init_threshold must be > 0 (it is stored as a log), got "
                f"{self.jumprelu_init_threshold}"
            )
        if self.init_encoder_scale <= 0:
            raise SAEConfigError(f"init_encoder_scale must be > 0, got {self.init_encoder_scale}")
        if self.aux_k_coefficient < 0:
            raise SAEConfigError(f"aux_k_coefficient must be >= 0, got {self.aux_k_coefficient}")
        if self.sparsity_coefficient < 0:
            raise SAEConfigError(f"sparsity_coefficient must be >= 0, got {self.sparsity_coefficient}")

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        """Build from a dict, rejecting unknown keys with a message that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SAEConfigError(f"unknown SAE config field(s) {unknown}; known fields: {sorted(known)}")
        data = dict(data)
        prov = data.get("provenance") or {}
        if isinstance(prov, dict):
            pknown = {f.name for f in dataclasses.fields(Provenance)}
            bad = sorted(set(prov) - pknown)
            if bad:
                raise SAEConfigError(f"unknown provenance field(s) {bad}; known: {sorted(pknown)}")
            data["provenance"] = Provenance(**prov)
        if isinstance(data.get("matryoshka"), list):  # JSON has no tuples
            data["matryoshka"] = tuple(data["matryoshka"])
        return cls(**data)

    def replace(self, **changes: Any) -> SAEConfig:
        return dataclasses.replace(self, **changes)
