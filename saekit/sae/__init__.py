"""Sparse autoencoder architectures sharing one interface (see `saekit.sae.base.SAE`)."""

from saekit.sae.base import SAE
from saekit.sae.config import Provenance, SAEConfig
from saekit.sae.io import load_sae, save_sae
from saekit.sae.output import LossTerms, SAEOutput, SparseLatents
from saekit.sae.registry import architectures, build, register

#: Every registered architecture (derived from the registry; see `saekit.sae.registry`).
ARCHITECTURES = tuple(architectures())

__all__ = [
    "SAE",
    "SAEConfig",
    "Provenance",
    "ARCHITECTURES",
    "SAEOutput",
    "LossTerms",
    "SparseLatents",
    "build",
    "architectures",
    "register",
    "load_sae",
    "save_sae",
]
