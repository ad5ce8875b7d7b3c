"""One exception family per kind of failure.

Every message names the offending file / tensor / hook, what was expected, what was found and what to
do about it, so users never have to read a traceback from deep inside torch.
"""

from __future__ import annotations


class SaekitError(Exception):
    """Base class of every error saekit raises on purpose."""


class SAEConfigError(SaekitError, ValueError):
    """A configuration value is invalid (unknown architecture, k > d_sae, ...)."""


class SAEFormatError(SaekitError):
    """An SAE folder or file is missing, truncated, corrupt, or disagrees with its config."""


class ShapeError(SaekitError, ValueError):
    """A tensor has the wrong shape for the operation (e.g. activations whose d differs from d_in)."""


class NonFiniteError(SaekitError, ValueError):
    """NaN or inf values where finite numbers are required."""


class HookPointError(SaekitError):
    """A hook point spec does not parse, names no module, or selects a stream that does not exist."""


class ModelLoadError(SaekitError):
    """A model could not be loaded (missing embedded package, unknown name, no network)."""


class CorpusError(SaekitError):
    """A corpus could not be read or is empty."""


class StoreError(SaekitError):
    """An activation store is missing, corrupt, or inconsistent with its manifest."""


class CheckpointError(SaekitError):
    """A training checkpoint cannot be used to resume (corrupt, or from a different config)."""


class FeatureSpecError(SaekitError, ValueError):
    """A feature selection spec (`0-10,top:5`) does not parse or is out of range."""


class SteeringError(SaekitError, ValueError):
    """A steering request is invalid (unknown method, bad strength unit, missing calibration)."""
