"""The training loop: architecture-agnostic, resumable bit-exactly, with dead-latent handling.

One step: forward (with the dead mask for aux-k and the sparsity warm-up scale), backward, project the
decoder gradient, Adam, renormalise the decoder, update dead-latent counters, maybe resample (ReLU),
log, checkpoint. Everything the next step depends on (weights, Adam moments, step, dead counters, RNG)
is in the checkpoint; the LR/sparsity schedules are pure functions of the step and the data order is a
pure function of (seed, epoch, row offset), so a killed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.errors import CheckpointError, NonFiniteError, SAEConfigError, ShapeError, StoreError
from saekit.sae import SAEConfig, build
from saekit.sae.config import Provenance
from saekit.sae.init import fit_input_scale_, init_b_dec_
from saekit.sae.registry import needs_k
from saekit.sae.screened import configure_encoder, match_state_layout_
from saekit.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from saekit.train.config import DEFAULT_DEAD_TOKENS, TrainConfig, default_lr
from saekit.train.dead import DeadLatentTracker
from saekit.train.metrics import MetricsLogger, reconstruction_metrics
from saekit.train.resample import resample_dead_
from saekit.train.schedule import lr_factor, sparsity_scale

LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoint"
SUMMARY_FILE = "train_summary.json"


@dataclass(frozen=True)
class TrainResult:
    """What `Trainer.run` returns."""

    sae: Any
    """The trained SAE (also saved to `out` when the run finished)."""
    step: int
    """Steps completed."""
    finished: bool
    """False when stopped early by `stop_after_steps` (the checkpoint allows resuming)."""
    metrics: dict[str, float]
    """Final metrics (on a sample of the training source) when finished, else the last logged ones."""


def _provenance(manifest: dict[str, Any], tokens: int) -> Provenance:
    hp = manifest.get("hook_point")
    layer = manifest.get("layer")
    if layer is None and isinstance(hp, str):
        import re

        m = re.search(r"layers?\.(\d+)", hp)
        layer = int(m.group(1)) if m else None
    return Provenance(
        model=manifest.get("model"),
        hook_point=hp,
        stream=manifest.get("stream"),
        layer=layer,
        tokens_trained=int(tokens),
        model_dtype=manifest.get("model_dtype"),
    )


class Trainer:
    """Train an SAE from any activation source (`saekit.train.source.ActivationSource`)."""

    def __init__(self, cfg: TrainConfig, source, out: str | Path | None = None):
        self.cfg = cfg
        self.source = source
        self.out = Path(out if out is not None else cfg.out)
        self.d_in = int(source.d)
        B = cfg.batch_size
        n = len(source)
        if n < B:
            raise StoreError(
                f"the activation source has {n} rows, fewer than one batch ({B}); lower --batch-size or harvest more"
            )
        self.steps_per_epoch = n // B
        total = cfg.total_tokens if cfg.total_tokens is not None else self.steps_per_epoch * B
        self.total_steps = max(1, total // B)
        self.total_tokens = self.total_steps * B
        self.d_sae = cfg.d_sae if cfg.d_sae is not None else cfg.expansion * self.d_in
        dead_tokens = cfg.dead_tokens
        if dead_tokens is None:
            dead_tokens = min(DEFAULT_DEAD_TOKENS, max(self.total_tokens // 10, B))
        self.dead_tokens = int(dead_tokens)
        self.peak_lr = cfg.lr if cfg.lr is not None else default_lr(self.d_sae)
        resample = cfg.resample_every
        if resample is None:
            resample = max(1, self.total_steps // 4) if cfg.arch == "relu" else 0
        if resample and cfg.arch != "relu":
            raise SAEConfigError(
                f"--resample-every is for relu SAEs; arch={cfg.arch!r} revives latents with aux-k"
            )
        self.resample_every = int(resample)
        manifest = dict(getattr(source, "manifest", {}) or {})
        self.manifest = manifest
        self.sae_cfg = self._sae_config(_provenance(manifest, 0))

    # -- setup ----------------------------------------------------------------------------------
    def _sae_config(self, provenance: Provenance) -> SAEConfig:
        c = self.cfg
        extra = {} if c.sparsity_coefficient is None else {"sparsity_coefficient": c.sparsity_coefficient}
        k = c.k if needs_k(c.arch) else None
        if k is not None and k > self.d_sae:
            raise SAEConfigError(f"k={k} exceeds d_sae={self.d_sae}; lower --k or raise --expansion")
        return SAEConfig(
            d_in=self.d_in,
            d_sae=self.d_sae,
            arch=c.arch,
            k=k,
            dtype=c.dtype,
            aux_k=c.aux_k,
            aux_k_coefficient=c.aux_k_coefficient,
            normalize_decoder=c.normalize_decoder,
            normalization=c.normalization,
            provenance=provenance,
            **extra,
        )

    def _fresh(self):
        sae = build(self.sae_cfg, seed=self.cfg.seed)
        sample = self.source.sample(self.cfg.init_sample, self.cfg.seed)
        if sample.shape[-1] != self.d_in:
            raise ShapeError(f"sample rows have d={sample.shape[-1]} but the source says d={self.d_in}")
        fit_input_scale_(sae, sample)
        init_b_dec_(sae, sample, method=self.cfg.b_dec_init)
        return sae

    def _optimizer(self, sae) -> torch.optim.Optimizer:
        kw = dict(lr=self.peak_lr, betas=(self.cfg.beta1, self.cfg.beta2), eps=self.cfg.eps)
        try:
            return torch.optim.Adam(sae.parameters(), fused=True, **kw)
        except (RuntimeError, ValueError, TypeError):
            return torch.optim.Adam(sae.parameters(), **kw)

    # -- checkpoint state -----------------------------------------------------------------------
    def _state_tensors(self, sae, opt, tracker: DeadLatentTracker, gen: torch.Generator) -> dict[str, Tensor]:
        t: dict[str, Tensor] = {f"sae.{k}": v for k, v in sae.state_dict().items()}
        names = {id(p): n for n, p in sae.named_parameters()}
        for p, st in opt.state.items():
            for key, val in st.items():
                if isinstance(val, Tensor):
                    t[f"opt.{names[id(p)]}.{key}"] = val
        t["dead.since_fired"] = tracker.since_fired
        t["rng.torch"] = torch.get_rng_state()
        t["rng.resample"] = gen.get_state()
        if getattr(sae, "screen", None) is not None:
            t["screen.state"] = sae.screen.state_tensor()
        return t

    def _restore(self, sae, opt, tracker, gen, tensors: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for k, v in sae.state_dict().items():
                v.copy_(tensors[f"sae.{k}"])
        state = {}
        for i, (name, p) in enumerate(sae.named_parameters()):
            st = {key.split(".", 2)[2]: val for key, val in tensors.items() if key.startswith(f"opt.{name}.")}
            if st:
                state[i] = st
        sd = opt.state_dict()
        sd["state"] = state
        opt.load_state_dict(sd)
        tracker.since_fired.copy_(tensors["dead.since_fired"])
        torch.set_rng_state(tensors["rng.torch"])
        gen.set_state(tensors["rng.resample"])
        if getattr(sae, "screen", None) is not None and "screen.state" in tensors:
            sae.screen.load_state_tensor(tensors["screen.state"])

    def _check_resume_config(self, saved: dict[str, Any]) -> None:
        now = self.cfg.to_dict()
        diffs = [
            f"{k}: checkpoint={saved.get(k)!r} now={now[k]!r}"
            for k in now
            if k not in TrainConfig.COSMETIC and saved.get(k) != now[k]
        ]
        if diffs:
            raise CheckpointError(
                f"{self.out / CHECKPOINT_DIR} was written by a run with different settings ({'; '.join(diffs)}); "
                "rerun with the original flags to resume, or choose a new --out (or delete the checkpoint) to start over"
            )

    # -- the loop -------------------------------------------------------------------------------
    def _batches(self, start_step: int):
        step = start_step
        B = self.cfg.batch_size
        while True:
            epoch, within = divmod(step, self.steps_per_epoch)
            for x in self.source.iter_batches(
                B,
                shuffle=True,
                seed=self.cfg.seed + epoch,
                start_row=within * B,
                drop_last=True,
                dtype=torch.float32,
            ):
                yield x
                step += 1
                if step % self.steps_per_epoch == 0:
                    break

    def run(self, stop_after_steps: int | None = None) -> TrainResult:
        """Train to `total_steps` (resuming from `out/checkpoint` if present); `stop_after_steps` stops
        early after that many steps *of this call* without saving (for tests of interruption)."""
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt_dir = self.out / CHECKPOINT_DIR
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        tracker = DeadLatentTracker(self.d_sae, self.dead_tokens)
        start = 0
        if has_checkpoint(ckpt_dir):
            state, tensors = load_checkpoint(ckpt_dir)
            saved_d = int(state.get("d_in", self.d_in))
            if saved_d != self.d_in:
                raise ShapeError(
                    f"{ckpt_dir} holds an SAE with d_in={saved_d} but the activation source has d={self.d_in}; "
                    "point --acts at the store the run started with, or choose a new --out"
                )
            self._check_resume_config(state.get("train_config", {}))
            sae = build(self.sae_cfg, seed=cfg.seed)
            configure_encoder(sae, cfg.encoder)
            opt = self._optimizer(sae)
            self._restore(sae, opt, tracker, gen, tensors)
            match_state_layout_(opt)  # loaded Adam moments follow the (latent-major) parameter layout
            start = int(state["step"])
        else:
            torch.manual_seed(cfg.seed)
            sae = self._fresh()
            configure_encoder(sae, cfg.encoder)
            opt = self._optimizer(sae)
        sae.train()
        logger = MetricsLogger(
            self.out / LOG_FILE,
            resume_step=start,
            tensorboard=cfg.tensorboard,
            wandb=cfg.wandb,
            run_config=cfg.to_dict(),
        )
        uses_dead = needs_k(cfg.arch) and cfg.aux_k_coefficient > 0
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if cfg.autocast == "bfloat16"
            else contextlib.nullcontext()
        )
        bar = None
        if not cfg.quiet:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
        last: dict[str, float] = {}
        t0 = time.perf_counter()
        done_here = 0
        step = start
        batches = self._batches(start)
        try:
            while step < self.total_steps:
                if stop_after_steps is not None and done_here >= stop_after_steps:
                    return TrainResult(sae, step, False, last)
                x = next(batches)
                if x.shape[-1] != self.d_in:
                    raise ShapeError(f"batch has d={x.shape[-1]}, expected {self.d_in}")
                lr = self.peak_lr * lr_factor(
                    step, self.total_steps, cfg.lr_warmup_steps, cfg.lr_decay, cfg.lr_decay_start
                )
                for group in opt.param_groups:
                    group["lr"] = lr
                scale = sparsity_scale(step, self.total_steps, cfg.sparsity_warmup_frac)
                dead = tracker.dead_mask if uses_dead else None
                with autocast:
                    out = sae(x, dead_mask=dead, sparsity_scale=scale)
                loss = out.losses.total
                if not torch.isfinite(loss):
                    raise NonFiniteError(
                        f"training loss became {float(loss)} at step {step}; lower --lr, check the activations "
                        "for NaN/inf, or use --normalization expected_norm"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.normalize_decoder:
                    sae.remove_gradient_parallel_to_decoder_()
                opt.step()
                if cfg.normalize_decoder:
                    sae.set_decoder_norm_to_unit_()
                tracker.update(out.fired, x.shape[0])
                step += 1
                done_here += 1
                n_resampled = 0
                if self.resample_every and step % self.resample_every == 0 and step < self.total_steps:
                    n_resampled = resample_dead_(sae, opt, tracker.dead_mask, x, gen)
                    tracker.reset(tracker.dead_mask)
                if step % cfg.log_every == 0 or step == self.total_steps:
                    last = self._record(step, lr, scale, x, out, tracker, t0, done_here, n_resampled)
                    logger.log(last)
                    if bar is not None:
                        bar.set_postfix(
                            fvu=f"{last['fvu']:.3f}", l0=f"{last['l0']:.1f}", dead=f"{last['dead_pct']:.1f}%"
                        )
                if bar is not None:
                    bar.update(1)
                if step % cfg.checkpoint_every == 0 or step == self.total_steps:
                    save_checkpoint(
                        ckpt_dir,
                        step,
                        self._state_tensors(sae, opt, tracker, gen),
                        {
                            "train_config": cfg.to_dict(),
                            "total_steps": self.total_steps,
                            "d_in": self.d_in,
                            "d_sae": self.d_sae,
                        },
                    )
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        final = self._finish(sae, tracker)
        return TrainResult(sae, step, True, final)

    def _record(self, step, lr, scale, x, out, tracker, t0, done_here, n_resampled) -> dict[str, Any]:
        rec = {
            "step": step,
            "tokens": step * self.cfg.batch_size,
            "lr": lr,
            "sparsity_scale": scale,
            "elapsed_s": time.perf_counter() - t0,
        }
        rec.update(reconstruction_metrics(x, out.recon))
        rec.update(
            {
                "l0": float(out.l0),
                "dead_pct": 100.0 * tracker.dead_fraction,
                "loss": float(out.losses.total.detach()),
                "recon_loss": float(out.losses.recon.detach()),
                "aux_loss": float(out.losses.aux.detach()),
                "sparsity_loss": float(out.losses.sparsity.detach()),
                "tokens_per_s": done_here * self.cfg.batch_size / max(time.perf_counter() - t0, 1e-9),
            }
        )
        if n_resampled:
            rec["resampled"] = n_resampled
        return rec

    @torch.no_grad()
    def _finish(self, sae, tracker: DeadLatentTracker) -> dict[str, float]:
        """Final metrics on a sample, save the SAE with provenance, write the summary."""
        sae.cfg = sae.cfg.replace(provenance=_provenance(self.manifest, self.total_tokens))
        sae.eval()
        sample = self.source.sample(self.cfg.init_sample, self.cfg.seed + 7)
        recon = torch.cat([sae(chunk).recon for chunk in sample.split(self.cfg.batch_size)])
        lat_l0 = torch.cat([(sae.encode(c) != 0).sum(-1).float() for c in sample.split(self.cfg.batch_size)])
        metrics = reconstruction_metrics(sample, recon)
        metrics.update(
            {
                "l0": float(lat_l0.mean()),
                "dead_pct": 100.0 * tracker.dead_fraction,
                "tokens_trained": self.total_tokens,
                "steps": self.total_steps,
            }
        )
        sae.save(self.out)
        from saekit.atomic import write_json_atomic

        write_json_atomic(
            self.out / SUMMARY_FILE,
            {
                "final_metrics_on_train_sample": metrics,
                "train_config": self.cfg.to_dict(),
                "dead_tokens": self.dead_tokens,
                "lr": self.peak_lr,
            },
        )
        return metrics


def train(cfg: TrainConfig, source=None, out: str | Path | None = None, **kw) -> TrainResult:
    """Open `cfg.acts` (unless a source is given) and run a Trainer."""
    if source is None:
        from saekit.train.source import open_source

        source = open_source(cfg.acts)
    return Trainer(cfg, source, out=out).run(**kw)


def summary(out: str | Path) -> dict[str, Any]:
    return json.loads((Path(out) / SUMMARY_FILE).read_text())
