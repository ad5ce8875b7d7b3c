"""re-n-y/sae (also published as RE-N-Y/finebooru) hub folders: `config.json` + `model.safetensors`.

Written by `huggingface_hub.PyTorchModelHubMixin`, so config.json holds the class's init arguments:
`features` (d_in), `pages` (d_sae), and `k` for TopK / `bandwidth`, `jumpthreshold` for JumpReLU.
Tensors are nn.Linear weights (`encoder.weight [F, D]`, `decoder.weight [D, F]`). The classes of its
`autoencoder.py` (which the folder does not name; told apart by their tensors and keys):
- TopkSparseAutoencoder (`k` in config): `topk(relu(encoder(x - bias)))`, `decoder(f) + bias`.
- SparseAutoencoder (standard): `relu(encoder(x - bias)) * ||decoder column j||`; decode divides the
  norms back out: `decoder(f / norms) + bias`. The norms are folded into W_enc, b_enc and W_dec.
- GatedAutoEncoder (`gate_bias`): `x_enc = encoder(x - decoder_bias)` (no bias), gate
  `x_enc + gate_bias > 0`, magnitude `relu(exp(r_mag) * x_enc + mag_bias)`, times the decoder norms
  (folded into r_mag + log(norm), mag_bias * norm and W_dec / norm).
- JumpReLUSparseAutoencoder (`logthres`): `p = relu(encoder(x - bias))`, `p * (p > exp(logthres))`.
Hub folder names carry provenance: `cc3m-text-topk-lr-3e-4-k-4-expansion-4` (dataset, tower, arch, lr,
k, expansion) and `transformer_blocks.18-1` (FLUX block 18, stream 1); both are parsed when present.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.errors import SAEFormatError
from saekit.formats.common import (
    FOLD_DTYPE,
    assemble,
    check_int,
    expect_shape,
    make_config,
    native_dtype,
    positive_number,
    read_json,
    read_safetensors,
    require,
)
from saekit.sae.config import Provenance

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_RUN = re.compile(r"^(?P<data>[a-z0-9]+)-(?P<tower>text|vision|image)-(?P<arch>[a-z]+)(?:-|$)")
_BLOCK = re.compile(r"(?P<hook>(?:single_)?transformer_blocks\.(?P<layer>\d+))(?:-(?P<stream>\d+))?$")


def looks_like_reny(folder: Path) -> bool:
    cfg = folder / CONFIG_FILE
    if not (cfg.is_file() and (folder / WEIGHTS_FILE).is_file()):
        return False
    try:
        raw = read_json(cfg)
    except SAEFormatError:
        return False
    return "features" in raw and "pages" in raw and "schema_version" not in raw


def parse_hub_name(parts: list[str]) -> dict[str, Any]:
    """Provenance facts from re-n-y hub folder names (the last path parts), e.g.
    `cc3m-text-topk-lr-3e-4-k-4-expansion-4` -> tower text;
    `transformer_blocks.18-1` -> block 18, stream 1."""
    out: dict[str, Any] = {}
    for part in parts:
        if m := _RUN.match(part):
            out["tower"] = "text" if m["tower"] == "text" else "vision"
            out["source_name"] = part
        if m := _BLOCK.search(part):
            out.update(hook_point=m["hook"], layer=int(m["layer"]), source_name=part)
            if m["stream"] is not None:
                out["stream"] = m["stream"]
    return out


def _class_of(cfg: dict[str, Any], tensors: dict[str, Tensor]) -> str:
    if "logthres" in tensors:
        return "JumpReLUSparseAutoencoder"
    if "gate_bias" in tensors:
        return "GatedAutoEncoder"
    if "k" in cfg:
        return "TopkSparseAutoencoder"
    return "SparseAutoencoder"


_NEEDS = {
    "TopkSparseAutoencoder": ["encoder.weight", "encoder.bias", "decoder.weight", "bias"],
    "SparseAutoencoder": ["encoder.weight", "encoder.bias", "decoder.weight", "bias"],
    "JumpReLUSparseAutoencoder": ["encoder.weight", "encoder.bias", "decoder.weight", "bias", "logthres"],
    "GatedAutoEncoder": [
        "encoder.weight",
        "decoder.weight",
        "decoder_bias",
        "gate_bias",
        "mag_bias",
        "r_mag",
    ],
}
_ARCH = {
    "TopkSparseAutoencoder": "topk",
    "SparseAutoencoder": "relu",
    "JumpReLUSparseAutoencoder": "jumprelu",
    "GatedAutoEncoder": "gated",
}


def _convert(name: str, t: dict[str, Tensor], d_in: int, d_sae: int, src: Path) -> dict[str, Tensor]:
    hint = f"config.json (features={d_in}, pages={d_sae})"
    W_enc = expect_shape(t, "encoder.weight", (d_sae, d_in), src, hint).T.contiguous()
    W_dec = expect_shape(t, "decoder.weight", (d_in, d_sae), src, hint).T.contiguous()
    bias = "decoder_bias" if name == "GatedAutoEncoder" else "bias"
    out = {"W_enc": W_enc, "W_dec": W_dec, "b_dec": expect_shape(t, bias, (d_in,), src, hint)}
    if name == "GatedAutoEncoder":
        norms = W_dec.norm(dim=-1)
        for n in ("gate_bias", "mag_bias", "r_mag"):
            expect_shape(t, n, (d_sae,), src, hint)
        out.update(b_enc=t["gate_bias"], r_mag=t["r_mag"] + norms.log(), b_mag=t["mag_bias"] * norms)
        out["W_dec"] = W_dec / norms[:, None]
        return out
    b_enc = expect_shape(t, "encoder.bias", (d_sae,), src, hint)
    if name == "SparseAutoencoder":  # latents scaled by the decoder column norms: fold them
        norms = W_dec.norm(dim=-1)
        W_enc, b_enc, out["W_dec"] = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    if name == "JumpReLUSparseAutoencoder":
        out["log_threshold"] = expect_shape(t, "logthres", (d_sae,), src, hint)
    out.update(W_enc=W_enc, b_enc=b_enc)
    return out


def load_reny(folder: str | Path, device: str | torch.device | None = None):
    """Convert a re-n-y/sae folder (any of its four classes) into a native SAE with identical outputs."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    cfg = read_json(cfg_path)
    src = folder / WEIGHTS_FILE
    tensors = read_safetensors(src)
    for key in ("features", "pages"):
        if key not in cfg:
            raise SAEFormatError(f"{cfg_path} lacks {key!r}; not a re-n-y/sae config (features, pages, k)")
    d_in = check_int(cfg["features"], "features", cfg_path)
    d_sae = check_int(cfg["pages"], "pages", cfg_path)
    name = _class_of(cfg, tensors)
    require(tensors, _NEEDS[name], src, f"re-n-y {name}")
    t = {n: tensors[n].to(FOLD_DTYPE) for n in _NEEDS[name]}
    out = _convert(name, t, d_in, d_sae, src)
    k = check_int(cfg["k"], "k", cfg_path) if name == "TopkSparseAutoencoder" else None
    if k is not None and k > d_sae:
        raise SAEFormatError(f"{cfg_path}: k={k} exceeds pages={d_sae}; the config is corrupt")
    out["input_scale"] = torch.ones((), dtype=torch.float32)
    facts = parse_hub_name([p for p in folder.resolve().parts[-4:]])
    facts.setdefault("source_name", folder.name)
    scfg = make_config(
        cfg_path,
        d_in=d_in,
        d_sae=d_sae,
        arch=_ARCH[name],
        k=k,
        dtype=native_dtype(tensors["decoder.weight"].dtype),
        normalize_decoder=False,
        jumprelu_bandwidth=positive_number(cfg.get("bandwidth", 0.001), "bandwidth", cfg_path),
        provenance=Provenance(source_format="reny", **facts),
    )
    return assemble(scfg, out, src, device)
