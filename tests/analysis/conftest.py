"""Fixtures: a tiny SAE and a tiny activation store written in the documented shard format."""
import json

import pytest
import torch
from safetensors.torch import save_file

from saekit.sae import SAEConfig, build

torch.set_num_threads(2)


def write_store(folder, acts, doc_id, position, token_id, shard_rows=70):
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, s in enumerate(range(0, acts.shape[0], shard_rows)):
        e = min(s + shard_rows, acts.shape[0])
        name = f"shard_{i:05d}.safetensors"
        save_file({"acts": acts[s:e].contiguous(), "doc_id": doc_id[s:e].int().contiguous(),
                   "position": position[s:e].int().contiguous(), "token_id": token_id[s:e].int().contiguous()},
                  str(folder / name))
        shards.append({"file": name, "count": e - s})
    (folder / "manifest.json").write_text(json.dumps({
        "model": "tiny", "hook_point": "model.layers.0", "d": acts.shape[1], "count": acts.shape[0],
        "dtype": "float32", "shards": shards}))
    return folder


@pytest.fixture
def tiny_store(tmp_path):
    g = torch.Generator().manual_seed(0)
    n, d = 300, 8
    acts = torch.randn(n, d, generator=g)
    doc_id = torch.arange(n) // 50
    position = torch.arange(n) % 50
    token_id = torch.randint(0, 20, (n,), generator=g)
    return write_store(tmp_path / "store", acts, doc_id, position, token_id), acts, doc_id, token_id


@pytest.fixture(params=["topk", "relu"])
def tiny_sae(request):
    k = 3 if request.param == "topk" else None
    return build(SAEConfig(d_in=8, d_sae=16, arch=request.param, k=k), seed=0).eval()
