"""Training metrics and where they go: JSONL always, TensorBoard / wandb (offline) when importable."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


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


class MetricsLogger:
    """Appends one JSON object per log step to `path`; mirrors to TensorBoard / wandb when asked."""

    def __init__(
        self,
        path: str | Path,
        *,
        resume_step: int = 0,
        tensorboard: bool = False,
        wandb: bool = False,
        run_config: dict[str, Any] | None = None,
    ):
        self.path = Path(path)
        self._truncate_after(resume_step)
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.path.parent / "tb"))
            except ImportError:
                print("saekit train: tensorboard is not installed; logging to JSONL only")
        if wandb:
            try:
                import wandb as wb

                os.environ.setdefault("WANDB_MODE", "offline")
                self._wandb = wb.init(dir=str(self.path.parent), config=run_config or {}, resume="allow")
            except ImportError:
                print("saekit train: wandb is not installed; logging to JSONL only")

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
        from saekit.atomic import write_text_atomic

        write_text_atomic(self.path, "".join(k + "\n" for k in keep))

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        step = int(record.get("step", 0))
        if self._tb is not None:
            for key, val in record.items():
                if isinstance(val, (int, float)) and key != "step":
                    self._tb.add_scalar(f"train/{key}", val, step)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Parse a train_log.jsonl (skipping a possibly truncated last line)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
