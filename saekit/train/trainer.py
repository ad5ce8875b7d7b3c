"""The training loop: architecture-agnostic, device-aware, data-parallel under torchrun, bit-exact resume.

A run starts fresh or from its checkpoint (`saekit.train.start`); each step is `saekit.train.step`
(forward, backward, gradient averaging, decoder projection, Adam, renorm, dead counters), followed here by
resampling (ReLU), logging and checkpointing. Everything the next step depends on (weights, Adam
moments, step, dead counters, RNG) is in the checkpoint; the LR/sparsity schedules are pure functions of
the step and the data order is a pure function of (seed, epoch, row offset), so a killed run continues
exactly where it stopped. `batch_size` is the global batch: each rank trains on its share of it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.data.paired import Pair, PairedRows, split_pair
from saekit.device import allow_tf32
from saekit.errors import SAEConfigError, ShapeError, StoreError
from saekit.sae import SAEConfig, scratch
from saekit.sae.config import Provenance
from saekit.sae.registry import needs_k
from saekit.train import distributed as dd
from saekit.train.batches import batch_stream
from saekit.train.cached import maybe_cache
from saekit.train.checkpoint import save_checkpoint
from saekit.train.config import DEFAULT_DEAD_TOKENS, TrainConfig, default_lr
from saekit.train.convergence import convergence_note, default_train_rows, fvu_plateau
from saekit.train.dead import DeadLatentTracker
from saekit.train.metrics import MetricsLogger, require_sinks
from saekit.train.records import NullLogger, final_metrics, provenance, step_record
from saekit.train.resample import resample_dead_
from saekit.train.revive import nudge_dormant_bias_, revive_plan
from saekit.train.sae_spec import to_sae_config
from saekit.train.schedule import lr_factor, sparsity_scale
from saekit.train.start import fresh_sae, start_run
from saekit.train.state import state_tensors
from saekit.train.step import RunState, StepSettings, make_optimizer, train_step

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


_Run = RunState  # the name tests and older callers use


def as_pairs(source):
    """A transcoder's training rows `[input | target]`: a paired store read as `PairedRows`, or a source
    that already serves pairs (`PairedRows`, `PairedTensorSource`); StoreError for an unpaired store."""
    if getattr(source, "d_in", None) is not None and getattr(source, "d_out", None) is not None:
        return source
    return PairedRows(source)


class Trainer:
    """Train an SAE from any activation source (`saekit.train.source.ActivationSource`); with
    `cfg.target == "out"`, a transcoder from a paired one (rows `[input | target]`, `saekit.data.paired`)."""

    def __init__(
        self, cfg: TrainConfig, source, out: str | Path | None = None, dist: dd.DistContext = dd.SINGLE
    ):
        self.cfg = cfg
        if cfg.target == "out":
            source = as_pairs(source)
        self.source = maybe_cache(source, cfg.cache_mb)
        self.out = Path(out if out is not None else cfg.out)
        self.dist = dist
        self.device = dd.rank_device(cfg.device, dist)
        self.d_out: int | None = int(source.d_out) if cfg.target == "out" else None
        """The transcoder's target width; None when training an SAE."""
        self.d_in = int(source.d_in) if self.d_out is not None else int(source.d)
        B = cfg.batch_size
        dd.check_batch(B, dist)
        n = len(source)
        if n < B:
            raise StoreError(
                f"the activation source has {n} rows, fewer than one batch ({B}); "
                "lower --batch-size or harvest more"
            )
        self.steps_per_epoch = n // B
        total = cfg.total_tokens if cfg.total_tokens is not None else default_train_rows(n)
        self.total_steps = max(1, total // B)
        self.total_tokens = self.total_steps * B
        self.d_sae = cfg.d_sae if cfg.d_sae is not None else cfg.expansion * self.d_in
        self.dead_tokens = int(cfg.dead_tokens if cfg.dead_tokens is not None else DEFAULT_DEAD_TOKENS)
        self.peak_lr = cfg.lr if cfg.lr is not None else default_lr(self.d_sae)
        self.revive = revive_plan(cfg, self.total_steps, self.dead_tokens, self.d_sae)
        self.resample_every = self.revive.every
        self.manifest = dict(getattr(source, "manifest", {}) or {})
        self.sae_cfg = self._sae_config(self._provenance(0))
        require_sinks(cfg.log)  # a --log sink without its package: refused before any work, on every rank

    # -- setup ----------------------------------------------------------------------------------
    def _provenance(self, tokens: int) -> Provenance:
        return provenance(self.manifest, tokens, transcoder=self.d_out is not None)

    def _sae_config(self, prov: Provenance) -> SAEConfig:
        spec = self.cfg.sae
        if not needs_k(spec.arch):
            spec = replace(spec, k=None)
        if spec.k is not None and spec.k > self.d_sae:
            raise SAEConfigError(f"k={spec.k} exceeds d_sae={self.d_sae}; lower --k or raise --expansion")
        return to_sae_config(spec, self.d_in, self.d_sae, prov, d_out=self.d_out)

    def _pair(self, rows: Tensor) -> Pair:
        """A batch as (input, what the output is compared with): the rows themselves for an SAE, the
        `[input | target]` halves for a transcoder."""
        return Pair(rows, rows) if self.d_out is None else split_pair(rows, self.d_in)

    def _fresh(self):
        return fresh_sae(self.sae_cfg, self.cfg, self.source, self.device)

    def _optimizer(self, sae) -> torch.optim.Optimizer:
        params: list = list(sae.parameters())
        if self.cfg.encoder_lr_scale != 1.0:  # groups only when asked: the default optimiser stays as it was
            enc = [p for n, p in sae.named_parameters() if n in ("W_enc", "b_enc")]
            rest = [p for p in params if all(p is not q for q in enc)]
            params = [{"params": rest}, {"params": enc, "lr_scale": self.cfg.encoder_lr_scale}]
        return make_optimizer(params, self.peak_lr, (self.cfg.beta1, self.cfg.beta2), self.cfg.eps)

    def _start(self) -> RunState:
        """A fresh run, or the checkpointed one in `out/checkpoint` (`saekit.train.start`)."""
        tracker = DeadLatentTracker(self.d_sae, self.dead_tokens, device=self.device)
        ckpt = self.out / CHECKPOINT_DIR
        return start_run(
            self.cfg, self.sae_cfg, ckpt, self.device, self.dist, tracker, self._fresh, self._optimizer
        )

    # -- data -----------------------------------------------------------------------------------
    def _batch_stream(self, start_step: int):
        """This rank's batches for steps `start_step..total_steps` (see `saekit.train.batches`)."""
        c = self.cfg
        steps = self.total_steps - start_step
        pin = self.device.type == "cuda"
        return batch_stream(self.source, c.batch_size, c.seed, start_step, steps, self.dist, c.prefetch, pin)

    # -- the loop -------------------------------------------------------------------------------
    def run(
        self, stop_after_steps: int | None = None, on_step: Callable[[int], None] | None = None
    ) -> TrainResult:
        """Train to `total_steps` (resuming from `out/checkpoint` if present); `stop_after_steps` stops
        early after that many steps *of this call* without saving (for tests of interruption);
        `on_step(step)` is called after every completed step (checkpoint written)."""
        cfg = self.cfg
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.out.mkdir(parents=True, exist_ok=True)
        dd.init_process_group(self.dist, self.device)
        run = self._start()
        choice = getattr(run.sae, "encoder_choice", None)
        if choice is not None and choice.times_ms and self.dist.is_main and not cfg.quiet:
            print(f"saekit train: {choice.describe()}", flush=True)  # once: what `auto` measured and chose
        run.sae.train()
        logger = self._logger(run.step)
        forward = torch.compile(run.sae) if cfg.compile else run.sae
        bar = self._bar(run.step)
        last: dict[str, float] = {}
        t0, start = time.perf_counter(), run.step
        trained = False
        try:
            with allow_tf32(cfg.tf32), self._batch_stream(run.step) as batches:
                for x_host in batches:
                    if stop_after_steps is not None and run.step - start >= stop_after_steps:
                        return TrainResult(run.sae, run.step, False, last)
                    x = x_host.to(self.device, non_blocking=True)
                    out, lr, scale = self._step(run, forward, x)
                    rec = self._after_step(run, x, out, lr, scale, t0, start)
                    if rec is not None and self.dist.is_main:
                        last = rec
                        logger.log(rec)
                        if bar is not None:
                            bar.set_postfix(
                                fvu=f"{rec['fvu']:.3f}", l0=f"{rec['l0']:.1f}", dead=f"{rec['dead_pct']:.1f}%"
                            )
                    if bar is not None:
                        bar.update(1)
                    if on_step is not None:
                        on_step(run.step)
            trained = True
        finally:
            if bar is not None:
                bar.close()
            if not trained:
                logger.close()
            scratch.release()  # the per-step [batch, d_sae] buffers are not needed after training
        try:
            metrics = self._finish(run.sae, run.tracker)
            if self.dist.is_main:
                logger.log_final(metrics, run.step)
        finally:
            logger.close()
        return TrainResult(run.sae, run.step, True, metrics)

    def _step(self, run: RunState, forward, x: Tensor):
        """One optimiser step on this rank's share `x` of the global batch (`saekit.train.step`)."""
        cfg = self.cfg
        width = self.d_in + (self.d_out or 0)
        if x.shape[-1] != width:
            raise ShapeError(f"batch has d={x.shape[-1]}, expected {width}")
        pair = self._pair(x)
        if self.d_out is not None:  # a transcoder's forward compares its prediction with the target
            forward = functools.partial(forward, target=pair.y)
        lr = self.peak_lr * lr_factor(
            run.step, self.total_steps, cfg.lr_warmup_steps, cfg.lr_decay, cfg.lr_decay_start
        )
        scale = sparsity_scale(run.step, self.total_steps, cfg.sparsity_warmup_frac)
        settings = StepSettings(
            lr=lr,
            sparsity_scale=scale,
            use_dead_mask=needs_k(cfg.arch) and cfg.sae.aux_k_coefficient > 0,
            normalize_decoder=cfg.sae.normalize_decoder,
            autocast_dtype=torch.bfloat16 if cfg.autocast == "bfloat16" else None,
            batch_size=cfg.batch_size,
        )
        out = train_step(run, forward, pair.x, settings, self.dist, self.device)
        return out, lr, scale

    def _after_step(self, run: RunState, x, out, lr, scale, t0, start) -> dict[str, Any] | None:
        """Resample, metrics (a record on log steps) and checkpoint after a step."""
        step, cfg = run.step, self.cfg
        x, y = self._pair(x)
        n_resampled = 0
        dormant = run.tracker.since_fired >= self.revive.dormant_rows
        if self.revive.bias_step > 0:
            nudge_dormant_bias_(run.sae, dormant, self.revive.bias_step)
        if self.revive.resample_at(step):
            x_all = dd.gather_rows(x, self.dist)  # the global batch, so every rank resamples alike
            loss = (out.recon.detach() - y.to(out.recon.dtype)).pow(2).sum(-1)  # this step's, pre-update
            n_resampled = resample_dead_(
                run.sae, run.opt, dormant, x_all, run.gen, encoder_scale=cfg.resample_encoder_scale,
                row_loss_B=dd.gather_rows(loss[:, None], self.dist)[:, 0],
                target_BD=dd.gather_rows(y, self.dist) if self.d_out is not None else None,
            )  # fmt: skip
            run.tracker.reset(dormant)
        rec = None
        if step % cfg.log_every == 0 or step == self.total_steps:
            dead_pct = 100.0 * run.tracker.dead_fraction
            rec = step_record(
                out, y, step=step, batch_size=cfg.batch_size, lr=lr, scale=scale, dead_pct=dead_pct,
                t0=t0, done_here=step - start, ctx=self.dist,
            )  # fmt: skip
            if n_resampled:
                rec["resampled"] = n_resampled
        if self.dist.is_main and (step % cfg.checkpoint_every == 0 or step == self.total_steps):
            meta = {
                "train_config": cfg.to_dict(),
                "total_steps": self.total_steps,
                "d_in": self.d_in,
                "d_sae": self.d_sae,
                "encoder": getattr(getattr(run.sae, "encoder_choice", None), "path", None),
            }
            save_checkpoint(
                self.out / CHECKPOINT_DIR, step, state_tensors(run.sae, run.opt, run.tracker, run.gen), meta
            )
        return rec

    def _logger(self, start: int):
        if not self.dist.is_main:
            return NullLogger()  # only rank 0 writes the log
        cfg = self.cfg
        return MetricsLogger(
            self.out / LOG_FILE, resume_step=start, sinks=cfg.log, run_config=cfg.to_dict(), quiet=cfg.quiet
        )

    def _bar(self, start: int):
        if self.cfg.quiet or not self.dist.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)

    def _convergence(self) -> dict[str, Any]:
        """Was FVU still falling before the LR decay? (`saekit.train.convergence`; read by `describe_sae`)"""
        cfg = self.cfg
        records = _read_log(self.out / LOG_FILE)
        plateau = fvu_plateau(records, self.total_steps, cfg.lr_decay, cfg.lr_decay_start)
        if plateau is None:
            return {"checked": False, "note": None}
        return {
            "checked": True, "early_fvu": plateau.early_fvu, "late_fvu": plateau.late_fvu,
            "window_steps": list(plateau.window), "still_falling": plateau.still_falling,
            "note": convergence_note(plateau, self.total_tokens),
        }  # fmt: skip

    def _finish(self, sae, tracker: DeadLatentTracker) -> dict[str, float]:
        """Final metrics on a sample; rank 0 saves the SAE with provenance and writes the summary."""
        sae.cfg = sae.cfg.replace(provenance=self._provenance(self.total_tokens))
        sae.eval()
        sample = self._pair(self.source.sample(self.cfg.init_sample, self.cfg.seed + 7).to(self.device))
        target = sample.y if self.d_out is not None else None
        metrics = final_metrics(sae, sample.x, self.cfg.batch_size, target)
        metrics.update({"dead_pct": 100.0 * tracker.dead_fraction, "tokens_trained": self.total_tokens})
        metrics["steps"] = self.total_steps
        if self.dist.is_main:
            sae.save(self.out)
            from saekit.atomic import write_json_atomic

            summary = {"final_metrics_on_train_sample": metrics, "train_config": self.cfg.to_dict()}
            summary["convergence"] = self._convergence()
            choice = getattr(sae, "encoder_choice", None)
            summary["encoder"] = choice.to_dict() if choice is not None else None
            summary.update({"dead_tokens": self.dead_tokens, "lr": self.peak_lr, "ranks": self.dist.world})
            write_json_atomic(self.out / SUMMARY_FILE, summary)
        dd.barrier(self.dist)
        return metrics


def _read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a train log (a line cut short by a kill is skipped)."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def train(cfg: TrainConfig, source=None, out: str | Path | None = None, **kw) -> TrainResult:
    """Train on `source`, or on the store(s) in `cfg.acts`: one store data-parallel over torchrun's ranks
    (if any), several stores one SAE each (`saekit.train.multi`). Returns the (last) result."""
    if source is not None:
        ctx = dd.from_env(cfg.distributed)
        return Trainer(cfg, source, out=out, dist=ctx).run(**kw)
    from saekit.train.multi import train_stores

    return train_stores(cfg, out=out, **kw)


def summary(out: str | Path) -> dict[str, Any]:
    return json.loads((Path(out) / SUMMARY_FILE).read_text())
