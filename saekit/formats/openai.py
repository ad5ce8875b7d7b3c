"""openai/sparse_autoencoder checkpoints (`.pt`): the state dict of its `Autoencoder`.

Keys: `pre_bias [D]`, `encoder.weight [F, D]`, `latent_bias [F]`, `decoder.weight [D, F]` (or, for a
tied decoder, none: `W_dec = encoder.weight`), stats buffers, and two plain entries: `activation`
(`"TopK"`, `"ReLU"`) and `activation_state_dict` (`{"k": int, "postact_fn": "ReLU" | "Identity"}`).
Math: `latents = act(encoder(x' - pre_bias) + latent_bias)`, `recons = decoder(latents) + pre_bias`,
where, as in its `from_state_dict`, TopK checkpoints are layer-normalised per row
(`x' = (x - mean) / (std + 1e-5)`, output `recons * std + mean`): native `normalization="layer_norm"`.
TopK keeps the top k pre-activations then applies `postact_fn` (ReLU: native topk; Identity: native
topk_signed). Loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.errors import SAEFormatError
from saekit.formats.common import (
    FOLD_DTYPE,
    assemble,
    check_int,
    expect_shape,
    load_torch_weights_only,
    make_config,
    matrix_dims,
    native_dtype,
    require,
    section,
    tensor_dict,
)
from saekit.sae.config import Provenance

KEYS = ("pre_bias", "encoder.weight", "latent_bias")


def matches_keys(keys: set[str]) -> bool:
    return set(KEYS) <= keys


def _arch(state: dict, path: Path) -> tuple[str, int | None, bool]:
    """(native arch, k, layer-normalised) from the `activation` entries."""
    act = state.get("activation", "ReLU")
    if not isinstance(act, str):
        raise SAEFormatError(
            f"{path}: the 'activation' entry must name the activation ('ReLU' or 'TopK'), found "
            f"{type(act).__name__}; the file is corrupt — re-download it"
        )
    if act == "ReLU":
        return "relu", None, False
    if act == "TopK":
        sub = section(state, "activation_state_dict", path)
        if "k" not in sub:
            raise SAEFormatError(f"{path}: activation 'TopK' without activation_state_dict['k']")
        post = sub.get("postact_fn", "ReLU")
        if post not in ("ReLU", "Identity"):
            raise SAEFormatError(f"{path}: TopK postact_fn {post!r} is not supported (ReLU or Identity)")
        return ("topk" if post == "ReLU" else "topk_signed"), check_int(sub["k"], "k", path), True
    raise SAEFormatError(
        f"{path}: activation {act!r} has no native equivalent (supported: 'ReLU', 'TopK'); "
        "an 'Identity' activation is a dense autoencoder, not a sparse one"
    )


def load_openai(path: str | Path, device: str | torch.device | None = None):
    """Convert an openai/sparse_autoencoder `.pt` into a native SAE with identical latents/reconstructions."""
    path = Path(path)
    state = load_torch_weights_only(path)
    tensors = tensor_dict(state, path, "an openai/sparse_autoencoder Autoencoder")
    used = [*KEYS, *(["decoder.weight"] if "decoder.weight" in tensors else [])]
    require(tensors, used, path, "an openai/sparse_autoencoder Autoencoder")
    arch, k, layer_norm = _arch(state, path)
    d_sae, d_in = matrix_dims(tensors, "encoder.weight", path)
    hint = f"encoder.weight (d_in={d_in}, d_sae={d_sae})"
    t = {n: tensors[n].to(FOLD_DTYPE) for n in used}
    W_enc = t["encoder.weight"].T.contiguous()
    if "decoder.weight" in t:
        W_dec = expect_shape(t, "decoder.weight", (d_in, d_sae), path, hint).T.contiguous()
    else:  # TiedTranspose decoder: decoder(f) = f @ encoder.weight
        W_dec = t["encoder.weight"].clone()
    out = {
        "W_enc": W_enc,
        "b_enc": expect_shape(t, "latent_bias", (d_sae,), path, hint),
        "W_dec": W_dec,
        "b_dec": expect_shape(t, "pre_bias", (d_in,), path, hint),
        "input_scale": torch.ones((), dtype=torch.float32),
    }
    scfg = make_config(
        path,
        d_in=int(d_in),
        d_sae=int(d_sae),
        arch=arch,
        k=k,
        dtype=native_dtype(tensors["encoder.weight"].dtype),
        normalize_decoder=False,
        normalization="layer_norm" if layer_norm else "none",
        provenance=Provenance(source_format="openai", source_name=path.name),
    )
    return assemble(scfg, out, path, device)
