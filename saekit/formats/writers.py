"""One writer per export target: tensor names, layouts and config keys as that library saves them.

Each takes the SAE, its folded float64 tensors (`export.folded_tensors`: input scale already 1) and the
target's class name, and writes atomically into `out`. The facts are those the readers in this package
rely on (see `saelens.py`, `sparsify.py`, `dictionary_learning.py`), used in the other direction.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import Tensor

from saekit.atomic import save_tensors_atomic, write_bytes_atomic, write_json_atomic
from saekit.formats.common import fold_input_bias


def _cast(tensors: dict[str, Tensor], dtype: torch.dtype) -> dict[str, Tensor]:
    return {k: v.to(dtype).contiguous() if v.is_floating_point() else v for k, v in tensors.items()}


def _threshold(sae, t: dict[str, Tensor]) -> Tensor:
    """Per-latent JumpReLU threshold of a jumprelu or batchtopk SAE (`pre * (pre > theta)` in both; the
    pre-activation is unchanged by the scale folding, so the threshold is too)."""
    if sae.cfg.arch == "jumprelu":
        return t["log_threshold"].exp()
    return torch.full((sae.d_sae,), float(sae.threshold), dtype=torch.float64)


def write_saelens(sae, t: dict[str, Tensor], architecture: str, out: Path) -> None:
    """SAELens 6.x: `cfg.json` + `sae_weights.safetensors`, our layout (`W_enc [d_in, d_sae]`). Transcoders
    (`transcoder`, `skip_transcoder`, `jumprelu_transcoder`) encode `x` without `- b_dec`, as saekit's do;
    their config adds `d_out` and `hook_name_out`; `W_skip` is `[d_out, d_in]` (SAELens adds
    `x @ W_skip.T`)."""
    prov = sae.cfg.provenance
    w = {"W_enc": t["W_enc"], "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
    if architecture == "gated":
        w.update(b_gate=t["b_enc"], r_mag=t["r_mag"], b_mag=t["b_mag"])
    else:
        w["b_enc"] = t["b_enc"]
    if architecture in ("jumprelu", "jumprelu_transcoder"):
        w["threshold"] = _threshold(sae, t)
    if architecture == "skip_transcoder":
        w["W_skip"] = t["W_skip"].T
    cfg = {
        "architecture": architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": sae.cfg.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": not sae.cfg.transcode,
        "normalize_activations": "layer_norm" if sae.cfg.normalization == "layer_norm" else "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": prov.model,
            "hook_name": prov.hook_point,
            "hook_head_index": None,
            "prepend_bos": True,
            "exported_by": "saekit",
        },
    }
    if architecture == "topk":
        cfg.update(k=sae.cfg.k, rescale_acts_by_decoder_norm=False)
    if sae.cfg.transcode:
        out_hook = prov.target_hook_point or ""
        cfg.update(d_out=sae.d_out, hook_name_out=out_hook, hook_layer_out=prov.layer or 0)
    save_tensors_atomic(out / "sae_weights.safetensors", _cast(w, sae.dtype))
    write_json_atomic(out / "cfg.json", cfg)


def write_sparsify(sae, t: dict[str, Tensor], _cls: str, out: Path) -> None:
    """sparsify 1.x hookpoint folder: `cfg.json` (SparseCoderConfig + d_in) + `sae.safetensors`; a saekit
    transcoder becomes a sparsify transcoder (`transcode: true`: no `- b_dec` before the encoder, as in
    saekit's), its skip term `W_skip [d_out, d_in]`."""
    w = {"encoder.weight": t["W_enc"].T, "encoder.bias": t["b_enc"], "W_dec": t["W_dec"], "b_dec": t["b_dec"]}
    if sae.cfg.skip_connection:
        w["W_skip"] = t["W_skip"].T  # sparsify adds x @ W_skip.mT
    unit = bool(
        torch.allclose(t["W_dec"].norm(dim=-1), torch.ones(sae.d_sae, dtype=torch.float64), atol=1e-6)
    )
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, sae.d_sae // sae.d_in),
        "normalize_decoder": unit,
        "num_latents": sae.d_sae,
        "k": sae.cfg.k,
        "multi_topk": False,
        "skip_connection": sae.cfg.skip_connection,
        "transcode": sae.cfg.transcode,
        "d_in": sae.d_in,
    }
    save_tensors_atomic(out / "sae.safetensors", _cast(w, sae.dtype))
    write_json_atomic(out / "cfg.json", cfg)


def _dl_state(sae, t: dict[str, Tensor], cls: str) -> dict[str, Tensor]:
    linear = {"encoder.weight": t["W_enc"].T, "decoder.weight": t["W_dec"].T}
    k = torch.tensor(sae.cfg.k or 0, dtype=torch.int64)
    if cls == "AutoEncoder":
        return {**linear, "encoder.bias": t["b_enc"], "bias": t["b_dec"]}
    if cls == "AutoEncoderTopK":
        return {
            **linear,
            "encoder.bias": t["b_enc"],
            "b_dec": t["b_dec"],
            "k": k,
            "threshold": torch.tensor(-1.0),
        }
    if cls == "BatchTopKSAE":
        theta = torch.tensor(float(sae.threshold))
        return {**linear, "encoder.bias": t["b_enc"], "b_dec": t["b_dec"], "k": k, "threshold": theta}
    if cls == "VSAETopK":  # use_april_update_mode=False: `bias` subtracted before the encoder
        return {**linear, "encoder.bias": t["b_enc"], "bias": t["b_dec"], "k": k}
    if cls == "GatedAutoEncoder":
        return {
            "encoder.weight": t["W_enc"].T,
            "decoder.weight": t["W_dec"].T,
            "decoder_bias": t["b_dec"],
            "gate_bias": t["b_enc"],
            "mag_bias": t["b_mag"],
            "r_mag": t["r_mag"],
        }
    # JumpReluAutoEncoder: pre = x W_enc + b_enc (no centring), so unfold b_dec out of b_enc
    b_enc = fold_input_bias(t["W_enc"], t["b_enc"], -t["b_dec"])
    return {
        "W_enc": t["W_enc"],
        "b_enc": b_enc,
        "W_dec": t["W_dec"],
        "b_dec": t["b_dec"],
        "threshold": _threshold(sae, t),
    }


def write_dictionary_learning(sae, t: dict[str, Tensor], cls: str, out: Path) -> None:
    """dictionary_learning: `ae.pt` (a plain state dict) + `config.json` {"trainer": {...}, "buffer": {}}."""
    prov = sae.cfg.provenance
    buf = io.BytesIO()
    torch.save(_cast(_dl_state(sae, t, cls), sae.dtype), buf)
    write_bytes_atomic(out / "ae.pt", buf.getvalue())
    trainer = {
        "dict_class": cls,
        "trainer_class": "exported_by_saekit",
        "activation_dim": sae.d_in,
        "dict_size": sae.d_sae,
        "lm_name": prov.model,
        "layer": prov.layer,
        "submodule_name": prov.hook_point,
    }
    if sae.cfg.k is not None:
        trainer["k"] = sae.cfg.k
    if cls == "VSAETopK":
        trainer.update(use_april_update_mode=False, var_flag=0)
    write_json_atomic(out / "config.json", {"trainer": trainer, "buffer": {}})
