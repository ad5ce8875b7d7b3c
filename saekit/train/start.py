"""How a run starts: a freshly initialised SAE, or the state of the checkpoint in `out/checkpoint`.

A fresh SAE is built and initialised on the host (`build(seed=)` seeds the host generator, so the same
seed gives the same weights on every device and rank), fitted to a data sample (input scale, b_dec) and
moved to the training device. A resumed run is rebuilt empty and filled from the checkpoint after
checking that it was written by a run with the same settings on the same activation width.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from saekit.device import HOST
from saekit.errors import CheckpointError, ShapeError
from saekit.sae import SAEConfig, build
from saekit.sae.encoder_choice import configure_encoder
from saekit.sae.init import fit_input_scale_, fit_output_scale_, init_b_dec_
from saekit.sae.screened import match_state_layout_
from saekit.train import distributed as dd
from saekit.train.checkpoint import has_checkpoint, load_checkpoint
from saekit.train.config import TrainConfig
from saekit.train.dead import DeadLatentTracker
from saekit.train.state import restore_state, resume_differences
from saekit.train.step import RunState


def fresh_sae(sae_cfg: SAEConfig, cfg: TrainConfig, source, device: torch.device):
    """A new SAE: initialised from `cfg.seed`, input scale and b_dec fitted to a source sample (a
    transcoder's sample rows are `[input | target]`: its output scale and b_dec are fitted to the targets)."""
    sae = build(sae_cfg, seed=cfg.seed)
    sample = source.sample(cfg.init_sample, cfg.seed)
    width = sae_cfg.d_in + (sae_cfg.output_width if sae_cfg.transcode else 0)
    if sample.shape[-1] != width:
        raise ShapeError(f"sample rows have d={sample.shape[-1]} but the source says d={width}")
    target = None
    if sae_cfg.transcode:
        from saekit.data.paired import split_pair

        sample, target = split_pair(sample, sae_cfg.d_in)
        fit_output_scale_(sae, target)
    fit_input_scale_(sae, sample)
    init_b_dec_(sae, sample, method=cfg.b_dec_init, target=target)
    return sae.to(device)


def _check_resumable(ckpt_dir: Path, state: dict, cfg: TrainConfig, d_in: int) -> None:
    saved_d = int(state.get("d_in", d_in))
    if saved_d != d_in:
        raise ShapeError(
            f"{ckpt_dir} holds an SAE with d_in={saved_d} but the activation source has d={d_in}; "
            "point --acts at the store the run started with, or choose a new --out"
        )
    diffs = resume_differences(state.get("train_config", {}), cfg)
    if diffs:
        raise CheckpointError(
            f"{ckpt_dir} was written by a run with different settings ({'; '.join(diffs)}); rerun with "
            "the original flags to resume, or choose a new --out (or delete the checkpoint) to start over"
        )


def _encoder(cfg: TrainConfig, sae, dist: dd.DistContext, saved: str | None):
    """The encoder path of this run: the checkpoint's (a resumed run keeps its numerics), else rank 0's
    resolution of `--encoder` (which may time the candidates) on every rank."""
    from saekit.sae.encoder_choice import PATHS, resolve

    batch = dd.check_batch(cfg.batch_size, dist)
    if saved in PATHS:
        return resolve(saved, sae, batch)
    choice = resolve(cfg.encoder, sae, batch) if dist.is_main else None
    index = dd.broadcast_index(PATHS.index(choice.path) if choice else 0, dist)
    return choice if choice is not None else resolve(PATHS[index], sae, batch)


def start_run(
    cfg: TrainConfig,
    sae_cfg: SAEConfig,
    ckpt_dir: Path,
    device: torch.device,
    dist: dd.DistContext,
    tracker: DeadLatentTracker,
    new_sae: Callable[[], torch.nn.Module],
    new_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer],
) -> RunState:
    """A fresh run (`new_sae()`), or the checkpointed one in `ckpt_dir`."""
    gen = torch.Generator(device=HOST).manual_seed(cfg.seed + 1)
    if not has_checkpoint(ckpt_dir):
        torch.manual_seed(cfg.seed)
        sae = new_sae()
        dd.broadcast_module_(sae, dist)
        dd.bind_batch_group_(sae, dist)
        configure_encoder(sae, _encoder(cfg, sae, dist, None))  # after the move: measured on the device
        return RunState(sae, new_optimizer(sae), tracker, gen, 0)
    state, tensors = load_checkpoint(ckpt_dir)
    _check_resumable(ckpt_dir, state, cfg, sae_cfg.d_in)
    sae = build(sae_cfg, seed=cfg.seed).to(device)
    dd.bind_batch_group_(sae, dist)
    configure_encoder(sae, _encoder(cfg, sae, dist, state.get("encoder")))  # the path the run started on
    opt = new_optimizer(sae)
    restore_state(sae, opt, tracker, gen, tensors)
    match_state_layout_(opt)  # loaded Adam moments follow the (latent-major) parameter layout
    dd.barrier(dist)  # every rank has read the checkpoint before rank 0 may replace it
    return RunState(sae, opt, tracker, gen, int(state["step"]))
