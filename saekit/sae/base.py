"""The shared SAE interface: parameters, normalisation, encode/decode, decoder constraints.

Architectures subclass `SAE` and implement `activation` (inference latents from pre-activations) and
`forward` (training losses). Everything else — shape checks, dtype handling, input normalisation,
decoder geometry, save/load — lives here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from saekit.errors import NonFiniteError, SAEConfigError, ShapeError
from saekit.sae.config import LAYER_NORM_EPS, SAEConfig
from saekit.sae.output import LossTerms, SAEOutput


class SAE(nn.Module):
    """Sparse autoencoder base class. Layout: `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`."""

    arch: ClassVar[str] = ""
    #: True for architectures whose natural latent form is `(values, indices)` (TopK family).
    sparse_native: ClassVar[bool] = False
    #: True for architectures whose latents may be negative (a latent is active when it is non-zero).
    signed_latents: ClassVar[bool] = False
    #: True where training runs on the sparse kernels (`saekit.sae.kernels`): the encoder is stored
    #: latent-major and an encoder screen (`saekit.sae.screened`) may choose the latents.
    sparse_training: ClassVar[bool] = False
    #: True where a training row's latents depend on the other rows of the batch (BatchTopK): under
    #: torchrun the selection must see the global batch (`bind_batch_group`).
    batch_dependent: ClassVar[bool] = False
    #: How training revives latents that stop firing (`saekit.train.revive`): "aux_k" (the loss alone),
    #: "resample_dead" (Anthropic's resampling of dead latents at fixed points of the run) or
    #: "resample_dormant" (resample latents that lost the top-k, early in the run, plus a bias nudge).
    revival: ClassVar[str] = "aux_k"
    #: True for Matryoshka SAEs: prefixes of the latent order reconstruct on their own (`cfg.matryoshka`).
    nested: ClassVar[bool] = False
    #: True where the architecture can be a transcoder (`cfg.transcode`: encode a module's input, predict
    #: its output): its training forward takes `target=` and compares the prediction with it.
    transcodes: ClassVar[bool] = False

    def __init__(self, cfg: SAEConfig, device: torch.device | str | None = None):
        super().__init__()
        self.cfg = cfg
        dt = cfg.torch_dtype
        d_out = cfg.output_width  # d_in, except for a transcoder with its own d_out
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae, dtype=dt, device=device))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dt, device=device))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, d_out, dtype=dt, device=device))
        self.b_dec = nn.Parameter(torch.zeros(d_out, dtype=dt, device=device))
        # Saved with the weights so a loaded SAE works on raw activations (SAELens #381 loses this).
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float32, device=device))
        if cfg.transcode:  # the predicted output's own normalisation factor, saved likewise
            self.register_buffer("output_scale", torch.ones((), dtype=torch.float32, device=device))
        if cfg.skip_connection:  # skip transcoders: output += x @ W_skip (zero at init, as sparsify's)
            self.W_skip = nn.Parameter(torch.zeros(cfg.d_in, d_out, dtype=dt, device=device))
        self._init_extra(device)
        from saekit.sae.init import reset_parameters_

        reset_parameters_(self)

    # -- hooks for subclasses -------------------------------------------------------------------
    def _init_extra(self, device) -> None:
        """Create architecture-specific parameters/buffers (called before initialisation)."""

    def activation(self, pre_BF: Tensor) -> Tensor:
        """Inference-time latents from pre-activations `[batch, d_sae]`."""
        raise NotImplementedError

    # -- properties -----------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def d_out(self) -> int:
        """Width of the decoder's output: d_in for an SAE, the predicted module output's for a transcoder."""
        return self.cfg.output_width

    @property
    def out_scale(self) -> Tensor:
        """The factor between raw and normalised outputs: `output_scale` (transcoder) or `input_scale`."""
        return self.output_scale if self.cfg.transcode else self.input_scale

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    # -- input handling -------------------------------------------------------------------------
    def check_input(self, x: Tensor, what: str = "activations") -> None:
        """Raise ShapeError unless `x` is `[..., d_in]`."""
        if x.ndim == 0 or x.shape[-1] != self.d_in:
            raise ShapeError(
                f"{what} have shape {tuple(x.shape)} but this {self.arch} SAE expects [..., d_in={self.d_in}]"
                f"; is the SAE trained for this hook point / model? (SAE provenance: "
                f"model={self.cfg.provenance.model!r}, hook={self.cfg.provenance.hook_point!r})"
            )

    @property
    def decode_needs_input(self) -> bool:
        """True when decode must see the input row (per-row layer norm, or a skip term)."""
        return self.cfg.normalization == "layer_norm" or self.cfg.skip_connection

    def skip_term(self, x_n_BD: Tensor) -> Tensor | None:
        """A transcoder's skip term in normalised units, `x_n @ W_skip [batch, d_out]`; None without one."""
        if not (self.cfg.transcode and self.cfg.skip_connection):
            return None
        return x_n_BD @ self.W_skip

    def with_skip(self, out_n_BD: Tensor, x_n_BD: Tensor) -> Tensor:
        """The normalised decoder output plus a skip transcoder's skip term (unchanged without one)."""
        skip = self.skip_term(x_n_BD)
        return out_n_BD if skip is None else out_n_BD + skip

    def normalize_input(self, x: Tensor) -> Tensor:
        """Cast to the SAE dtype and apply the saved input scale (or the per-row layer norm)."""
        x = x.to(dtype=self.dtype, device=self.device)
        if self.cfg.normalization == "layer_norm":
            mu, std = row_stats(x)
            return (x - mu) / (std + LAYER_NORM_EPS)
        return x * self.input_scale.to(self.dtype)

    def to_raw(self, out_n: Tensor, x: Tensor | None) -> Tensor:
        """Decoder output in normalised units -> raw units; `x [..., d_in]` is the input row when
        `decode_needs_input` (its mean/std are restored, its skip term added)."""
        if not self.decode_needs_input:
            return out_n / self.out_scale.to(self.dtype)
        if x is None:
            raise ShapeError(
                f"this SAE ({self._input_dependence()}) reconstructs from latents and the input row: "
                "call decode(latents, x) with the activations the latents came from"
            )
        self.check_input(x, "decode's input rows")
        x = x.reshape(-1, self.d_in).to(dtype=self.dtype, device=self.device)
        if self.cfg.transcode:  # the skip term belongs to the normalised prediction
            return (out_n + self.skip_term(self.normalize_input(x))) / self.out_scale.to(self.dtype)
        out = out_n
        if self.cfg.normalization == "layer_norm":
            mu, std = row_stats(x)
            out = out * std + mu
        else:
            out = out / self.input_scale.to(self.dtype)
        if self.cfg.skip_connection:
            out = out + x @ self.W_skip
        return out

    def delta_to_raw(self, delta_n: Tensor, x: Tensor) -> Tensor:
        """A difference of decoder outputs (normalised units) in raw units, for input rows `x`: divided by
        the input scale, or times each row's std for layer_norm (means and skip terms cancel)."""
        if self.cfg.normalization == "layer_norm":
            return delta_n * row_stats(x.to(dtype=self.dtype, device=self.device))[1]
        return delta_n / self.out_scale.to(self.dtype)

    def _input_dependence(self) -> str:
        parts = ["normalization='layer_norm'"] if self.cfg.normalization == "layer_norm" else []
        return ", ".join(parts + (["a skip connection"] if self.cfg.skip_connection else []))

    def pre_activation(
        self, x_BD: Tensor, features: Tensor | list[int] | None = None, *, raw: bool = False
    ) -> Tensor:
        """`(x - b_dec) W_enc + b_enc`: the value a latent takes wherever it fires (`[..., d_sae]`); a
        transcoder's encoder takes `x` itself (its b_dec is in the output's space).

        Input is normalised (as inside `encode`) unless `raw=True`, which applies the SAE's input
        normalisation (`normalize_input`) first. `features` keeps only those latents (`[..., n]`,
        computing only their encoder columns), which is what a feature maximiser differentiates:
        unlike a TopK or JumpReLU activation it still has a gradient where the feature does not fire.
        """
        if raw:
            self.check_input(x_BD)
            x_BD = self.normalize_input(x_BD)
        W, b = self.W_enc, self.b_enc
        if features is not None:
            f = torch.as_tensor(features, dtype=torch.long, device=W.device).reshape(-1)
            W, b = W[:, f], b[f]
        if self.cfg.transcode:
            return x_BD @ W + b
        return (x_BD - self.b_dec) @ W + b

    def decode_normalized(self, latents_BF: Tensor) -> Tensor:
        return latents_BF @ self.W_dec + self.b_dec

    # -- public API -----------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Dense latents `[..., d_sae]` for raw activations `[..., d_in]` (inference behaviour)."""
        self.check_input(x)
        lead = x.shape[:-1]
        x_BD = self.normalize_input(x.reshape(-1, self.d_in))
        return self.encode_normalized(x_BD).reshape(*lead, self.d_sae)

    def encode_normalized(self, x_n_BD: Tensor) -> Tensor:
        """Inference latents from already-normalised input (override when not a function of pre-acts)."""
        return self.activation(self.pre_activation(x_n_BD))

    def decode(self, latents: Tensor, x: Tensor | None = None) -> Tensor:
        """Reconstruction `[..., d_in]` (a transcoder's prediction `[..., d_out]`) in raw units from dense
        latents `[..., d_sae]`.

        `x` (the input rows the latents came from) is needed only when `decode_needs_input`: a
        per-row layer-norm SAE restores each row's mean and std, a skip SAE adds `x @ W_skip`."""
        if latents.ndim == 0 or latents.shape[-1] != self.d_sae:
            raise ShapeError(f"latents have shape {tuple(latents.shape)} but this SAE has d_sae={self.d_sae}")
        lead = latents.shape[:-1]
        out = self.decode_normalized(latents.reshape(-1, self.d_sae).to(self.dtype))
        x_BD = None if x is None else x.reshape(-1, x.shape[-1])
        return self.to_raw(out, x_BD).reshape(*lead, self.d_out)

    def reconstruct(self, x: Tensor) -> Tensor:
        """`decode(encode(x), x)` at inference (for a transcoder: its prediction of the module's output)."""
        return self.decode(self.encode(x), x)

    def forward(
        self, x: Tensor, *, dead_mask: Tensor | None = None, sparsity_scale: float = 1.0
    ) -> SAEOutput:
        raise NotImplementedError

    # -- shared loss helpers --------------------------------------------------------------------
    def _prepare_pair(self, x: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """`(x_n, y_n)`: the normalised input and what the training loss compares the output with — the
        input itself for an SAE, the module's output `target [batch, d_out]` (times `output_scale`) for a
        transcoder."""
        x_n = self._prepare_batch(x)
        if not self.cfg.transcode:
            if target is not None:
                raise SAEConfigError(
                    "forward(x, target=...) is for transcoders (cfg.transcode); an SAE reconstructs its input"
                )
            return x_n, x_n
        if target is None:
            raise ShapeError(
                "a transcoder trains on pairs: call forward(x, target=y) with the module's output rows y "
                f"[batch, d_out={self.d_out}] (inference: reconstruct(x) predicts them)"
            )
        if target.shape[-1] != self.d_out or target.numel() // self.d_out != x_n.shape[0]:
            raise ShapeError(
                f"transcoder target has shape {tuple(target.shape)}; expected "
                f"[{x_n.shape[0]}, d_out={self.d_out}] (one output row per input row)"
            )
        y_n = target.reshape(-1, self.d_out).to(dtype=self.dtype, device=self.device)
        return x_n, y_n * self.output_scale.to(self.dtype)

    def _prepare_batch(self, x: Tensor) -> Tensor:
        if self.cfg.normalization == "layer_norm" or (self.cfg.skip_connection and not self.cfg.transcode):
            raise SAEConfigError(
                f"forward() (the training pass) does not support SAEs with {self._input_dependence()} "
                "(imported for inference); use encode(x) and decode(latents, x)"
            )
        self.check_input(x)
        if x.ndim != 2:
            x = x.reshape(-1, self.d_in)
        return self.normalize_input(x)

    @staticmethod
    def recon_loss(recon_n_BD: Tensor, x_n_BD: Tensor) -> Tensor:
        """Mean over rows of the squared error summed over d_in (normalised space)."""
        return (recon_n_BD - x_n_BD).pow(2).sum(-1).mean()

    def _output(
        self,
        x_n_BD: Tensor,  # what the output is compared with: the input, or a transcoder's normalised target
        recon_n_BD: Tensor,
        latents_BF: Tensor | None,
        sparse=None,
        sparsity: Tensor | None = None,
        aux: Tensor | None = None,
    ) -> SAEOutput:
        zero = recon_n_BD.new_zeros(())
        recon_l = self.recon_loss(recon_n_BD, x_n_BD)
        sparsity = zero if sparsity is None else sparsity
        aux = zero if aux is None else aux
        losses = LossTerms(recon=recon_l, sparsity=sparsity, aux=aux, total=recon_l + sparsity + aux)
        with torch.no_grad():
            if latents_BF is not None:
                nz = latents_BF != 0
                l0 = nz.sum(-1).float().mean()
                fired = nz.any(0)
            else:
                vals, idx = sparse
                nzv = vals != 0
                l0 = nzv.sum(-1).float().mean()
                fired = torch.zeros(self.d_sae, dtype=torch.bool, device=vals.device)
                fired[idx[nzv]] = True
        recon = recon_n_BD / self.out_scale.to(recon_n_BD.dtype)
        return SAEOutput(recon=recon, latents=latents_BF, sparse=sparse, losses=losses, l0=l0, fired=fired)

    # -- decoder geometry -----------------------------------------------------------------------
    def decoder_norms(self) -> Tensor:
        return self.W_dec.norm(dim=-1)

    def decoder_directions(self) -> Tensor:
        """Unit decoder directions `[d_sae, d_in]` (steering's d_j)."""
        return self.W_dec / self.decoder_norms().clamp_min(1e-12)[:, None]

    @torch.no_grad()
    def set_decoder_norm_to_unit_(self) -> None:
        self.W_dec.data /= self.decoder_norms().clamp_min(1e-12)[:, None]

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_(self, unit_rows: bool = False) -> None:
        """Project out the gradient component that would change decoder row norms.

        `unit_rows=True` promises the rows are unit already (the trainer renormalises them after every
        step), which saves the norm pass: 2 passes over the decoder instead of 3."""
        grad = self.W_dec.grad
        if grad is None:
            return
        from saekit.sae.kernels import row_dots

        # g -= (g . W / |W|^2) W, no [d_sae, d_in] temporaries
        W = self.W_dec.detach()
        parallel = row_dots(grad, W)
        if not unit_rows:
            parallel.div_(torch.linalg.vector_norm(W, dim=-1).square_().clamp_min_(1e-24))
        grad.addcmul_(W, parallel[:, None], value=-1)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        from saekit.sae.io import save_sae

        return save_sae(self, folder)

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = None) -> SAE:
        from saekit.sae.io import load_sae

        return load_sae(folder, device=device)

    def is_active(self, latents: Tensor) -> Tensor:
        """Boolean mask of active latents: non-zero (signed architectures have negative active latents)."""
        return latents != 0

    def activation_magnitude(self, latents: Tensor) -> Tensor:
        """How strongly each latent fires: `|f|` for signed architectures (a negative latent is active),
        `f` itself otherwise. Statistics, top examples and calibration rank by this."""
        return latents.abs() if self.signed_latents else latents

    def extra_repr(self) -> str:
        k = f", k={self.cfg.k}" if self.cfg.k else ""
        tc = ""
        if self.cfg.transcode:
            tc = f", transcoder d_out={self.d_out}" + (" with skip" if self.cfg.skip_connection else "")
        return f"arch={self.arch}, d_in={self.d_in}, d_sae={self.d_sae}{k}{tc}, dtype={self.cfg.dtype}"


def row_stats(x_BD: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row mean and (unbiased) std `[..., 1]`, as OpenAI's and SAELens' layer-norm preprocessing."""
    mu = x_BD.mean(-1, keepdim=True)
    return mu, (x_BD - mu).std(-1, keepdim=True)


def check_finite(x: Tensor, what: str) -> None:
    """Raise NonFiniteError naming how many rows are bad and the first one."""
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.reshape(-1, x.shape[-1]).any(-1).nonzero().flatten()
        raise NonFiniteError(
            f"{what} contain NaN/inf in {rows.numel()} row(s) (first at row {rows[0].item()}); "
            "check the model dtype (float16 overflows) or exclude those positions"
        )
