"""Sparse autoencoder architectures sharing one interface (see `saekit.sae.base.SAE`)."""

from saekit.sae.base import SAE
from saekit.sae.config import ARCHITECTURES, Provenance, SAEConfig
from saekit.sae.io import load_sae, save_sae
from saekit.sae.output import LossTerms, SAEOutput, SparseLatents
from saekit.sae.registry import architectures, build

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
    "load_sae",
    "save_sae",
]
