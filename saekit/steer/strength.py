"""Steering strengths with units: `12` (abs), `0.5norm`, `4max`.

- `abs`  : the method's native unit (a latent value for latent methods, a length for additive).
- `norm` : a fraction of the mean activation norm at the hook point -> an activation-space length.
- `max`  : a multiple of the feature's observed max activation (when active) -> a latent value.

Why one conversion: a latent value `v` of feature j moves the activation by `v · g_j` with
`g_j = |W_dec_j| / input_scale` (`saekit.steer.methods.feature_gain`). So `norm` and `max` are each
resolved to a length *and* a latent value, and a method takes the one in its own space. `0.5norm`
therefore pushes the activation equally far with additive, clamp or DiffMean, which is what makes a
sweep across methods comparable. `norm` and `max` need `saekit scale` to have run (calibration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from saekit.errors import SteeringError

UNITS = ("abs", "norm", "max")
_RE = re.compile(r"^\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>abs|norm|max)?\s*$")


@dataclass(frozen=True)
class Strength:
    """A steering strength: `value` in `unit`."""

    value: float
    """The number as written (e.g. 4 for `4max`)."""
    unit: Literal["abs", "norm", "max"] = "abs"
    """`abs`, `norm` (fraction of mean activation norm) or `max` (multiple of the feature's max)."""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise SteeringError(f"unknown strength unit {self.unit!r}; use one of {', '.join(UNITS)}")

    def __str__(self) -> str:
        v = f"{self.value:g}"
        return v if self.unit == "abs" else f"{v}{self.unit}"

    @property
    def needs_calibration(self) -> bool:
        return self.unit != "abs"


def parse_strength(text: str | float | int | Strength) -> Strength:
    """`"4max"` -> Strength(4, "max"); `"0.5norm"`, `"12"`, `"12abs"`, numbers are abs."""
    if isinstance(text, Strength):
        return text
    if isinstance(text, (int, float)):
        return Strength(float(text), "abs")
    m = _RE.match(str(text))
    if m is None:
        raise SteeringError(
            f"cannot parse strength {text!r}: expected a number with an optional unit, e.g. '12' (abs), "
            f"'0.5norm' (fraction of the mean activation norm) or '4max' (multiple of the feature's max)"
        )
    return Strength(float(m.group("value")), m.group("unit") or "abs")


def parse_strengths(text: str | list) -> list[Strength]:
    """Comma-separated list (`"0.25norm,0.5norm,1norm"`) or a list of items."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = [parse_strength(t) for t in items if str(t).strip()]
    if not out:
        raise SteeringError(f"no strengths in {text!r}; give e.g. '0.25norm,0.5norm,1norm,2norm'")
    return out


def resolve(
    strength: Strength,
    space: str,
    *,
    gain: float | None = None,
    mean_norm: float | None = None,
    feature_max: float | None = None,
    feature: int | None = None,
    sae_folder: str | None = None,
) -> float:
    """Absolute strength in `space` ("activation" length or "latent" value).

    `gain` = g_j of the target feature (None for non-SAE directions such as DiffMean, where only
    `abs` and `norm` make sense unless a reference feature's max and gain are supplied).
    Missing calibration raises SteeringError that names `saekit scale`.
    """
    if space not in ("activation", "latent"):
        raise SteeringError(f"unknown strength space {space!r}")
    if strength.unit == "abs":
        return strength.value
    where = f" for {sae_folder}" if sae_folder else ""
    fix = f"run `saekit scale --sae {sae_folder or '<sae folder>'} --model <model> --corpus <corpus>` first"
    if strength.unit == "norm":
        if mean_norm is None:
            raise SteeringError(
                f"strength {strength} needs the mean activation norm at the hook point, "
                f"but no calibration (scales.json) was found{where}; {fix}"
            )
        length = strength.value * mean_norm
        if space == "activation":
            return length
        if not gain:
            raise SteeringError(
                f"strength {strength}: feature {feature} has a zero decoder row, cannot convert"
            )
        return length / gain
    if feature_max is None:
        raise SteeringError(
            f"strength {strength} needs feature {feature}'s max activation, but no calibration "
            f"(scales.json / scales.safetensors) was found{where}; {fix}"
        )
    if feature_max <= 0:
        raise SteeringError(
            f"strength {strength}: feature {feature} never fired during calibration (max activation 0), so "
            f"'max' units are undefined for it; use 'norm' or 'abs' units, or calibrate on more tokens"
        )
    latent = strength.value * feature_max
    if space == "latent":
        return latent
    if gain is None:
        raise SteeringError(f"strength {strength}: 'max' units need an SAE feature; use 'norm' or 'abs'")
    return latent * gain


def resolve_for_features(
    strength: Strength | str, method_space: str, sae, features, cal=None, sae_folder: str | None = None
) -> list[float]:
    """One absolute strength per feature for a method whose native unit is `method_space`."""
    from saekit.steer.methods import feature_gain

    strength = parse_strength(strength)
    gains = feature_gain(sae, features).float().tolist()
    out = []
    for j, g in zip(list(features), gains):
        out.append(
            resolve(
                strength,
                method_space,
                gain=g,
                mean_norm=None if cal is None else cal.mean_norm,
                feature_max=None if cal is None else float(cal.max_active[int(j)]),
                feature=int(j),
                sae_folder=sae_folder,
            )
        )
    return out


def method_strengths(
    text: str, method: str, sae, features, cal=None, sae_folder: str | None = None
) -> list[float]:
    """One absolute strength per feature for `method` from a `--strength` value: one strength for
    every feature, or one per feature comma-separated, each resolved in the method's native space
    (`resolve_for_features`). A method that takes no strength (ablate) gets zeros, whatever `text` says."""
    from saekit.steer.registry import get_method

    spec = get_method(method)
    features = list(features)
    if not spec.takes_strength:
        return [0.0] * len(features)
    strengths = parse_strengths(text)
    if len(strengths) not in (1, len(features)):
        raise SteeringError(
            f"{len(strengths)} strengths for {len(features)} features; give one, or one per feature"
        )
    out: list[float] = []
    for i, j in enumerate(features):
        st = strengths[0] if len(strengths) == 1 else strengths[i]
        out += resolve_for_features(st, spec.space, sae, [j], cal, sae_folder)
    return out
