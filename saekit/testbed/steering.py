"""Turn (method, unit, strengths, target classes) into an edit callback for the sampler.

Strength units are `saekit.steer.strength`'s (`resolve` converts them): `abs` is each method's native
unit (a latent value for surgery/clamp/boost_active, an activation length for additive/DiffMean);
`norm` is a fraction of the mean activation norm (a length, converted to a latent value by the feature
gain g_j); `max` a multiple of the feature's observed max latent (DiffMean: of its max centred
projection).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from saekit.errors import SteeringError
from saekit.sae.base import SAE
from saekit.steer.methods import add_directions, apply_method, feature_gain
from saekit.steer.registry import get_method
from saekit.steer.strength import Strength, resolve
from saekit.testbed.config import DIRECTION_METHODS
from saekit.testbed.features import ClassFeatures
from saekit.testbed.flow import Edit, StepContext


def class_direction(method: str, feats: ClassFeatures) -> tuple[Tensor, Tensor]:
    """(`[10, d]` unit directions, `[10]` their max centred projection) of a direction method."""
    if method == "diffmean":
        return feats.diffmean, feats.diffmean_max
    if not feats.directions or method not in feats.directions:
        raise SteeringError(f"no {method} directions were computed for this site (class_features)")
    return feats.directions[method], feats.directions_max[method]


def native_strength(
    method: str, unit: str, value: float, target: int, sae: SAE, feats: ClassFeatures
) -> float:
    """Strength `value` in `unit` for `target`'s feature, converted to `method`'s native unit by
    `saekit.steer.strength.resolve`, the one implementation of the units (with this site's scales as
    the calibration). A direction method's vector is a unit direction: gain 1, and its `max` is the
    largest centred projection on it."""
    strength = Strength(value, unit)
    if method in DIRECTION_METHODS:
        _, mx = class_direction(method, feats)
        return resolve(
            strength, "activation", gain=1.0, mean_norm=feats.mean_norm, feature_max=float(mx[target])
        )
    j = int(feats.feature[target])
    return resolve(
        strength,
        get_method(method).space,
        gain=float(feature_gain(sae, [j])[0]),
        mean_norm=feats.mean_norm,
        feature_max=float(feats.feature_max[target]),
        feature=j,
    )


def apply_one(method: str, x_BTD: Tensor, sae: SAE, feats: ClassFeatures, target: int, s_B: Tensor) -> Tensor:
    """Steer rows `x [B, T, d]` toward `target` with per-row native strengths `s [B]`."""
    s = s_B.reshape(-1, 1, 1).to(x_BTD.dtype)
    if method in DIRECTION_METHODS:
        return add_directions(x_BTD, class_direction(method, feats)[0][target], s).to(x_BTD.dtype)
    out = apply_method(method, x_BTD, sae, [int(feats.feature[target])], s.to(sae.dtype))
    return out.to(x_BTD.dtype)


def opposite(method: str) -> tuple[str, float]:
    """Edit for CFG's unconditional branch: the same push negated (clamp: to 0, i.e. ablate)."""
    return (method, 0.0) if method == "clamp" else (method, -1.0)


def make_edit(
    *,
    block: str,
    stream: str,
    method: str,
    sae: SAE,
    feats: ClassFeatures,
    targets: Sequence[int],
    rows_per_target: int,
    strengths_native: Tensor,
    steps: set[int],
    steer_uncond: bool = False,
) -> Edit:
    """Edit callback for one site (block, stream); see `make_site_edit`."""
    return make_site_edit(
        {(block, stream): (sae, feats, strengths_native)},
        method=method,
        targets=targets,
        rows_per_target=rows_per_target,
        steps=steps,
        steer_uncond=steer_uncond,
    )


def make_site_edit(
    sites: Mapping[tuple[str, str], tuple[SAE, ClassFeatures, Tensor]],
    *,
    method: str,
    targets: Sequence[int],
    rows_per_target: int,
    steps: set[int],
    steer_uncond: bool = False,
) -> Edit:
    """Edit callback for rows ordered target-major (`rows_per_target` rows per target, in order).

    `sites[(block, stream)] = (sae, class features, strengths_native [n_targets, rows_per_target])`:
    every listed site is edited with its own SAE (several sites = steering all blocks at once); the
    strengths are in each method's native unit for that site. Only listed sites on the listed steps
    are touched; the unconditional branch only with `steer_uncond`.
    """

    def edit(ctx: StepContext, name: str, s: str, x: Tensor) -> Tensor:
        site = sites.get((name, s))
        if site is None or ctx.step not in steps:
            return x
        if ctx.branch == "uncond" and not steer_uncond:
            return x
        sae, feats, strengths = site
        out = x.clone()
        for i, target in enumerate(targets):
            sl = slice(i * rows_per_target, (i + 1) * rows_per_target)
            st, m = strengths[i], method
            if ctx.branch == "uncond":
                m, factor = opposite(method)
                st = st * factor
            out[sl] = apply_one(m, x[sl], sae, feats, target, st)
        return out

    return edit
