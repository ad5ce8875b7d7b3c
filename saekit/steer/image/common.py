"""What every image-steering path shares: strengths in absolute units, the conditioning edit a method
names (from the method registry's `conditioning` capability, not a table here), and the side-by-side
PNG (atomic writes)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.steer.registry import conditioning_methods, get_method


def absolute_strengths(
    strength: str, method: str, features: Sequence[int], sae, sae_path: str
) -> list[float]:
    """One absolute strength per feature in `method`'s native unit, with the calibration stored beside
    the SAE (`saekit.steer.strength.method_strengths`)."""
    from saekit.steer.calibration import load_calibration
    from saekit.steer.strength import method_strengths

    cal = load_calibration(sae_path, d_sae=sae.d_sae)
    return method_strengths(strength, method, sae, features, cal, str(sae_path))


class ConditioningEdit(NamedTuple):
    """A conditioning-level edit resolved from --method / --strength."""

    mode: str
    """"set" (f_j := value) or "add" (f_j += value)."""
    values: Tensor | None
    """One latent value per feature; None = the current values (set) — no edit at all."""
    description: str
    """Human-readable summary, e.g. `set f22420=40`."""


def _meaning(name: str) -> str:
    spec = get_method(name)
    if spec.conditioning == "add":
        return f"{name} (add s to f_j)"
    return f"{name} (set f_j := {'s' if spec.takes_strength else '0'})"


def _sets(name: str) -> bool:
    spec = get_method(name)
    return spec.conditioning == "set" and spec.takes_strength


def conditioning_edit(
    method: str, strength: str, features: Sequence[int], sae, sae_path: str
) -> ConditioningEdit:
    """Map --method/--strength to an edit of the SAE latents of a conditioning embedding; what each
    method means there is `MethodSpec.conditioning` in the method registry."""
    spec = get_method(method)
    if spec.conditioning is None:
        usable = ", ".join(_meaning(m) for m in conditioning_methods())
        raise SteeringError(
            f"conditioning embeddings are edited with {usable}, the SAE error kept; found --method {method}"
        )
    mode = spec.conditioning
    if strength.strip() == "current":
        if not _sets(method):
            raise SteeringError(
                "--strength current sets features to their current values: use it with a method that "
                f"sets a latent to a given value ({', '.join(m for m in conditioning_methods() if _sets(m))})"
            )
        return ConditioningEdit("set", None, "set " + ", ".join(f"f{j}=current" for j in features))
    try:
        values = absolute_strengths(strength, method, features, sae, sae_path)
    except SteeringError as exc:
        if "calibration" not in str(exc):
            raise
        raise SteeringError(f"{exc}; or give an absolute latent value, e.g. --strength 40") from exc
    shown = ", ".join(f"f{j}{'=' if mode == 'set' else '+='}{v:.3g}" for j, v in zip(features, values))
    return ConditioningEdit(mode, torch.tensor(values), f"{mode} {shown}")


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
