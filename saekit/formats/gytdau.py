"""gytdau/clip-sae-128 (`sparse_autoencoder_128.pth`): a plain torch state dict of a ReLU SAE on CLIP
embeddings, used for conditioning-level steering of Kandinsky 2.2.

Tensors: `encoder.weight [F, D]`, `enc_bias [F]`, `decoder.weight [D, F]`, `dec_bias [D]` (an
`encoder.bias` / `decoder.bias` is added if a variant has one). Math (its `model.py`):
`encode(x) = relu(encoder(x) + enc_bias)` — no pre-encoder bias subtraction, so `dec_bias @ W_enc`
is folded into the native encoder bias — and `decode(f) = decoder(f) + dec_bias`. Read with
`torch.load(weights_only=True)` only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.formats.common import (
    FOLD_DTYPE,
    assemble,
    expect_shape,
    fold_input_bias,
    load_torch_weights_only,
    make_config,
    matrix_dims,
    native_dtype,
    require,
    tensor_dict,
)
from saekit.sae.config import Provenance

KEYS = ("encoder.weight", "enc_bias", "decoder.weight", "dec_bias")
OPTIONAL = ("encoder.bias", "decoder.bias")


def matches_keys(keys: set[str]) -> bool:
    return set(KEYS) <= keys


def load_gytdau(path: str | Path, device: str | torch.device | None = None):
    """Convert a gytdau CLIP SAE `.pth` state dict into a native ReLU SAE with identical outputs."""
    path = Path(path)
    state = load_torch_weights_only(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    tensors = tensor_dict(state, path, "a gytdau CLIP SAE")
    used = [*KEYS, *(n for n in OPTIONAL if n in tensors)]
    require(tensors, used, path, "a gytdau CLIP SAE")
    d_sae, d_in = matrix_dims(tensors, "encoder.weight", path)
    hint = f"encoder.weight (d_in={d_in}, d_sae={d_sae})"
    t = {k: tensors[k].to(FOLD_DTYPE) for k in used}
    W_enc = t["encoder.weight"].T.contiguous()
    b_enc = expect_shape(t, "enc_bias", (d_sae,), path, hint)
    if "encoder.bias" in t:
        b_enc = b_enc + expect_shape(t, "encoder.bias", (d_sae,), path, hint)
    b_dec = expect_shape(t, "dec_bias", (d_in,), path, hint)
    if "decoder.bias" in t:
        b_dec = b_dec + expect_shape(t, "decoder.bias", (d_in,), path, hint)
    W_dec = expect_shape(t, "decoder.weight", (d_in, d_sae), path, hint).T.contiguous()
    out = {
        "W_enc": W_enc,
        "b_enc": fold_input_bias(W_enc, b_enc, b_dec),  # its encoder sees x, ours x - b_dec
        "W_dec": W_dec,
        "b_dec": b_dec,
        "input_scale": torch.ones((), dtype=torch.float32),
    }
    scfg = make_config(
        path,
        d_in=int(d_in),
        d_sae=int(d_sae),
        arch="relu",
        dtype=native_dtype(tensors["decoder.weight"].dtype),
        normalize_decoder=False,
        provenance=Provenance(source_format="gytdau", source_name=path.name),
    )
    return assemble(scfg, out, path, device)
