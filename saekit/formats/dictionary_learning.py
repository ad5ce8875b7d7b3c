"""saprmarks/dictionary_learning checkpoints: `ae.pt` (a torch state dict) + `config.json`.

`config.json` is `{"trainer": {"dict_class", "activation_dim", "dict_size", "k", "lm_name", "layer",
"submodule_name", ...}, "buffer": {...}}`. `ae.pt` is loaded with `weights_only=True` only. Classes
(state-dict keys -> encode):
- AutoEncoder: `encoder.weight [F,D]`, `encoder.bias`, `decoder.weight [D,F]`, `bias [D]`;
  `relu(encoder(x - bias))`.
- AutoEncoderNew: `encoder.*`, `decoder.weight`, `decoder.bias`; `relu(encoder(x))` (no centring: folded).
- GatedAutoEncoder: `encoder.weight` (no bias), `decoder_bias`, `gate_bias`, `mag_bias`, `r_mag`,
  `decoder.weight`; gate = `encoder(x - decoder_bias) + gate_bias`, magnitude `exp(r_mag) * ... + mag_bias`.
- AutoEncoderTopK: `encoder.*`, `decoder.weight`, `b_dec`, buffers `k`, `threshold`;
  `topk(relu(encoder(x - b_dec)))` (the threshold is unused at default inference).
- BatchTopKSAE / MatryoshkaBatchTopKSAE: as TopK (Matryoshka with `W_enc [D,F]`, `W_dec [F,D]`) but
  inference is `relu(pre) * (relu(pre) > threshold)`; a never-estimated threshold (-1) means plain ReLU.
- JumpReluAutoEncoder: `W_enc [D,F]`, `b_enc`, `W_dec [F,D]`, `b_dec`, `threshold [F]`;
  `relu(pre * (pre > threshold))` with `pre = x W_enc + b_enc` (apply_b_dec_to_input=False: folded).
- VSAETopK (variational TopK fork): `encoder.*`, `decoder.weight`, `k`, optional `var_encoder.*`
  (unused at inference, which takes the mean `z = encoder(x')`); keeps the k entries of z largest in
  absolute value WITH their sign (native topk_abs). `use_april_update_mode` true: `decoder.bias`,
  `x' = x` (folded); false: `bias`, `x' = x - bias`, decode adds `bias`.
Final `ae.pt` files already have the activation-norm factor folded into the biases; a mid-training
backup (`{"ae": state_dict, "norm_factor": f, ...}`) does not, so `input_scale = 1/f` there.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from saekit.errors import SAEFormatError
from saekit.formats.common import (
    FOLD_DTYPE,
    assemble,
    check_int,
    count,
    expect_shape,
    fold_input_bias,
    load_torch_weights_only,
    make_config,
    matrix_dims,
    native_dtype,
    positive_number,
    read_json,
    require,
    safe_log_threshold,
    scalar,
    tensor_dict,
    text,
)
from saekit.sae.config import Provenance

WEIGHTS_FILE = "ae.pt"
CONFIG_FILE = "config.json"

#: dict_class -> (native arch, state-dict keys that identify it)
DICT_CLASSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "GatedAutoEncoder": (
        "gated",
        ("encoder.weight", "decoder.weight", "decoder_bias", "gate_bias", "mag_bias", "r_mag"),
    ),
    "JumpReluAutoEncoder": ("jumprelu", ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")),
    "MatryoshkaBatchTopKSAE": ("batchtopk", ("W_enc", "b_enc", "W_dec", "b_dec", "threshold", "k")),
    "BatchTopKSAE": (
        "batchtopk",
        ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "threshold", "k"),
    ),
    "AutoEncoderTopK": ("topk", ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k")),
    # after AutoEncoderTopK (whose keys include these) and before AutoEncoderNew (a subset of these)
    "VSAETopK": ("topk_abs", ("encoder.weight", "encoder.bias", "decoder.weight", "k")),
    "AutoEncoderNew": ("relu", ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")),
    "AutoEncoder": ("relu", ("encoder.weight", "encoder.bias", "decoder.weight", "bias")),
}


def looks_like_dictionary_learning(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".pt"
    return (path / WEIGHTS_FILE).is_file()


def _find_config(weights: Path) -> dict[str, Any] | None:
    """config.json beside `ae.pt`, or two levels up for `checkpoints/ae_<step>.pt`."""
    for folder in (weights.parent, weights.parent.parent):
        if (folder / CONFIG_FILE).is_file():
            cfg = read_json(folder / CONFIG_FILE)
            if isinstance(cfg.get("trainer"), dict):
                return cfg
    return None


def _guess_class(state: dict[str, Tensor], source: Path) -> str:
    """Without a config, pick the class whose identifying keys the state dict has (BatchTopK needs config)."""
    for name, (_, keys) in DICT_CLASSES.items():
        if name in ("BatchTopKSAE",):  # same keys as AutoEncoderTopK; ambiguous without config.json
            continue
        if all(k in state for k in keys):
            return name
    raise SAEFormatError(
        f"{source}: cannot tell which dictionary_learning class wrote this state dict (keys "
        f"{sorted(state)[:12]}) "
        f"and there is no {CONFIG_FILE} with trainer.dict_class beside it; known classes: "
        f"{', '.join(DICT_CLASSES)}"
    )


def _split_checkpoint(obj: Any, source: Path) -> tuple[dict[str, Tensor], float]:
    """(state dict, input scale) from a final state dict or a mid-training backup dict."""
    scale = 1.0
    if isinstance(obj, dict) and isinstance(obj.get("ae"), dict):
        nf = obj.get("norm_factor")
        if nf is not None:
            scale = 1.0 / positive_number(nf, "the backup's norm_factor", source)
        obj = obj["ae"]
    state = tensor_dict(obj, source, "a dictionary_learning state dict")
    if not state:
        raise SAEFormatError(f"{source} holds no tensors; expected an SAE state dict")
    return state, scale


def _class_tensors(
    name: str, s: dict[str, Tensor], trainer: dict, W_enc: Tensor, b_dec: Tensor, weights: Path, hint: str
) -> dict[str, Tensor]:
    """The native encoder bias (and class-specific tensors) of dictionary_learning class `name`."""
    d_sae = W_enc.shape[1]
    if name == "GatedAutoEncoder":
        for n in ("gate_bias", "mag_bias", "r_mag"):
            expect_shape(s, n, (d_sae,), weights, hint)
        return {"b_enc": s["gate_bias"], "b_mag": s["mag_bias"], "r_mag": s["r_mag"]}
    if name == "JumpReluAutoEncoder":
        b_enc = expect_shape(s, "b_enc", (d_sae,), weights, hint)
        return {
            "b_enc": fold_input_bias(W_enc, b_enc, b_dec),  # its encoder does not subtract b_dec
            "log_threshold": safe_log_threshold(expect_shape(s, "threshold", (d_sae,), weights, hint)),
        }
    if name == "VSAETopK":
        b_enc = expect_shape(s, "encoder.bias", (d_sae,), weights, hint)
        april = "bias" not in s  # april mode keeps the bias inside the decoder Linear
        if "use_april_update_mode" in trainer and bool(trainer["use_april_update_mode"]) != april:
            raise SAEFormatError(
                f"{weights}: config.json says use_april_update_mode={trainer['use_april_update_mode']} but "
                f"the state dict has {'decoder.bias' if april else 'bias'}; config and weights disagree"
            )
        return {"b_enc": fold_input_bias(W_enc, b_enc, b_dec) if april else b_enc}
    if name == "AutoEncoderNew":
        return {
            "b_enc": fold_input_bias(W_enc, expect_shape(s, "encoder.bias", (d_sae,), weights, hint), b_dec)
        }
    bias_name = "b_enc" if "W_enc" in s else "encoder.bias"
    return {"b_enc": expect_shape(s, bias_name, (d_sae,), weights, hint)}


def _k(name: str, arch: str, state: dict[str, Tensor], trainer: dict, weights: Path) -> int | None:
    if arch not in ("topk", "batchtopk", "topk_abs"):
        return None
    k_val = trainer.get("k")
    if k_val is None and "k" in state:
        k_val = scalar(state, "k", weights, floating=False)
    if k_val is None:
        raise SAEFormatError(
            f"{weights}: {name} needs k, found neither a 'k' buffer nor trainer.k in config.json"
        )
    return check_int(k_val, "k", weights)


def _batch_threshold(name: str, state: dict[str, Tensor], weights: Path) -> Tensor:
    theta = scalar(state, "threshold", weights)
    if theta < 0:
        warnings.warn(
            f"{weights}: {name} threshold was never estimated ({theta}); its inference is then plain ReLU, "
            "converted as threshold 0",
            UserWarning,
            stacklevel=3,
        )
    return torch.tensor(max(theta, 0.0), dtype=torch.float32)


def load_dictionary_learning(
    path: str | Path, device: str | torch.device | None = None, *, dict_class: str | None = None
):
    """Convert a dictionary_learning folder (`ae.pt` + `config.json`) or `.pt` file into a native SAE.

    `dict_class` overrides the class named in config.json (needed for a bare BatchTopKSAE `.pt`).
    """
    path = Path(path)
    weights = path if path.is_file() else path / WEIGHTS_FILE
    cfg = _find_config(weights) or {}
    trainer = cfg.get("trainer", {})
    state, scale = _split_checkpoint(load_torch_weights_only(weights), weights)
    name = dict_class or trainer.get("dict_class") or _guess_class(state, weights)
    if not isinstance(name, str) or name not in DICT_CLASSES:
        raise SAEFormatError(
            f"{weights}: dictionary_learning class {name!r} is not supported; supported: "
            f"{', '.join(DICT_CLASSES)}"
        )
    arch, keys = DICT_CLASSES[name]
    require(state, [k for k in keys if k != "k"], weights, f"dictionary_learning {name}")
    s = {k: v.to(FOLD_DTYPE) if v.is_floating_point() else v for k, v in state.items()}

    if "W_enc" in state:
        d_in, d_sae = matrix_dims(state, "W_enc", weights)
        W_enc = s["W_enc"]
    else:
        d_sae, d_in = matrix_dims(state, "encoder.weight", weights)
        W_enc = s["encoder.weight"].T.contiguous()
    # the pre-encoder / decoder bias: one of these, by class (VSAETopK's depends on its update mode)
    bias_name = next((n for n in ("b_dec", "bias", "decoder_bias", "decoder.bias") if n in state), "bias")
    require(state, [bias_name], weights, f"dictionary_learning {name}")
    b_dec = s[bias_name]
    for key, expected in (("activation_dim", d_in), ("dict_size", d_sae)):
        if key in trainer and trainer[key] != expected:
            raise SAEFormatError(
                f"{weights}: config.json says trainer.{key}={trainer[key]} but the weights imply {expected}; "
                "config and weights disagree"
            )
    hint = f"the encoder shape (d_in={d_in}, d_sae={d_sae})"
    dec_name = "W_dec" if "W_dec" in state else "decoder.weight"
    W_dec = expect_shape(s, dec_name, (d_sae, d_in) if dec_name == "W_dec" else (d_in, d_sae), weights, hint)
    W_dec = W_dec if dec_name == "W_dec" else W_dec.T.contiguous()
    if tuple(b_dec.shape) != (d_in,):
        raise SAEFormatError(
            f"{weights}: decoder bias has shape {tuple(b_dec.shape)} but {hint} implies ({d_in},)"
        )
    out: dict[str, Tensor] = {"W_dec": W_dec, "b_dec": b_dec}
    out.update(_class_tensors(name, s, trainer, W_enc, b_dec, weights, hint))
    k = _k(name, arch, state, trainer, weights)
    if arch == "batchtopk":
        out["threshold"] = _batch_threshold(name, state, weights)

    out["W_enc"] = W_enc
    out["input_scale"] = torch.tensor(scale, dtype=torch.float32)
    scfg = make_config(
        weights,
        d_in=int(d_in),
        d_sae=int(d_sae),
        arch=arch,
        k=k,
        dtype=native_dtype(state[dec_name].dtype),
        normalize_decoder=False,
        normalization="expected_norm" if scale != 1.0 else "none",
        provenance=Provenance(
            source_format="dictionary_learning",
            source_name=weights.parent.name + "/" + weights.name,
            model=text(trainer.get("lm_name")),
            hook_point=text(trainer.get("submodule_name")),
            layer=count(trainer.get("layer")),
            tokens_trained=0,
        ),
    )
    return assemble(scfg, out, weights, device)
