"""Nearest features by decoder cosine for the browser (the math is saekit/analysis/nearest.py)."""

from __future__ import annotations

from saekit.analysis.nearest import nearest_by_cosine, nearest_entries

__all__ = ["nearest_by_cosine", "nearest_from_sae"]


def nearest_from_sae(sae_path: str, features: list[int], k: int = 8) -> dict[int, list[dict]]:
    """Load an SAE (any format `saekit.load` reads) and list each feature's nearest decoder neighbours."""
    import saekit

    sae = saekit.load(sae_path)
    return nearest_entries(sae.decoder_directions(), features, k)
