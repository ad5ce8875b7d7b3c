"""Load what a steering command needs: the SAE, its calibration, the model, the hook point.

The hook point and model default to the SAE's provenance, so `saekit steer --sae sae/` needs no
other flag for an SAE saekit trained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from saekit.errors import SteeringError


@dataclass
class SteerSession:
    """An SAE with its folder, calibration, the loaded model and the hook point to steer."""

    sae: object
    """The SAE (`saekit.sae.SAE`)."""
    sae_folder: str
    """Where the SAE (and its scales.json) live."""
    calibration: object | None
    """`Calibration` or None when `saekit scale` has not run."""
    lm: object
    """`saekit.models.LoadedModel` (model, tokenizer, ...)."""
    hook_point: str
    """Hook point spec where the SAE reads and steering writes."""


def load_sae_folder(folder: str | Path):
    """Any SAE `saekit.load` reads (native or a converted foreign format)."""
    import saekit

    return saekit.load(folder)


def hook_point_of(sae, override: str | None = None) -> str:
    hp = override or sae.cfg.provenance.hook_point
    if not hp:
        raise SteeringError(
            "the SAE's config.json has no provenance.hook_point; pass --hook-point (e.g. model.layers.15)"
        )
    return hp


def layer_of(sae, hook_point: str) -> int:
    """The SAE's layer from its provenance, else the last number in its hook point (else 0)."""
    if sae.cfg.provenance.layer is not None:
        return int(sae.cfg.provenance.layer)
    nums = re.findall(r"\d+", hook_point)
    return int(nums[-1]) if nums else 0


def model_name_of(sae, override: str | None = None) -> str:
    return override or sae.cfg.provenance.model or "smollm2"


def load_lm(name: str, dtype: str = "auto"):
    """Load the model; "auto" = bfloat16 only where the CPU computes it natively, else float32."""
    from saekit.models import load_model, resolve_dtype

    return load_model(name, dtype=resolve_dtype(dtype))


def open_session(
    sae_folder: str | Path,
    *,
    model: str | None = None,
    dtype: str = "auto",
    hook_point: str | None = None,
    lm=None,
    device: str = "auto",
) -> SteerSession:
    """Load SAE + calibration + model (or reuse `lm`) on `device` (auto | cpu | cuda | cuda:N)."""
    from saekit.device import resolve_device
    from saekit.steer.calibration import load_calibration

    dev = resolve_device(device)
    sae = load_sae_folder(sae_folder).to(dev).eval()
    cal = load_calibration(sae_folder, d_sae=sae.d_sae)
    lm = lm if lm is not None else load_lm(model_name_of(sae, model), dtype)
    lm.model.to(dev)
    hp = hook_point_of(sae, hook_point)
    return SteerSession(sae, str(sae_folder), cal, lm, hp)
