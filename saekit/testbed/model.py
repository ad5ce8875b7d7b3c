"""A small conditional flow transformer with FLUX's block structure.

- `transformer_blocks.N` (joint): text and image streams keep separate norms, adaLN modulations,
  QKV/out projections and MLPs, and attend jointly over `[text; image]`. Returns `(text, image)`.
- `single_transformer_blocks.N`: one set of weights on the concatenated sequence (attention and MLP in
  parallel, FLUX-style). Takes and returns the streams separately, `(text, image)`, like diffusers.
- adaLN conditioning vector = MLP(sinusoidal(t)) + pooled class embedding (FLUX: timestep + pooled CLIP);
  `pooled_class=False` drops the pooled class, so the class reaches the model only via the text stream.
- The "text" stream is a per-class learned prompt of `text_tokens` tokens (class 10 = null, for CFG).

`forward(..., tap=fn)` calls `fn(block_name, stream, x [B, T, d]) -> x'` on every block output, and
`fn("cond", "cond", c [B, 1, d])` on the adaLN conditioning vector (timestep + pooled class), which
is how the testbed reads and edits activations without torch hooks (hooks live in `saekit.hooks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saekit.testbed.config import TestbedConfig
from saekit.testbed.data import N_CLASSES

Tap = Callable[[str, str, Tensor], Tensor]
NULL_CLASS = N_CLASSES
"""Index of the null class used for classifier-free guidance."""


def timestep_embedding(t_B: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000 like FLUX)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t_B.device) / half)
    args = (t_B.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def modulate(x_BTD: Tensor, shift_BD: Tensor, scale_BD: Tensor) -> Tensor:
    return x_BTD * (1 + scale_BD[:, None]) + shift_BD[:, None]


def attention(q_BTD: Tensor, k_BTD: Tensor, v_BTD: Tensor, n_heads: int) -> Tensor:
    B, T, D = q_BTD.shape

    def heads(x: Tensor) -> Tensor:
        return x.reshape(B, T, n_heads, D // n_heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads(q_BTD), heads(k_BTD), heads(v_BTD))
    return out.transpose(1, 2).reshape(B, T, D)


class StreamParams(nn.Module):
    """One stream's weights inside a joint block."""

    def __init__(self, d: int, mlp_ratio: int = 4):
        super().__init__()
        self.mod = nn.Linear(d, 6 * d)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(d, mlp_ratio * d), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * d, d)
        )
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)


class JointBlock(nn.Module):
    """FLUX double-stream block: separate weights per stream, joint attention over [text; image]."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.n_heads = n_heads
        self.text = StreamParams(d, mlp_ratio)
        self.image = StreamParams(d, mlp_ratio)

    def forward(self, image_BID: Tensor, text_BTD: Tensor, cond_BD: Tensor) -> tuple[Tensor, Tensor]:
        n_text = text_BTD.shape[1]
        parts, mods = [], []
        for x, p in ((text_BTD, self.text), (image_BID, self.image)):
            m = p.mod(F.silu(cond_BD)).chunk(6, dim=-1)
            mods.append(m)
            parts.append(p.qkv(modulate(p.norm1(x), m[0], m[1])).chunk(3, dim=-1))
        q, k, v = (torch.cat([parts[0][i], parts[1][i]], dim=1) for i in range(3))
        a = attention(q, k, v, self.n_heads)
        outs = []
        for x, p, m, a_s in (
            (text_BTD, self.text, mods[0], a[:, :n_text]),
            (image_BID, self.image, mods[1], a[:, n_text:]),
        ):
            x = x + m[2][:, None] * p.proj(a_s)
            x = x + m[5][:, None] * p.mlp(modulate(p.norm2(x), m[3], m[4]))
            outs.append(x)
        return outs[0], outs[1]


class SingleBlock(nn.Module):
    """FLUX single-stream block: one set of weights, attention and MLP in parallel on [text; image]."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.n_heads = n_heads
        self.mod = nn.Linear(d, 3 * d)
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.mlp_in = nn.Linear(d, mlp_ratio * d)
        self.out = nn.Linear(d + mlp_ratio * d, d)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, image_BID: Tensor, text_BTD: Tensor, cond_BD: Tensor) -> tuple[Tensor, Tensor]:
        n_text = text_BTD.shape[1]
        x = torch.cat([text_BTD, image_BID], dim=1)
        shift, scale, gate = self.mod(F.silu(cond_BD)).chunk(3, dim=-1)
        h = modulate(self.norm(x), shift, scale)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        a = attention(q, k, v, self.n_heads)
        x = x + gate[:, None] * self.out(torch.cat([a, F.gelu(self.mlp_in(h), approximate="tanh")], dim=-1))
        return x[:, :n_text], x[:, n_text:]


class FlowTransformer(nn.Module):
    """Predicts the rectified-flow velocity `noise - x0` for image tokens `[B, T_img, patch^2]`."""

    def __init__(self, cfg: TestbedConfig):
        super().__init__()
        d, p2 = cfg.d_model, cfg.patch**2
        self.cfg = cfg
        self.x_embedder = nn.Linear(p2, d)
        self.pos_embed = nn.Parameter(torch.randn(1, cfg.n_image_tokens, d) * 0.02)
        self.prompt = nn.Parameter(torch.randn(N_CLASSES + 1, cfg.text_tokens, d) * 0.5)
        self.pooled = nn.Embedding(N_CLASSES + 1, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.transformer_blocks = nn.ModuleList(
            JointBlock(d, cfg.n_heads, cfg.mlp_ratio) for _ in range(cfg.n_joint)
        )
        self.single_transformer_blocks = nn.ModuleList(
            SingleBlock(d, cfg.n_heads, cfg.mlp_ratio) for _ in range(cfg.n_single)
        )
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mod_out = nn.Linear(d, 2 * d)
        self.proj_out = nn.Linear(d, p2)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def block_names(self) -> list[str]:
        return [f"transformer_blocks.{i}" for i in range(len(self.transformer_blocks))] + [
            f"single_transformer_blocks.{i}" for i in range(len(self.single_transformer_blocks))
        ]

    def forward(self, x_BTP: Tensor, t_B: Tensor, y_B: Tensor, tap: Tap | None = None) -> Tensor:
        """Velocity `[B, T_img, patch^2]` for noisy tokens at time `t_B` (1 = noise) and class `y_B`."""
        d = self.cfg.d_model
        cond = self.time_mlp(timestep_embedding(t_B, d))
        if self.cfg.pooled_class:
            cond = cond + self.pooled(y_B)
        if (
            tap is not None
        ):  # the conditioning vector every block's adaLN reads ("cond" site, one row per image)
            cond = tap("cond", "cond", cond[:, None, :])[:, 0]
        image = self.x_embedder(x_BTP) + self.pos_embed
        text = self.prompt[y_B]
        for i, blk in enumerate(self.transformer_blocks):
            text, image = blk(image, text, cond)
            if tap is not None:
                text, image = self._tap(tap, f"transformer_blocks.{i}", text, image)
        for i, blk in enumerate(self.single_transformer_blocks):
            text, image = blk(image, text, cond)
            if tap is not None:
                text, image = self._tap(tap, f"single_transformer_blocks.{i}", text, image)
        shift, scale = self.mod_out(F.silu(cond)).chunk(2, dim=-1)
        return self.proj_out(modulate(self.norm_out(image), shift, scale))

    @staticmethod
    def _tap(tap: Tap, name: str, text: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        return tap(name, "text", text), tap(name, "image", image)
