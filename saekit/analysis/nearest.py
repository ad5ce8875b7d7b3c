"""Nearest features by decoder cosine: which features write almost the same direction.

Pure tensor math over the decoder rows `[d_sae, d_in]`. The rows are normalised once (one copy of the
decoder); queried features and the dictionary are then taken in chunks with a running top-k, so the
cosine buffer is O(query chunk x key chunk) whatever the dictionary size (64k latents need no
64k x 64k matrix).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _unit(x: Tensor) -> Tensor:
    x = x.detach().float()
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def nearest_by_cosine(
    dirs_FD: Tensor, features: list[int], k: int = 8, block: int = 1024, key_block: int = 8192
) -> dict[int, list[tuple[int, float]]]:
    """For each feature in `features`: the `k` other features whose decoder rows have the largest
    cosine with its own, as `[(feature, cosine), ...]`, largest first."""
    if not features:
        return {}
    F = dirs_FD.shape[0]
    k = min(k, F - 1)
    out: dict[int, list[tuple[int, float]]] = {}
    if k <= 0:
        return {f: [] for f in features}
    unit_FD = _unit(dirs_FD)
    for s in range(0, len(features), block):
        ids = torch.tensor(features[s : s + block], dtype=torch.long)
        q_QD = unit_FD[ids.to(unit_FD.device)]
        best_v = torch.full((len(ids), k), float("-inf"), device=q_QD.device)
        best_i = torch.full((len(ids), k), -1, dtype=torch.long, device=q_QD.device)
        for c in range(0, F, key_block):
            cos_QC = q_QD @ unit_FD[c : c + key_block].T
            own = (ids >= c) & (ids < c + cos_QC.shape[1])  # a feature is not its own neighbour
            cos_QC[own.nonzero().flatten(), (ids[own] - c).to(cos_QC.device)] = float("-inf")
            cols = torch.arange(c, c + cos_QC.shape[1], device=q_QD.device).expand_as(cos_QC)
            v, j = torch.cat([best_v, cos_QC], 1).topk(k, dim=1)
            best_v, best_i = v, torch.gather(torch.cat([best_i, cols], 1), 1, j)
        for q, f in enumerate(ids.tolist()):
            out[f] = [(int(i), float(v)) for i, v in zip(best_i[q].tolist(), best_v[q].tolist())]
    return out


def nearest_entries(dirs_FD: Tensor, features: list[int], k: int = 8) -> dict[int, list[dict]]:
    """`nearest_by_cosine` in the analysis document's form: `[{"feature": j, "cosine": c}, ...]`."""
    near = nearest_by_cosine(dirs_FD, features, k)
    return {f: [{"feature": j, "cosine": c} for j, c in v] for f, v in near.items()}
