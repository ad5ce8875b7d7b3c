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
from torch import Tensor

from saekit.errors import SAEFormatError
from saekit.formats.common import (
    FOLD_DTYPE,
    assemble,
    expect_shape,
    fold_input_bias,
    load_torch_weights_only,
    native_dtype,
    require,
)
from saekit.sae.config import Provenance, SAEConfig

KEYS = ("encoder.weight", "enc_bias", "decoder.weight", "dec_bias")


def matches_keys(keys: set[str]) -> bool:
    return set(KEYS) <= keys


def load_gytdau(path: str | Path, device: str | torch.device | None = None):
    """Convert a gytdau CLIP SAE `.pth` state dict into a native ReLU SAE with identical outputs."""
    path = Path(path)
    state = load_torch_weights_only(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SAEFormatError(f"{path} holds a {type(state).__name__}, expected a state dict of tensors")
    tensors: dict[str, Tensor] = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    require(tensors, list(KEYS), path, "a gytdau CLIP SAE")
    d_sae, d_in = tensors["encoder.weight"].shape
    hint = f"encoder.weight (d_in={d_in}, d_sae={d_sae})"
    t = {k: v.to(FOLD_DTYPE) for k, v in tensors.items() if v.is_floating_point()}
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
    scfg = SAEConfig(
        d_in=int(d_in),
        d_sae=int(d_sae),
        arch="relu",
        dtype=native_dtype(tensors["decoder.weight"].dtype),
        normalize_decoder=False,
        provenance=Provenance(source_format="gytdau", source_name=path.name),
    )
    return assemble(scfg, out, path, device)
