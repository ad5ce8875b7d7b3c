"""Steering arms: (feature selection, edit method) pairs turned into per-row edits that share a batch.

An arm is what a sweep compares: `input:clamp` (features picked by activation contrast, clamped),
`output:additive` (picked by output score, added), `decompose:additive` (the DiffMean vector written
in a few SAE decoder directions, all added at once), `sae_ts:additive` (the SAE-TS vector),
`sparse:additive` (a vector in k SAE decoder directions fitted with the LM loss on the concept's
prompted continuations), `confidence:additive` (features picked by the rise in the concept tokens'
probability), and two vector baselines: `diffmean`, and `free` (the supervised vector without the
sparsity constraint; `saekit.steer.concept.learned`). Every arm's strengths are given in
`saekit.steer.strength` units, so `0.5norm` moves the activation equally far for every arm.

`batched_edit` stacks several arms' edits into one callback over row slices, so one generate call
runs every arm × strength for a prompt (what keeps the protocol affordable on 2 CPU cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from saekit.errors import SteeringError
from saekit.steer.concept.select import Selection
from saekit.steer.methods import add_directions, apply_method, feature_gain
from saekit.steer.registry import get_method
from saekit.steer.strength import Strength, resolve

SELECTIONS = ("input", "output", "decompose", "sae_ts", "sparse", "confidence")
DIRECTION_SELECTIONS = ("decompose", "sae_ts", "sparse", "free")
"""Selections that produce one steering vector (steered additively along it)."""
SUPERVISED_SELECTIONS = ("sparse", "free", "confidence")
"""Selections that need continuations of train prompts (generated, then fitted or scored): slower,
so `saekit steer --explain-concept` leaves them out."""
VECTOR_BASELINES = ("diffmean", "free")
"""Arms that steer along a vector that is not made of SAE features (no `selection:method` name):
DiffMean, and `free`, the supervised vector without the sparsity constraint
(`saekit.steer.concept.learned`)."""


@dataclass(frozen=True)
class Arm:
    """One steering configuration for one concept at one hook point."""

    name: str
    """`selection:method`, or `diffmean`."""
    method: str
    """Edit method (`additive`, `clamp`, ...) or `direction` for a fixed vector."""
    features: tuple[int, ...] = ()
    """SAE features edited (empty for a direction)."""
    weights: tuple[float, ...] = ()
    """Relative strength per feature (the strength is split so the total push has its length)."""
    direction: Tensor | None = field(default=None, repr=False)
    """`[d]` vector for direction arms."""


def parse_arm(name: str) -> tuple[str, str]:
    """`"output:clamp"` -> ("output", "clamp"); `diffmean` -> ("diffmean", "direction")."""
    if name in VECTOR_BASELINES:
        return name, "direction"
    sel, _, method = name.partition(":")
    if sel not in SELECTIONS or not method:
        raise SteeringError(
            f"unknown sweep arm {name!r}: write selection:method with selection in {', '.join(SELECTIONS)} "
            f"(e.g. output:clamp), or one of {', '.join(VECTOR_BASELINES)}"
        )
    if sel in DIRECTION_SELECTIONS and method != "additive":
        raise SteeringError(f"arm {name!r}: {sel} produces a vector; only {sel}:additive is defined")
    get_method(method)
    return sel, method


def is_sae_arm(arm: str) -> bool:
    """Whether a record's arm steers SAE features (`selection:method`), not DiffMean or a baseline."""
    return ":" in arm


def make_arm(name: str, selection: Selection | None, diffmean_D: Tensor | None = None) -> Arm:
    """Bind an arm name to its evidence (a Selection, or the DiffMean vector)."""
    sel, method = parse_arm(name)
    if sel == "diffmean":
        return Arm(name, "direction", direction=diffmean_D)
    if selection is None:
        raise SteeringError(f"arm {name!r} needs a {sel} selection")
    if sel in DIRECTION_SELECTIONS:
        return Arm(name, "direction", selection.features, selection.weights, selection.direction)
    return Arm(name, method, selection.features, selection.weights)


def arm_strengths(arm: Arm, strength: Strength, sae, cal, folder: str | None = None) -> list[float]:
    """Absolute strength per feature of `arm` (one value for direction arms)."""
    mean_norm = None if cal is None else cal.mean_norm
    if arm.method == "direction":
        return [resolve(strength, "activation", mean_norm=mean_norm, sae_folder=folder)]
    space = get_method(arm.method).space
    gains = feature_gain(sae, list(arm.features)).float().tolist()
    out = []
    for j, g, w in zip(arm.features, gains, arm.weights):
        fmax = None if cal is None else float(cal.max_active[j])
        v = resolve(
            strength, space, gain=g, mean_norm=mean_norm, feature_max=fmax, feature=j, sae_folder=folder
        )
        out.append(v * w)
    return out


def arm_edit(arm: Arm, sae, strengths_SN: Tensor, keep_error: bool = False) -> Callable[[Tensor], Tensor]:
    """`x [S, T, d] -> x'` with row s steered at `strengths_SN[s]` (per feature, or one for a direction)."""
    s = strengths_SN[:, None, :]
    if arm.method == "direction":
        u = arm.direction.float()
        return lambda x: add_directions(x.float(), u.to(x.device), s[..., :1].to(x.device))
    s_sae = s.to(dtype=sae.dtype, device=sae.device)
    return lambda x: apply_method(
        arm.method, x, sae, list(arm.features), s_sae, keep_error=keep_error
    ).float()


def batched_edit(edits: Sequence[tuple[int, Callable[[Tensor], Tensor]]]) -> Callable[[Tensor], Tensor]:
    """One edit over stacked row blocks: `edits[i] = (n_rows_i, fn_i)` applied to consecutive slices."""

    def edit(x_BTD: Tensor) -> Tensor:
        out, start = [], 0
        for n, fn in edits:
            out.append(fn(x_BTD[start : start + n]).to(x_BTD.dtype))
            start += n
        if start != x_BTD.shape[0]:
            raise SteeringError(f"batched edit covers {start} rows but the batch has {x_BTD.shape[0]}")
        return torch.cat(out)

    return edit
