"""SAELens (sae_lens 5.x / 6.x) folders: `cfg.json` + `sae_weights.safetensors`.

SAELens stores weights in our layout already (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`), so the
work is in the config semantics:
- `architecture`: standard (relu), topk, jumprelu (`threshold [d_sae]`), gated (`b_gate`, `r_mag`,
  `b_mag`), batchtopk training checkpoints (`topk_threshold` scalar). Pre-6.0 configs have no
  `architecture` key; topk is then `activation_fn: "topk"` + `activation_fn_kwargs.k`.
- `apply_b_dec_to_input=False`: the encoder sees `x`, not `x - b_dec`; folded into b_enc.
- `rescale_acts_by_decoder_norm` (topk): pre-activations times ||W_dec_j||, decode divides by it;
  folded into W_enc/b_enc/W_dec (identical latents and reconstructions).
- `normalize_activations="expected_average_only_in"`: inputs were multiplied by a factor SAELens does
  not save with the weights (SAELens issue #381). Taken from `scaling_factor=`, else from a training
  checkpoint's `activation_scaler.json`, else 1 with a warning. `layer_norm` (per row: subtract the
  mean, divide by std + 1e-5; restore on output) is native `normalization="layer_norm"`;
  `constant_norm_rescale` (a per-row factor) has no native form and is refused.
- pre-6.0 `scaling_factor [d_sae]` (finetuning scale on latents before decoding): folded into W_dec.
- transcoders (6.x): `transcoder` (ReLU), `skip_transcoder` (ReLU + `W_skip [d_out, d_in]`, adding
  `x @ W_skip.T`), `jumprelu_transcoder`; `d_out`, `hook_name_out`. They encode `x` itself (no `- b_dec`)
  and become native transcoders (`transcode=True`) tensor for tensor; only `normalize_activations="none"`.
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
    checked_tensors,
    count,
    expect_shape,
    fold_input_bias,
    layer_from_hook,
    make_config,
    native_dtype,
    positive_number,
    read_json,
    read_safetensors,
    require,
    safe_log_threshold,
    scalar,
    section,
    text,
)
from saekit.sae.config import Provenance

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SCALER_FILE = "activation_scaler.json"
#: SAELens transcoder architecture -> native arch (with transcode=True)
TRANSCODERS = {"transcoder": "relu", "skip_transcoder": "relu", "jumprelu_transcoder": "jumprelu"}
ARCHITECTURES = ("standard", "topk", "jumprelu", "gated", "batchtopk", *TRANSCODERS)


def looks_like_saelens(folder: Path) -> bool:
    return (folder / CFG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def _architecture(cfg: dict[str, Any], source: Path) -> str:
    arch = cfg.get("architecture")
    if arch is None:  # pre-6.0 config
        act = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
        arch = "topk" if act == "topk" else "standard"
    if arch not in ARCHITECTURES:
        raise SAEFormatError(
            f"{source}: SAELens architecture {arch!r} is not supported; supported: {', '.join(ARCHITECTURES)}"
        )
    return arch


def _k(cfg: dict[str, Any], source: Path) -> int:
    k = cfg.get("k")
    if k is None:
        k = section(cfg, "activation_fn_kwargs", source).get("k")
    if k is None:
        raise SAEFormatError(f"{source}: topk SAE config has neither 'k' nor 'activation_fn_kwargs.k'")
    return check_int(k, "k", source)


def _input_scale(cfg: dict[str, Any], folder: Path, scaling_factor: float | None) -> float:
    norm = cfg.get("normalize_activations", "none")
    if isinstance(norm, bool):  # pre-6.0 configs stored a bool
        norm = "expected_average_only_in" if norm else "none"
    if norm in (None, "none"):
        if scaling_factor is not None:
            raise SAEFormatError(
                f"{folder / CFG_FILE}: scaling_factor={scaling_factor} given but this SAE has "
                "normalize_activations='none' (it works on raw activations); drop the scaling_factor argument"
            )
        return 1.0
    if norm == "layer_norm":
        return 1.0  # per-row: native normalization="layer_norm" (same mean/std/eps), no constant
    if norm == "constant_norm_rescale":
        raise SAEFormatError(
            f"{folder / CFG_FILE}: normalize_activations={norm!r} rescales every row to norm sqrt(d_in) and "
            "divides the output by that row's factor; saekit has no such mode, so this SAE cannot be "
            "converted exactly"
        )
    if norm != "expected_average_only_in":
        raise SAEFormatError(f"{folder / CFG_FILE}: unknown normalize_activations={norm!r}")
    if scaling_factor is not None:
        return positive_number(
            scaling_factor,
            "the scaling_factor argument",
            folder,
            "pass the factor raw activations were multiplied by, sqrt(d_in) / mean activation norm",
        )
    scaler = folder / SCALER_FILE
    if scaler.is_file():
        value = read_json(scaler).get("scaling_factor")
        if value is not None:
            return positive_number(value, "scaling_factor", scaler)
    warnings.warn(
        f"{folder}: normalize_activations='expected_average_only_in' but SAELens did not save the scaling "
        "factor (SAELens issue #381); converting with input_scale=1. Pass scaling_factor=sqrt(d_in)/"
        "mean_activation_norm to get the SAE's true behaviour, or fit it with "
        "saekit.sae.init.fit_input_scale_",
        UserWarning,
        stacklevel=3,
    )
    return 1.0


def _normalization(cfg: dict[str, Any]) -> str:
    norm = cfg.get("normalize_activations", "none")
    if norm == "layer_norm":
        return "layer_norm"
    return "expected_norm" if norm is True or norm == "expected_average_only_in" else "none"


def _transcoder_fields(cfg: dict[str, Any], arch: str, d_in: int, source: Path) -> dict[str, Any]:
    """The native config fields of a SAELens transcoder (`transcode`, `d_out`, `skip_connection`); {} for
    an SAE. Transcoders with an activation normaliser are refused."""
    if arch not in TRANSCODERS:
        return {}
    norm = cfg.get("normalize_activations", "none")
    if norm not in (None, "none", False):
        raise SAEFormatError(
            f"{source}: a {arch} with normalize_activations={norm!r}; saekit converts transcoders that "
            "work on raw activations only"
        )
    d_out = check_int(cfg.get("d_out", d_in), "d_out", source)
    skip = arch == "skip_transcoder"
    return {"transcode": True, "d_out": d_out if d_out != d_in else None, "skip_connection": skip}


def _shapes(arch: str, d_in: int, d_sae: int, d_out: int) -> dict[str, tuple[int, ...]]:
    """Expected shapes of the SAELens tensors of `arch` (thresholds are checked where they are read)."""
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_out), "b_dec": (d_out,)}
    shapes["b_gate" if arch == "gated" else "b_enc"] = (d_sae,)
    if arch == "gated":
        shapes.update(r_mag=(d_sae,), b_mag=(d_sae,))
    if arch == "skip_transcoder":
        shapes["W_skip"] = (d_out, d_in)
    return shapes


def _provenance(cfg: dict[str, Any], source: Path) -> Provenance:
    meta = section(cfg, "metadata", source)

    def get(key, *alts):
        return next((src[k] for k in (key, *alts) for src in (meta, cfg) if src.get(k) is not None), None)

    hook = text(get("hook_name", "hook_point"))
    layer = count(get("hook_layer"))
    return Provenance(
        source_format="saelens",
        model=text(get("model_name")),
        hook_point=hook,
        layer=layer if layer is not None else layer_from_hook(hook),
        tokens_trained=count(get("training_tokens")) or 0,
        target_hook_point=text(get("hook_name_out")) or None,  # transcoders: the hook point predicted
    )


def _needed(arch: str, tensors: dict[str, Tensor]) -> list[str]:
    """The SAELens tensor names architecture `arch` needs."""
    needed = ["W_enc", "b_gate" if arch == "gated" else "b_enc", "W_dec", "b_dec"]
    if arch == "gated":
        needed += ["r_mag", "b_mag"]
    if arch in ("jumprelu", "jumprelu_transcoder") and "log_threshold" not in tensors:
        needed.append("threshold")
    if arch == "skip_transcoder":
        needed.append("W_skip")
    if arch == "batchtopk" and "threshold" not in tensors:
        needed.append("topk_threshold")
    return needed


def _thresholds(
    arch: str, tensors: dict[str, Tensor], t: dict[str, Tensor], src: Path, hint: str, d_sae: int
) -> dict[str, Tensor]:
    """Native threshold tensors: per-latent log threshold (jumprelu) or the global one (batchtopk); and a
    transcoder's output scale (1: SAELens transcoders work on raw activations) and skip matrix."""
    if arch in TRANSCODERS:
        extra = {"output_scale": torch.tensor(1.0, dtype=torch.float32)}
        if arch == "skip_transcoder":
            extra["W_skip"] = t["W_skip"].T  # SAELens adds x @ W_skip.T
        return extra | _thresholds(TRANSCODERS[arch], tensors, t, src, hint, d_sae)
    if arch == "jumprelu":
        if "log_threshold" in tensors:
            return {
                "log_threshold": expect_shape(tensors, "log_threshold", (d_sae,), src, hint).to(FOLD_DTYPE)
            }
        return {"log_threshold": safe_log_threshold(expect_shape(t, "threshold", (d_sae,), src, hint))}
    if arch == "batchtopk":
        # Inference uses the learned global threshold (what SAELens saves for inference as jumprelu).
        name = "threshold" if "threshold" in tensors else "topk_threshold"
        return {"threshold": torch.tensor(max(scalar(tensors, name, src), 0.0), dtype=torch.float32)}
    return {}


def load_saelens(
    folder: str | Path, device: str | torch.device | None = None, *, scaling_factor: float | None = None
):
    """Convert a SAELens SAE folder into a native saekit SAE with identical latents and reconstructions.

    `scaling_factor` is the activation-norm factor of `expected_average_only_in` SAEs (raw activations
    are multiplied by it before encoding); it becomes the SAE's `input_scale`.
    """
    folder = Path(folder)
    cfg = read_json(folder / CFG_FILE)
    src = folder / WEIGHTS_FILE
    tensors = read_safetensors(src)
    for key in ("d_in", "d_sae"):
        if key not in cfg:
            raise SAEFormatError(f"{folder / CFG_FILE} lacks {key!r}; not a SAELens SAE config")
    d_in = check_int(cfg["d_in"], "d_in", folder / CFG_FILE)
    d_sae = check_int(cfg["d_sae"], "d_sae", folder / CFG_FILE)
    arch = _architecture(cfg, folder / CFG_FILE)
    transcoder = _transcoder_fields(cfg, arch, d_in, folder / CFG_FILE)
    d_out = transcoder.get("d_out") or d_in
    hint = f"cfg.json (d_in={d_in}, d_sae={d_sae}, d_out={d_out})"

    enc_bias = "b_gate" if arch == "gated" else "b_enc"
    needed = _needed(arch, tensors)
    require(tensors, needed, src, f"SAELens architecture {arch!r}")
    shapes = _shapes(arch, d_in, d_sae, d_out)
    t = {n: tensors[n].to(FOLD_DTYPE) for n in needed} | checked_tensors(tensors, shapes, src, hint)
    W_enc, b_enc, W_dec, b_dec = t["W_enc"], t[enc_bias], t["W_dec"], t["b_dec"]
    out: dict[str, Tensor] = {}

    if arch == "gated":
        out["r_mag"] = t["r_mag"]
        out["b_mag"] = t["b_mag"]
        if not cfg.get("apply_b_dec_to_input", True):
            out["b_mag"] = fold_input_bias(W_enc * t["r_mag"].exp(), t["b_mag"], b_dec)
    if not cfg.get("apply_b_dec_to_input", True) and not transcoder:  # transcoders never centre x
        b_enc = fold_input_bias(W_enc, b_enc, b_dec)

    if "scaling_factor" in tensors:  # pre-6.0 finetuning scale: latents * s before the decoder
        s = expect_shape(tensors, "scaling_factor", (d_sae,), src, hint).to(FOLD_DTYPE)
        W_dec = W_dec * s[:, None]

    k = None
    if arch == "topk":
        k = _k(cfg, folder / CFG_FILE)
        if cfg.get("rescale_acts_by_decoder_norm", False):
            norms = W_dec.norm(dim=-1)
            W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    elif arch == "batchtopk":
        k = check_int(cfg.get("k", 1), "k", folder / CFG_FILE)
    out.update(_thresholds(arch, tensors, t, src, hint, d_sae))

    native_arch = {"standard": "relu", **TRANSCODERS}.get(arch, arch)
    prov = _provenance(cfg, folder / CFG_FILE)
    if cfg.get("reshape_activations") == "hook_z":
        warnings.warn(
            f"{folder}: SAE trained on hook_z; feed it activations flattened to [..., n_heads*d_head={d_in}]",
            UserWarning,
            stacklevel=2,
        )
    scfg = make_config(
        folder / CFG_FILE,
        d_in=d_in,
        d_sae=d_sae,
        arch=native_arch,
        k=k,
        dtype=native_dtype(cfg.get("dtype")),
        normalize_decoder=False,
        normalization=_normalization(cfg),
        provenance=prov,
        **transcoder,
    )
    out.update(W_enc=W_enc, b_enc=b_enc, W_dec=W_dec, b_dec=b_dec)
    out["input_scale"] = torch.tensor(_input_scale(cfg, folder, scaling_factor), dtype=torch.float32)
    return assemble(scfg, out, src, device)
