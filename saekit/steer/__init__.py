"""Steering with SAE features: the pure math and its application to a language model.

What belongs here: the one registry of steering methods and their capabilities (`registry`), the
methods as pure tensor functions with the one error-preserving edit (`methods`), strength units
(`strength`), activation-scale calibration (`calibration`, `corpus_acts`, and `scale`, the library
entry of `saekit scale`), hooks on a running language model, seeded generation and the session
(`apply`, `generate`, `session`) and `run`, the library entry of `saekit steer` on a language model.
Choosing features for a concept lives in `saekit.steer.concept`, image generators in
`saekit.steer.image`, the protocol that compares arms in `saekit.sweep` (which this package never
imports). Only the import-light math is re-exported here; import the rest from its module.
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
