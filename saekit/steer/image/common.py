"""What every image-steering path shares: strengths in absolute units, the conditioning edit a method
names, and the side-by-side PNG (atomic writes)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.errors import SteeringError

CONDITIONING_MODES = {"clamp": "set", "ablate": "set", "boost_active": "add"}
"""Steering method -> conditioning edit: clamp sets f_j := s, ablate sets 0, boost_active adds s."""


def absolute_strengths(
    strength: str, features: Sequence[int], sae, sae_path: str, space: str, *, ablate: bool = False
) -> list[float]:
    """One absolute strength per feature in the method's `space` ("latent" or "activation")."""
    from saekit.steer.calibration import load_calibration
    from saekit.steer.strength import parse_strengths, resolve_for_features

    if ablate:
        return [0.0] * len(features)
    strengths = parse_strengths(strength)
    if len(strengths) not in (1, len(features)):
        raise SteeringError(
            f"{len(strengths)} strengths for {len(features)} features; give one, or one per feature"
        )
    cal = load_calibration(sae_path, d_sae=sae.d_sae)
    out: list[float] = []
    for i, j in enumerate(features):
        st = strengths[0] if len(strengths) == 1 else strengths[i]
        out += resolve_for_features(st, space, sae, [j], cal, str(sae_path))
    return out


class ConditioningEdit(NamedTuple):
    """A conditioning-level edit resolved from --method / --strength."""

    mode: str
    """"set" (f_j := value) or "add" (f_j += value)."""
    values: Tensor | None
    """One latent value per feature; None = the current values (set) — no edit at all."""
    description: str
    """Human-readable summary, e.g. `set f22420=40`."""


def conditioning_edit(
    method: str, strength: str, features: Sequence[int], sae, sae_path: str
) -> ConditioningEdit:
    """Map --method/--strength to an edit of the SAE latents of a conditioning embedding."""
    if method not in CONDITIONING_MODES:
        raise SteeringError(
            f"conditioning embeddings are edited with clamp (set f_j := s), ablate (set 0) or boost_active "
            f"(add s to f_j), the SAE error kept; found --method {method}"
        )
    mode = CONDITIONING_MODES[method]
    if strength.strip() == "current":
        if method != "clamp":
            raise SteeringError("--strength current sets features to their current values: use it with clamp")
        return ConditioningEdit("set", None, "set " + ", ".join(f"f{j}=current" for j in features))
    try:
        values = absolute_strengths(strength, features, sae, sae_path, "latent", ablate=method == "ablate")
    except SteeringError as exc:
        if "calibration" not in str(exc):
            raise
        raise SteeringError(f"{exc}; or give an absolute latent value, e.g. --strength 40") from exc
    verb = "set" if mode == "set" else "add"
    shown = ", ".join(f"f{j}{'=' if mode == 'set' else '+='}{v:.3g}" for j, v in zip(features, values))
    return ConditioningEdit(mode, torch.tensor(values), f"{verb} {shown}")


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_pair(unsteered, steered, out: Path) -> Path:
    """Write unsteered|steered as one PNG, plus each image beside it (atomic writes)."""
    from PIL import Image

    from saekit.atomic import write_bytes_atomic

    both = Image.new("RGB", (unsteered.width + steered.width, max(unsteered.height, steered.height)))
    both.paste(unsteered.convert("RGB"), (0, 0))
    both.paste(steered.convert("RGB"), (unsteered.width, 0))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, _png(both))
    write_bytes_atomic(out.with_name(f"{out.stem}_unsteered.png"), _png(unsteered))
    write_bytes_atomic(out.with_name(f"{out.stem}_steered.png"), _png(steered))
    return out
