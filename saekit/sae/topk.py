"""TopK SAE: `latents = topk(relu(W_enc (x - b_dec) + b_enc))`, decode through the k active rows.

The sparse form `(values, indices)` is the native one: decoding gathers k decoder rows per token with
`embedding_bag`, so cost scales with k, not d_sae. Dead latents are revived by the aux-k loss (OpenAI,
Gao et al. 2024): the top `aux_k` dead latents reconstruct the residual the live ones leave.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from saekit.errors import ShapeError
from saekit.sae.base import SAE
from saekit.sae.kernels import topk_forward
from saekit.sae.output import SAEOutput, SparseLatents
from saekit.sae.registry import register


def sparse_decode(values_BK: Tensor, indices_BK: Tensor, W_dec_FD: Tensor) -> Tensor:
    """`sum_k values[b,k] * W_dec[indices[b,k]]` without materialising `[batch, d_sae]`."""
    return F.embedding_bag(indices_BK, W_dec_FD, per_sample_weights=values_BK.to(W_dec_FD.dtype), mode="sum")


def aux_k_loss(
    pre_BF: Tensor, residual_BD: Tensor, dead_mask_F: Tensor, W_dec_FD: Tensor, k_aux: int, coefficient: float
) -> Tensor:
    """Reconstruct the (detached) residual with the top-`k_aux` dead latents; weighted squared error.

    Returns 0 when no latent is dead. Same units as the reconstruction loss.
    """
    n_dead = int(dead_mask_F.sum())
    if n_dead == 0 or coefficient == 0:
        return residual_BD.new_zeros(())
    k = min(k_aux, n_dead)
    masked = pre_BF.masked_fill(~dead_mask_F, float("-inf"))
    vals, idx = masked.topk(k, dim=-1, sorted=False)
    vals = vals.relu()
    e_hat = sparse_decode(vals, idx, W_dec_FD)
    loss = (e_hat - residual_BD.detach()).pow(2).sum(-1).mean()
    return coefficient * loss


class TopKFamily(SAE):
    """What TopK and BatchTopK share: k active latents (per row / on average) and the aux-k count."""

    @property
    def k(self) -> int:
        return int(self.cfg.k)

    @property
    def k_aux(self) -> int:
        """Dead latents the aux-k loss uses: `cfg.aux_k`, or d_in // 2 (OpenAI's heuristic)."""
        return self.cfg.aux_k if self.cfg.aux_k is not None else max(1, self.d_in // 2)

    def dense_output(
        self,
        x_n: Tensor,
        pre_BF: Tensor,
        latents_BF: Tensor,
        dead_mask: Tensor | None,
        y_n: Tensor | None = None,
    ):
        """The dense training pass's output for chosen `latents`: decode, plus aux-k on dead latents in
        training (the variants that do not use the sparse kernel: BatchTopK, signed TopK). `y_n` is a
        transcoder's normalised target (None: the input itself); its skip term joins the prediction."""
        y_n = x_n if y_n is None else y_n
        recon_n = self.with_skip(self.decode_normalized(latents_BF), x_n)
        aux = None
        if dead_mask is not None and self.training:
            aux = aux_k_loss(
                pre_BF, y_n - recon_n, dead_mask, self.W_dec, self.k_aux, self.cfg.aux_k_coefficient
            )
        return self._output(y_n, recon_n, latents_BF, aux=aux)


@register
class TopKSAE(TopKFamily):
    arch = "topk"
    sparse_native = True
    sparse_training = True
    transcodes = True
    revival = "resample_dormant"
    #: training-time latent selector (`saekit.sae.screened.configure_encoder`); None = exact fp32 encoder
    screen = None

    def select(self, pre_BF: Tensor) -> SparseLatents:
        vals, idx = pre_BF.topk(self.k, dim=-1, sorted=False)
        return SparseLatents(vals.relu(), idx)

    def activation(self, pre_BF: Tensor) -> Tensor:
        vals, idx = self.select(pre_BF)
        return torch.zeros_like(pre_BF).scatter_(-1, idx, vals)

    def encode_sparse(self, x: Tensor) -> SparseLatents:
        """`(values [..., k], indices [..., k])` for raw activations `[..., d_in]`."""
        self.check_input(x)
        lead = x.shape[:-1]
        x_BD = self.normalize_input(x.reshape(-1, self.d_in))
        vals, idx = self.select(self.pre_activation(x_BD))
        return SparseLatents(vals.reshape(*lead, self.k), idx.reshape(*lead, self.k))

    def decode_sparse(self, values: Tensor, indices: Tensor, x: Tensor | None = None) -> Tensor:
        """Raw-unit reconstruction from the sparse form (any leading dims). `x` (the input rows) is
        needed only when `decode_needs_input` (per-row layer norm or a skip term), as in `decode`."""
        if values.shape != indices.shape or values.ndim == 0:
            raise ShapeError(
                f"decode_sparse: values {tuple(values.shape)} and indices {tuple(indices.shape)} must "
                "have the same shape [..., k]"
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.d_sae):
            raise ShapeError(
                f"decode_sparse: indices must be in [0, d_sae={self.d_sae}), found "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        lead = values.shape[:-1]
        k = values.shape[-1]
        out = sparse_decode(values.reshape(-1, k), indices.reshape(-1, k), self.W_dec) + self.b_dec
        x_BD = None if x is None else x.reshape(-1, x.shape[-1])
        return self.to_raw(out, x_BD).reshape(*lead, self.d_out)

    def forward(
        self,
        x: Tensor,
        *,
        target: Tensor | None = None,
        dead_mask: Tensor | None = None,
        sparsity_scale: float = 1.0,
    ) -> SAEOutput:
        """Training forward on the sparse fast path (`saekit.sae.kernels`): the backward touches only the
        k active (and k_aux dead) latents. Under `torch.autocast` the encoder matmul runs in its dtype;
        in training mode with a screen attached, the screen selects the latents (exact values). A
        transcoder is given `target` (the module's output rows) and predicts it (plus its skip term)."""
        x_n, y_n = self._prepare_pair(x, target)
        dev = x_n.device.type
        mm_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        if self.training and self.screen is not None:
            mm_dtype = self.screen
        use_dead = dead_mask is not None and self.training and self.cfg.aux_k_coefficient > 0
        out = topk_forward(
            x_n,
            self.W_enc,
            self.b_enc,
            self.W_dec,
            self.b_dec,
            self.k,
            dead_mask if use_dead else None,
            self.k_aux if use_dead else 0,
            mm_dtype,
            centre=not self.cfg.transcode,
        )
        recon_n = self.with_skip(out.recon_BD, x_n)
        aux = None
        if out.aux_recon_BD is not None:
            residual = (y_n - recon_n).detach()
            aux = self.cfg.aux_k_coefficient * (out.aux_recon_BD - residual).pow(2).sum(-1).mean()
        sparse = SparseLatents(out.values_BK, out.indices_BK)
        return self._output(y_n, recon_n, None, sparse=sparse, aux=aux)
