"""OSU-NLP-Group/saev checkpoints (`sae.pt`): one JSON header line, then a `torch.save`d state dict.

State dict: `W_enc [D, F]`, `b_enc [F]`, `W_dec [F, D]`, `b_dec [D]`, and for BatchTopK the buffer
`activation.threshold []`. The header's schema decides the config layout (see saev's `load`):
- none (original): raw config keys, `d_vit`, `exp_factor`; always ReLU.
- 1: `cls` names the activation (`Relu` / `TopK` / `BatchTopK`, with `cfg.top_k`), or is
  `SparseAutoencoderConfig` with `cfg.activation = {"cls", "params": {"top_k", ...}}`.
- 2-5: `cfg.activation = {"cls", "params"}`; `d_model`, `d_sae` (or `exp_factor`).
Math: `h = x W_enc + b_enc` (schema >= 2; the original and schema-1 code encoded `x - b_dec`),
ReLU `relu(h)`; TopK keeps the top k of `h` WITHOUT a ReLU (native topk_signed); BatchTopK at
inference is `h * (h > threshold)`, or `relu(h)` while the threshold is <= 0 (native batchtopk);
decode `f W_dec + b_dec` (Matryoshka prefixes only matter in training). The tensor part is read with
`torch.load(weights_only=True)` from the bytes after the header; nothing is unpickled beyond that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from saekit.errors import SAEFormatError
from saekit.formats.common import (
    FOLD_DTYPE,
    assemble,
    check_int,
    expect_shape,
    fold_input_bias,
    make_config,
    native_dtype,
    require,
    scalar,
    section,
    tensor_dict,
    torch_load_bytes,
)
from saekit.sae.config import Provenance

WEIGHTS_FILE = "sae.pt"
SCHEMAS = (1, 2, 3, 4, 5)
_ACT = {"Relu": "relu", "TopK": "topk_signed", "BatchTopK": "batchtopk"}


def has_json_header(path: Path) -> bool:
    """True when the file starts with a JSON object line (saev's layout), read cheaply."""
    try:
        with open(path, "rb") as fh:
            first = fh.read(1)
            if first != b"{":
                return False
            json.loads(first + fh.readline(1 << 20))
    except (OSError, ValueError, RecursionError):
        return False
    return True


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(header, state dict) of a saev checkpoint."""
    if not path.exists():
        raise SAEFormatError(f"missing saev checkpoint {path}")
    data = path.read_bytes()
    line, sep, rest = data.partition(b"\n")
    try:
        header = json.loads(line)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise SAEFormatError(f"{path}: the first line is not saev's JSON header ({exc})") from None
    if not isinstance(header, dict) or not sep:
        raise SAEFormatError(f"{path}: expected a JSON header line followed by a torch state dict")
    return header, tensor_dict(torch_load_bytes(rest, path), path, "after the header, a state dict")


def _activation(header: dict[str, Any], cfg: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """(activation class name, its params) for every schema."""
    schema = header.get("schema")
    if schema is None:
        return "Relu", {}
    cls = header.get("cls")
    if schema == 1 and isinstance(cls, str) and cls in _ACT:  # format 1A: the class is the activation
        return cls, {"top_k": cfg.get("top_k", 32)}
    act = section(cfg, "activation", path)
    if "cls" not in act:
        return "Relu", {}  # schema 1B without an activation entry: saev's default config
    return act["cls"], section(act, "params", path)


def _config(header: dict[str, Any], path: Path) -> tuple[dict[str, Any], int, int]:
    schema = header.get("schema")
    if schema is not None and schema not in SCHEMAS:
        raise SAEFormatError(
            f"{path}: saev schema {schema!r} is not one this saekit reads ({SCHEMAS[0]}-{SCHEMAS[-1]}); "
            "upgrade saekit, or re-save the SAE with a saev version of those schemas"
        )
    cfg = header if header.get("schema") is None else section(header, "cfg", path)
    d_in = cfg.get("d_model", cfg.get("d_vit"))
    if d_in is None:
        raise SAEFormatError(f"{path}: saev header has neither d_model nor d_vit; found keys {sorted(cfg)}")
    d_in = check_int(d_in, "d_model", path)
    d_sae = cfg.get("d_sae")
    if d_sae is None:
        d_sae = d_in * check_int(cfg.get("exp_factor", 0) or 0, "exp_factor", path)
    return cfg, d_in, check_int(d_sae, "d_sae", path)


def load_saev(
    path: str | Path, device: str | torch.device | None = None, *, center_input: bool | None = None
):
    """Convert a saev `sae.pt` into a native SAE with identical latents and reconstructions.

    `center_input` overrides whether the encoder saw `x - b_dec` (default: yes for the original and
    schema-1 files, no for schema >= 2, as saev's code at those schemas)."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    header, state = read_checkpoint(path)
    cfg, d_in, d_sae = _config(header, path)
    cls, params = _activation(header, cfg, path)
    if not isinstance(cls, str) or cls not in _ACT:
        raise SAEFormatError(
            f"{path}: saev activation {cls!r} is not supported; supported: {', '.join(_ACT)}"
        )
    require(state, ["W_enc", "b_enc", "W_dec", "b_dec"], path, "a saev SparseAutoencoder")
    hint = f"the header (d_model={d_in}, d_sae={d_sae})"
    t = {n: state[n].to(FOLD_DTYPE) for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
    out = {
        n: expect_shape(t, n, s, path, hint)
        for n, s in (
            ("W_enc", (d_in, d_sae)),
            ("b_enc", (d_sae,)),
            ("W_dec", (d_sae, d_in)),
            ("b_dec", (d_in,)),
        )
    }
    centred = header.get("schema") in (None, 1) if center_input is None else center_input
    if not centred:
        out["b_enc"] = fold_input_bias(out["W_enc"], out["b_enc"], out["b_dec"])
    k = None
    if cls in ("TopK", "BatchTopK"):
        k = check_int(params.get("top_k", 32), "top_k", path)
    if cls == "BatchTopK":
        if "activation.threshold" not in state:
            raise SAEFormatError(
                f"{path}: this saev BatchTopK has no activation.threshold buffer, so its inference is "
                "batch-coupled (each row depends on the rest of the batch); it cannot be converted exactly"
            )
        theta = scalar(state, "activation.threshold", path)
        out["threshold"] = torch.tensor(max(theta, 0.0), dtype=torch.float32)
    out["input_scale"] = torch.ones((), dtype=torch.float32)
    scfg = make_config(
        path,
        d_in=d_in,
        d_sae=d_sae,
        arch=_ACT[cls],
        k=k,
        dtype=native_dtype(state["W_dec"].dtype),
        normalize_decoder=False,
        provenance=Provenance(source_format="saev", source_name=path.parent.name + "/" + path.name),
    )
    return assemble(scfg, out, path, device)
