"""Round trips of the trained SmolLM2 transcoders: native save/load and sparsify export/read-back.

Run from the repository root after docs/results/transcoder/README.md's commands:
    python docs/results/transcoder/roundtrip.py
"""

import json

import torch
from safetensors.torch import load_file

import saekit
from saekit.data.paired import PairedRows, split_pair
from saekit.data.store import ActivationStore
from saekit.formats.export import ExportConfig, export_sae

torch.set_num_threads(1)
store = ActivationStore.open("runs/transcoder/mlp8")
x, y = split_pair(PairedRows(store).sample(4096, 99), store.d)
for name in ["topk_transcoder", "skip_transcoder"]:
    folder = f"runs/transcoder/{name}"
    tc = saekit.load(folder)
    again = saekit.load(folder)
    same = all(torch.equal(a, again.state_dict()[k]) for k, a in tc.state_dict().items())
    out = export_sae(ExportConfig(folder, "sparsify", f"runs/transcoder/sparsify/{name}/layers.8.mlp"))
    back = saekit.load(out)
    t = load_file(str(out / "sae.safetensors"))
    pairs = [(back.W_enc, t["encoder.weight"].T), (back.W_dec, t["W_dec"]), (back.b_dec, t["b_dec"])]
    pairs.append((back.b_enc, t["encoder.bias"]))
    if "W_skip" in t:
        pairs.append((back.W_skip, t["W_skip"].T))
    exact = all(torch.equal(a, b) for a, b in pairs)
    with torch.no_grad():
        p, q = tc.reconstruct(x), back.reconstruct(x)
    rel = float((p - q).norm() / p.norm())
    print(
        f"{name}: scales in/out {float(tc.input_scale):.5g}/{float(tc.output_scale):.5g}; reload bit-equal: "
        f"{same}; sparsify export read back tensor-for-tensor: {exact}; prediction rel. diff after export "
        f"{rel:.2e}; cfg {json.loads((out / 'cfg.json').read_text())}"
    )
