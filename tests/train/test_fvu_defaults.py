"""The training defaults chosen for FVU at equal tokens (docs/results/fvu_vs_sparsify.md): the encoder
starts at 1/sqrt(3) of the decoder's norm (sparsify's nn.Linear init; on SmolLM2 layer 15 it alone closed
the 17% FVU gap to sparsify), which must train to a clearly lower FVU than the unit-norm tied start."""

from __future__ import annotations

import math

import torch

from saekit.train import TensorSource, TrainConfig, Trainer


def _rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(512, 64, generator=g)
    basis /= basis.norm(dim=-1, keepdim=True)
    codes = torch.rand(8192, 512, generator=g).pow(12) * 5  # sparse non-negative codes over 512 atoms
    return codes @ basis + 0.05 * torch.randn(8192, 64, generator=g) + 3


def test_default_encoder_scale_trains_faster_than_a_unit_tied_encoder(tmp_path):
    torch.set_num_threads(1)
    src = TensorSource(_rows())
    base = dict(arch="topk", k=8, d_sae=1024, batch_size=256, total_tokens=256 * 60, quiet=True, seed=1)
    default = TrainConfig.flat(init_sample=2048, **base)
    sae = Trainer(default, src, out=tmp_path / "d")._fresh()
    ratio = sae.W_enc.norm(dim=0) / sae.W_dec.norm(dim=1)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 1 / math.sqrt(3)), rtol=1e-5, atol=1e-6)
    fvu_default = Trainer(default, src, out=tmp_path / "default").run().metrics["fvu"]
    unit = default.replace(init_encoder_scale=1.0)
    fvu_unit = Trainer(unit, src, out=tmp_path / "unit").run().metrics["fvu"]
    # measured 0.455 vs 0.599 after 60 steps: a default that loses the effect fails here
    assert fvu_default < 0.85 * fvu_unit
