"""Screened TopK encoder: rank latents with a cheap matmul, keep the exact top k of the best k + margin.

The dense fp32 encoder matmul `[batch, d_in] x [d_in, d_sae]` is most of a TopK training step, but only the
k winners of each row are used. So:

1. screen: one bf16 matmul (AMX tiles: ~4-6x the fp32 GEMM on a Xeon with AMX), or `x_c` quantised per
   row and `W_enc` per tensor to int8 (symmetric, scale = max|.| / 127), one int8 matmul with int32
   accumulation (`torch._int_mm`) plus the bias in the same integer units: ranking keys, never
   dequantised. Which backend is faster is measured, not read off CPU flags (`encoder_choice`);
2. candidates: the top `k + margin` latents of each row by those keys;
3. re-score: their exact fp32 pre-activations (a gather-dot against the latent-major `W_enc`), and the
   exact top k among them. The values, hence the reconstruction and every gradient, are exact for the
   chosen latents; the backward is the sparse one of `saekit.sae.kernels`.

The selection is wrong for a row only when one of its exact top k is outside the candidates (a *miss*).
Each step `check_rows` rows are also encoded exactly and compared; the margin doubles as soon as the
windowed miss rate exceeds `bound` and shrinks by a quarter after a long window well under it, so the
measured rate stays under the bound (1% of rows by default; a missed latent is almost always a near-tie
with the one chosen instead). Aux-k dead latents are ranked by the approximation and re-scored exactly.

`saekit.sae.encoder_choice.configure_encoder(sae, mode, batch)` is the trainer's switch: it resolves the
mode (`auto` times exact and each screen at the run's shapes and screens only where that is faster).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.profiler import record_function

from saekit.errors import SAEConfigError
from saekit.sae.biased_gemm import biased_gemm
from saekit.sae.kernels import _gather_dot
from saekit.sae.screened_topk import Selection, dead_topk, no_aux, topk_rows


def quantize_rows(t_RD: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per row: `(q [R, D] int8, scale [R])` with `t ~ q * scale[:, None]`."""
    scale = t_RD.abs().amax(1).clamp_min(1e-30) / 127
    return torch.round(t_RD / scale[:, None]).to(torch.int8), scale


class Screener:
    """Cheap-matmul screening with exact re-scoring and a margin that adapts to the measured miss rate.

    State (margin, window counts, totals) is small and deterministic (checked rows are the first
    `check_rows` of each batch), so `state_tensor` / `load_state_tensor` make resumed runs bit-exact.
    """

    def __init__(
        self,
        *,
        margin: int = 16,
        bound: float = 0.01,
        check_rows: int = 32,
        backend: str = "int8",
        min_margin: int = 4,
    ):
        if backend not in ("int8", "float16", "bfloat16"):
            raise SAEConfigError(f"screen backend {backend!r}: choose int8, float16 or bfloat16")
        if not 0 < bound < 1:
            raise SAEConfigError(f"screen miss-rate bound must be in (0, 1), got {bound}")
        self.margin, self.bound, self.check_rows = int(margin), float(bound), int(check_rows)
        self.backend, self.min_margin = backend, int(min_margin)
        self.decide_rows = math.ceil(10 / self.bound)  # rows per "well under the bound" decision
        self.win_rows = self.win_miss = 0
        self.total_rows = self.total_miss = self.total_latent_miss = 0
        self.steps = 0

    # -- the screen -----------------------------------------------------------------------------
    def screen_keys(self, x_c_BD: Tensor, W_FD: Tensor, b_enc_F: Tensor) -> Tensor:
        """Per-row ranking keys `[batch, d_sae]` that order latents like `x_c W_enc + b_enc` (roughly).

        int8: `x_c` per row, `W_enc` per tensor, int32 accumulation, the bias added in the same integer
        units (at the median row scale), no dequantisation pass: ranking within a row ignores the row's
        positive scale. fp16/bf16: the matmul (bias fused) in that dtype, keys in that dtype.
        """
        with record_function("saekit.screen"):
            B, D = x_c_BD.shape
            cuda_shape_ok = B > 16 and D % 8 == 0 and W_FD.shape[0] % 8 == 0  # cuBLASLt int8 limits
            if self.backend != "int8" or (x_c_BD.is_cuda and not cuda_shape_ok):
                dt = getattr(torch, self.backend) if self.backend != "int8" else torch.float16
                # keys stay in the low dtype: top-k ranks them there (a float() pass would cost as much
                # as the bf16 matmul itself on an AMX CPU)
                return biased_gemm("screen_keys", x_c_BD, W_FD, b_enc_F, dt)
            xq, sx = quantize_rows(x_c_BD)
            sw = W_FD.abs().amax().clamp_min(1e-30) / 127
            wq = torch.mul(W_FD, 1 / sw).round_().to(torch.int8)
            keys = torch._int_mm(xq, wq.T)
            return keys.add_(torch.round(b_enc_F / (sx.median() * sw)).to(torch.int32))

    def rescore(self, x_c_BD: Tensor, W_FD: Tensor, b_enc_F: Tensor, idx_BS: Tensor) -> Tensor:
        """Exact fp32 pre-activations of the given latents, `[batch, S]`."""
        with record_function("saekit.rescore"):
            return _gather_dot(x_c_BD, W_FD, idx_BS).add_(b_enc_F[idx_BS])

    def select(
        self, x_c_BD: Tensor, W_enc_DF: Tensor, b_enc_F: Tensor, k: int, dead_F: Tensor | None, k_aux: int
    ) -> Selection:
        """The exact top k of the screened candidates (+ aux-k dead latents, re-scored exactly)."""
        W_FD = W_enc_DF.T if W_enc_DF.T.is_contiguous() else W_enc_DF.T.contiguous()
        keys = self.screen_keys(x_c_BD, W_FD, b_enc_F)
        n_cand = min(k + self.margin, W_FD.shape[0])
        _, cand = topk_rows(keys, n_cand)
        exact_c = self.rescore(x_c_BD, W_FD, b_enc_F, cand)
        pre_k, j = exact_c.topk(k, dim=-1, sorted=False)
        idx = cand.gather(1, j)
        self.check(x_c_BD, W_enc_DF, b_enc_F, pre_k, idx)
        vals = pre_k.relu()
        if dead_F is None or k_aux <= 0 or not bool(dead_F.any()):
            return Selection(vals, idx, *no_aux(vals, idx))
        n_dead = int(dead_F.sum())
        _, a_cand = dead_topk(keys, dead_F, k_aux + self.margin)  # same screen, same margin
        a_pre = self.rescore(x_c_BD, W_FD, b_enc_F, a_cand)
        a_vals, j = a_pre.topk(min(k_aux, n_dead), dim=-1, sorted=False)
        return Selection(vals, idx, a_vals.relu_(), a_cand.gather(1, j))

    # -- miss rate and margin -------------------------------------------------------------------
    @torch.no_grad()
    def check(
        self, x_c_BD: Tensor, W_enc_DF: Tensor, b_enc_F: Tensor, pre_k_BK: Tensor, idx_BK: Tensor
    ) -> None:
        """Encode the first `check_rows` rows exactly, count misses, adapt the margin."""
        r = min(self.check_rows, x_c_BD.shape[0])
        if r == 0:
            return
        with record_function("saekit.screen_check"):
            rows, latent_misses = count_misses(
                torch.addmm(b_enc_F, x_c_BD[:r], W_enc_DF), pre_k_BK[:r], idx_BK[:r]
            )
        self.update(r, rows, latent_misses, W_enc_DF.shape[1] - pre_k_BK.shape[1])

    def update(self, n_rows: int, n_miss: int, n_latent_miss: int, max_margin: int) -> None:
        """Record one step's check and move the margin (the controller; deterministic)."""
        self.steps += 1
        self.total_rows += n_rows
        self.total_miss += n_miss
        self.total_latent_miss += n_latent_miss
        self.win_rows += n_rows
        self.win_miss += n_miss
        if self.win_miss >= 2 and self.win_miss > self.bound * self.win_rows:
            self.margin = min(max(2 * self.margin, self.min_margin), max_margin)
            self.win_rows = self.win_miss = 0
        elif self.win_rows >= self.decide_rows:
            if self.win_miss <= self.bound * self.win_rows / 4:
                self.margin = max(self.min_margin, self.margin * 3 // 4)
            self.win_rows = self.win_miss = 0

    @property
    def miss_rate(self) -> float:
        """Fraction of checked rows whose selected set was not an exact top-k set."""
        return self.total_miss / max(self.total_rows, 1)

    def summary(self) -> dict[str, float]:
        return {
            "miss_rate": self.miss_rate,
            "latent_miss_rate": self.total_latent_miss / max(self.total_rows, 1),
            "margin": float(self.margin),
            "checked_rows": float(self.total_rows),
        }

    # -- checkpoint state -----------------------------------------------------------------------
    _STATE = ("margin", "win_rows", "win_miss", "total_rows", "total_miss", "total_latent_miss", "steps")

    def state_tensor(self) -> Tensor:
        return torch.tensor([getattr(self, n) for n in self._STATE], dtype=torch.int64)

    def load_state_tensor(self, t: Tensor) -> None:
        for name, v in zip(self._STATE, t.tolist(), strict=True):
            setattr(self, name, int(v))


@torch.no_grad()
def count_misses(exact_pre_RF: Tensor, pre_k_RK: Tensor, idx_RK: Tensor) -> tuple[int, int]:
    """(rows whose chosen set is not a top-k set, exact top-k latents with a positive value left out).

    A row misses when its exact k-th value (after ReLU) beats the smallest chosen value by more than float
    rounding; ties and latents that ReLU would zero anyway are not misses.
    """
    k = idx_RK.shape[1]
    top_v, top_i = exact_pre_RF.topk(k, dim=-1, sorted=False)
    kth = top_v.amin(1).clamp_min(0)
    tol = 1e-5 * exact_pre_RF.abs().amax(1).clamp_min(1.0)
    chosen_min = pre_k_RK.amin(1).clamp_min(0)
    row_miss = kth > chosen_min + tol
    chosen = torch.zeros_like(exact_pre_RF, dtype=torch.bool).scatter_(1, idx_RK, True)
    left_out = ~chosen.gather(1, top_i) & (top_v > chosen_min[:, None] + tol[:, None]) & (top_v > 0)
    return int(row_miss.sum()), int(left_out.sum())


def int8_matmul_available(device: torch.device) -> bool:
    """`torch._int_mm` runs here (CPU builds with it, CUDA from sm_75)."""
    try:
        a = torch.ones(32, 32, dtype=torch.int8, device=device)
        return bool(torch._int_mm(a, a)[0, 0] == 32)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


@torch.no_grad()
def latent_major_(sae) -> None:
    """Store `W_enc [d_in, d_sae]` latent-major (a transposed view of a `[d_sae, d_in]` tensor).

    Same values and shape; the sparse backward's `W_enc` gradient is produced latent-major, so autograd
    no longer copies it into a column layout every step, and the screen's gather-dot reads rows. Call
    before building the optimiser (its state follows the parameter's layout).
    """
    W = sae.W_enc
    if W.T.is_contiguous():
        return
    sae.W_enc = torch.nn.Parameter(W.detach().T.contiguous().T, requires_grad=W.requires_grad)


@torch.no_grad()
def match_state_layout_(opt: torch.optim.Optimizer) -> None:
    """Give optimiser state tensors their parameter's memory layout (after `load_state_dict`).

    A loaded state is contiguous; a latent-major `W_enc` is not. Fused Adam pairs elements by storage
    order, so mismatched layouts would silently mix up elements.
    """
    for p, state in opt.state.items():
        for key, v in state.items():
            if isinstance(v, Tensor) and v.shape == p.shape and v.stride() != p.stride():
                state[key] = torch.empty_like(p).copy_(v)
