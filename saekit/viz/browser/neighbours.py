"""Nearest features by decoder cosine: which features write almost the same direction.

Pure tensor math over the decoder rows; the caller loads the SAE. Memory stays bounded for large
dictionaries by scoring the queried features in blocks.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def nearest_by_cosine(dirs_FD: Tensor, features: list[int], k: int = 8, block: int = 1024) -> dict[int, list]:
    """For each feature in `features`: the `k` other features whose decoder rows `dirs_FD [d_sae, d_in]`
    have the largest cosine with its own, as `[(feature, cosine), ...]`, largest first."""
    if not features:
        return {}
    d = dirs_FD.detach().float()
    d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = min(k, d.shape[0] - 1)
    out: dict[int, list] = {}
    for s in range(0, len(features), block):
        ids = torch.tensor(features[s : s + block], dtype=torch.long)
        cos_QF = d[ids] @ d.T
        cos_QF[torch.arange(len(ids)), ids] = -float("inf")  # a feature is not its own neighbour
        vals, idx = cos_QF.topk(k, dim=1)
        for q, f in enumerate(ids.tolist()):
            out[f] = [(int(i), float(v)) for i, v in zip(idx[q].tolist(), vals[q].tolist())]
    return out


def nearest_from_sae(sae_path: str, features: list[int], k: int = 8) -> dict[int, list[dict]]:
    """Load an SAE (any format `saekit.load` reads) and list each feature's nearest decoder neighbours."""
    import saekit

    sae = saekit.load(sae_path)
    near = nearest_by_cosine(sae.decoder_directions(), features, k)
    return {f: [{"feature": j, "cosine": c} for j, c in v] for f, v in near.items()}
