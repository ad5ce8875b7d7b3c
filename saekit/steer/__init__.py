"""Steering with SAE features: pure methods, strength units, calibration, application, sweeps.

Heavy pieces (generation, sweeps, metrics) are imported from their modules, not here, so that
`saekit.steer.methods` stays import-light.
"""

from saekit.steer.calibration import Calibration, load_calibration, measure, save_calibration
from saekit.steer.methods import (
    ERROR_PRESERVING,
    METHOD_SPACE,
    METHODS,
    ablate,
    add_directions,
    additive,
    apply_method,
    boost_active,
    clamp,
    feature_gain,
    surgery,
)
from saekit.steer.strength import Strength, parse_strength, parse_strengths, resolve_for_features

__all__ = [
    "Calibration",
    "ERROR_PRESERVING",
    "METHODS",
    "METHOD_SPACE",
    "Strength",
    "ablate",
    "add_directions",
    "additive",
    "apply_method",
    "boost_active",
    "clamp",
    "feature_gain",
    "load_calibration",
    "measure",
    "parse_strength",
    "parse_strengths",
    "resolve_for_features",
    "save_calibration",
    "surgery",
]
