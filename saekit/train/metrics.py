"""Training metrics and where they go: train_log.jsonl always; TensorBoard and W&B (offline by default)
when asked with `--log` (their packages are the optional `log` extra: `pip install 'saekit[log]'`)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.atomic import write_text_atomic
from saekit.errors import SAEConfigError


@torch.no_grad()
def reconstruction_metrics(x_BD: Tensor, recon_BD: Tensor) -> dict[str, float]:
    """MSE, centred FVU `||x - x_hat||^2 / ||x - mean(x)||^2` and shrinkage `mean ||x_hat|| / ||x||`.

    Raw units (both tensors in the activations' scale). Centring matters: uncentred FVU divides by
    `||x||^2`, which a large mean (typical of residual streams) inflates, flattering the SAE.
    """
    x = x_BD.double()
    r = recon_BD.double()
    err = (x - r).pow(2).sum()
    var = (x - x.mean(0)).pow(2).sum().clamp_min(1e-30)
    norms = x.norm(dim=-1)
    shrink = (r.norm(dim=-1) / norms.clamp_min(1e-30)).mean()
    return {"mse": float(err / x.numel()), "fvu": float(err / var), "shrinkage": float(shrink)}


#: `--log` sink -> the pip package it needs
SINK_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
WANDB_ID_FILE = "saekit_run_id"
"""In `out/wandb/`: the W&B run id, so a resumed training continues the same W&B run."""


def _sink_module(sink: str) -> Any:
    """The writer class / module a sink needs; SAEConfigError naming the package when it is missing."""
    try:
        if sink == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            return SummaryWriter
        import wandb

        return wandb
    except ImportError as exc:
        pkg = SINK_PACKAGES[sink]
        raise SAEConfigError(
            f"--log {sink} needs the {pkg!r} package, which cannot be imported ({exc}). Install it with "
            f"`pip install {pkg}` (or `pip install 'saekit[log]'` for every sink), or drop `--log {sink}`: "
            "logging does not change the run, and a checkpointed run resumes without it"
        ) from None


def require_sinks(sinks: Sequence[str]) -> None:
    """Refuse, before any training work, a `--log` sink whose package is not installed: asked-for logs
    that silently never appear are worse than an error at start."""
    for sink in dict.fromkeys(sinks):
        _sink_module(sink)


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numeric values of a record (booleans and strings are not metrics; `step` is the x axis)."""
    numeric = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: v for k, v in numeric.items() if k != "step"}


class _TensorBoard:
    """Scalars `train/<key>` per log step and `final/<key>` at the last step, in `out/tb`."""

    def __init__(self, out: Path, resume_step: int):
        writer_cls = _sink_module("tensorboard")
        # on resume, events after the checkpoint (from the interrupted run) are dropped, as in the JSONL
        self._w = writer_cls(str(out / "tb"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, values: dict[str, float], step: int, prefix: str) -> None:
        for key, val in values.items():
            self._w.add_scalar(f"{prefix}/{key}", val, step)

    def close(self) -> None:
        self._w.close()


class _WandB:
    """History `train/<key>` per log step and summary `final/<key>`; run files in `out/wandb/`.

    Offline unless WANDB_MODE is set (`wandb sync out/wandb/offline-run-*` uploads later); project
    `saekit` unless WANDB_PROJECT is set; the run is named after the output folder. A resumed training
    continues the W&B run of the same id (kept in `out/wandb/saekit_run_id`).
    """

    def __init__(self, out: Path, resume_step: int, run_config: dict[str, Any], quiet: bool):
        wandb = _sink_module("wandb")
        folder = out / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / WANDB_ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if resume_step and id_file.is_file() else ""
        if not run_id:
            run_id = secrets.token_hex(4)
            write_text_atomic(id_file, run_id + "\n")
        self._run = wandb.init(
            dir=str(out),
            mode=os.environ.get("WANDB_MODE") or "offline",
            project=None if os.environ.get("WANDB_PROJECT") else "saekit",
            name=out.resolve().name,
            id=run_id,
            resume="allow",
            config=run_config,
            settings=wandb.Settings(console="off", silent=quiet),  # no stdout capture: tqdm, --quiet JSON
        )

    def log(self, values: dict[str, float], step: int, prefix: str) -> None:
        named = {f"{prefix}/{k}": v for k, v in values.items()}
        if prefix == "final":
            self._run.summary.update(named)
        else:
            self._run.log(named, step=step)

    def close(self) -> None:
        self._run.finish()


class MetricsLogger:
    """Appends one JSON object per log step to `path`; mirrors the numbers to the `--log` sinks
    (TensorBoard in `out/tb`, W&B in `out/wandb`), `out` being the log file's folder."""

    def __init__(
        self,
        path: str | Path,
        *,
        resume_step: int = 0,
        sinks: Sequence[str] = (),
        run_config: dict[str, Any] | None = None,
        quiet: bool = False,
    ):
        self.path = Path(path)
        self._truncate_after(resume_step)
        out = self.path.parent
        self._sinks: list[Any] = []
        try:
            for sink in dict.fromkeys(sinks):
                if sink == "tensorboard":
                    self._sinks.append(_TensorBoard(out, resume_step))
                else:
                    self._sinks.append(_WandB(out, resume_step, run_config or {}, quiet))
        except BaseException:
            self.close()
            raise

    def _truncate_after(self, step: int) -> None:
        """On resume drop lines written after the checkpoint, so the log matches an uninterrupted run."""
        if not self.path.exists():
            return
        if step == 0:
            self.path.unlink()
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if int(rec.get("step", 0)) <= step:
                keep.append(line)
        write_text_atomic(self.path, "".join(k + "\n" for k in keep))

    def log(self, record: dict[str, Any]) -> None:
        """One log step's record: a JSONL line, and `train/<key>` scalars at its step in every sink."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        step = int(record.get("step", 0))
        values = _scalars(record)
        for sink in self._sinks:
            sink.log(values, step, "train")

    def log_final(self, metrics: dict[str, Any], step: int) -> None:
        """The finished run's metrics (`train_summary.json`'s) as `final/<key>` in every sink (not JSONL)."""
        values = _scalars(metrics)
        for sink in self._sinks:
            sink.log(values, step, "final")

    def close(self) -> None:
        sinks, self._sinks = self._sinks, []
        for sink in sinks:
            sink.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Parse a train_log.jsonl (skipping a possibly truncated last line)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
