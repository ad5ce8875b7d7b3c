"""When and which dormant latents are revived: resampling defaults per architecture, and a bias nudge.

ReLU (Anthropic): resample latents dead for `dead_tokens` rows at 25/50/75% of the run.

TopK: a latent that stops winning the top-k gets no gradient from the reconstruction loss, and with the
small default encoder init (`init_encoder_scale` 1/sqrt(3)) the ones that never train stay random while
trained ones align with the data. Measured on SmolLM2 layer 15 the latents that never fire keep positive
pre-activations just under the top-k threshold (gap ~0.03), so aux-k's ReLU is not what stops them; aux-k
at a short dead threshold pushed them further down. Resampling them towards badly reconstructed rows
(`saekit.train.resample`) after `32 * d_sae / k` rows without firing (32x the average latent's interval),
every half of that, during the first part of the run, cut never-firing latents ~5x below sparsify's and
lowered FVU by ~10% at the same tokens (docs/results/fvu_vs_sparsify.md).

`nudge_dormant_bias_` raises a dormant latent's encoder bias a fixed step per optimiser step until it
fires again. Alone it cut never-firing latents at unchanged FVU; after resampling stops it keeps the
weakest revived latents from dying (3 epochs: 60 -> 18 never firing, FVU 0.186 -> 0.187).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from saekit.errors import SAEConfigError
from saekit.sae.registry import architectures, get_class

#: TopK latents are dormant after this many times the rows the average latent takes to fire (d_sae / k)
TOPK_DORMANT_INTERVALS = 32
#: TopK resampling stops after this fraction of the run (later revivals have too few steps to train)
TOPK_RESAMPLE_UNTIL = 0.5
#: TopK bias nudge per step for dormant latents (after resampling stops it keeps them from dying)
TOPK_BIAS_STEP = 0.005


@dataclass(frozen=True)
class RevivePlan:
    """Resampling schedule of one run."""

    every: int
    """Steps between resamplings; 0 = never."""
    until_step: int
    """Resample only at steps below this."""
    dormant_rows: int
    """A latent is dormant (resampled, nudged) after this many rows without firing."""
    bias_step: float = 0.0
    """Encoder-bias step per optimiser step for dormant latents; 0 = off."""

    def resample_at(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0 and step < self.until_step


def revive_plan(cfg, total_steps: int, dead_tokens: int, d_sae: int) -> RevivePlan:
    """The schedule from `TrainConfig` (None fields take the architecture's default, see the module)."""
    revival = get_class(cfg.arch).revival
    if revival == "resample_dormant":
        default_rows = min(dead_tokens, TOPK_DORMANT_INTERVALS * d_sae // int(cfg.sae.k))
        rows = int(cfg.revive_tokens) if cfg.revive_tokens is not None else default_rows
        every = cfg.resample_every if cfg.resample_every is not None else max(1, rows // (2 * cfg.batch_size))
        until = cfg.resample_until if cfg.resample_until is not None else TOPK_RESAMPLE_UNTIL
        bias = cfg.revive_bias_step if cfg.revive_bias_step is not None else TOPK_BIAS_STEP
    else:
        rows = int(cfg.revive_tokens) if cfg.revive_tokens is not None else dead_tokens
        dead_default = max(1, total_steps // 4) if revival == "resample_dead" else 0
        every = cfg.resample_every if cfg.resample_every is not None else dead_default
        until = cfg.resample_until if cfg.resample_until is not None else 1.0
        bias = cfg.revive_bias_step or 0.0
        if every and revival == "aux_k":
            raise SAEConfigError(
                f"--resample-every is for SAEs that resample latents ({', '.join(resampling_archs())}); "
                f"arch={cfg.arch!r} revives latents with aux-k"
            )
    return RevivePlan(int(every), int(total_steps * until + 0.5), rows, float(bias))


def resampling_archs() -> list[str]:
    """The registered architectures whose training resamples latents (not aux-k alone)."""
    return [a for a in architectures() if get_class(a).revival != "aux_k"]


@torch.no_grad()
def nudge_dormant_bias_(sae, dormant_F: Tensor, step: float) -> int:
    """`b_enc[j] += step` for every dormant latent j; returns how many were nudged."""
    n = int(dormant_F.sum())
    if n:
        sae.b_enc.add_(dormant_F.to(sae.b_enc.dtype) * step)
    return n
