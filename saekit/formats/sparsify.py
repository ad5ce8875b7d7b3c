"""EleutherAI sparsify (1.x) folders: one per hookpoint, `cfg.json` + `sae.safetensors`.

Tensors: `encoder.weight [d_sae, d_in]` (an nn.Linear), `encoder.bias [d_sae]`, `W_dec [d_sae, d_in]`,
`b_dec [d_in]`, optional `W_skip [d_out, d_in]` (skip transcoders: the output gains `x @ W_skip.mT`,
kept as the native skip term; only d_out = d_in converts). Config: `d_in`, `num_latents` (0 = use
`expansion_factor * d_in`), `k`, `activation` ("topk" | "groupmax"), `transcode`, `skip_connection`.

Encode (sparsify `fused_encoder`): `relu(encoder(x - b_dec))` then top-k of the *post-ReLU* values.
Our TopK takes the top-k of pre-activations then applies ReLU; both keep the same positive values at
the same indices, so dense latents are identical. Transcoders (`transcode=True`) skip the `- b_dec` and
become native transcoders (`SAEConfig.transcode`, whose encoder does the same), tensor for tensor; their
hookpoint names the module, so the provenance reads `NAME:in` -> `NAME`.
A root folder holding several hookpoint folders is rejected with the list to choose from.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saekit.errors import SAEFormatError
from saekit.formats.common import (
    assemble,
    check_int,
    checked_tensors,
    layer_from_hook,
    make_config,
    native_dtype,
    read_json,
    read_safetensors,
    require,
)
from saekit.sae.config import Provenance

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"


def looks_like_sparsify(folder: Path) -> bool:
    return (folder / CFG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def hookpoint_folders(folder: Path) -> list[str]:
    """Names of sub-folders that are sparsify SAEs (a multi-hookpoint checkpoint root)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and looks_like_sparsify(p))


def load_sparsify(folder: str | Path, device: str | torch.device | None = None):
    """Convert one sparsify hookpoint folder into a native TopK SAE with identical latents/reconstructions."""
    folder = Path(folder)
    if not looks_like_sparsify(folder):
        subs = hookpoint_folders(folder)
        if subs:
            raise SAEFormatError(
                f"{folder} holds sparsify SAEs for {len(subs)} hookpoints ({', '.join(subs[:8])}"
                f"{', ...' if len(subs) > 8 else ''}); pass one of them, e.g. {folder / subs[0]}"
            )
    cfg_path = folder / CFG_FILE
    cfg = read_json(cfg_path)
    src = folder / WEIGHTS_FILE
    tensors = read_safetensors(src)
    if "d_in" not in cfg:
        raise SAEFormatError(
            f"{cfg_path} lacks 'd_in'; sparsify writes it beside the SAE config — re-save it"
        )
    d_in = check_int(cfg["d_in"], "d_in", cfg_path)
    num_latents = cfg.get("num_latents") or 0
    d_sae = (
        check_int(num_latents, "num_latents", cfg_path)
        if num_latents
        else d_in * check_int(cfg.get("expansion_factor", 32), "expansion_factor", cfg_path)
    )
    k = check_int(cfg.get("k", 32), "k", cfg_path)
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise SAEFormatError(
            f"{cfg_path}: activation={activation!r} (group-max) has no native equivalent; only 'topk' "
            "converts"
        )
    skip = bool(cfg.get("skip_connection")) or "W_skip" in tensors
    if skip:
        require(tensors, ["W_skip"], src, "a sparsify skip transcoder (skip_connection=true)")
    require(tensors, ["encoder.weight", "encoder.bias", "W_dec", "b_dec"], src, "a sparsify SAE")
    hint = f"cfg.json (d_in={d_in}, d_sae={d_sae})"
    shapes = {
        "encoder.weight": (d_sae, d_in),
        "encoder.bias": (d_sae,),
        "W_dec": (d_sae, d_in),
        "b_dec": (d_in,),
    }
    t = checked_tensors(tensors, shapes, src, hint)
    W_enc, b_enc, W_dec, b_dec = t["encoder.weight"].T.contiguous(), t["encoder.bias"], t["W_dec"], t["b_dec"]
    if skip:  # sparsify adds `x @ W_skip.mT`; native recon adds `x @ W_skip`
        skip_hint = f"{hint} with d_out = d_in"
        W_skip = checked_tensors(tensors, {"W_skip": (d_in, d_in)}, src, skip_hint)["W_skip"]
    transcode = bool(cfg.get("transcode", False))
    scfg = make_config(
        cfg_path,
        d_in=d_in,
        d_sae=d_sae,
        arch="topk",
        k=k,
        dtype=native_dtype(tensors["encoder.weight"].dtype),
        normalize_decoder=bool(cfg.get("normalize_decoder", True)),
        skip_connection=skip,
        transcode=transcode,
        provenance=Provenance(
            hook_point=f"{folder.name}:in" if transcode else folder.name,
            layer=layer_from_hook(folder.name),
            source_format="sparsify",
            source_name=folder.name,
            target_hook_point=folder.name if transcode else None,
        ),
    )
    out = {
        "W_enc": W_enc,
        "b_enc": b_enc,
        "W_dec": W_dec,
        "b_dec": b_dec,
        "input_scale": torch.ones((), dtype=torch.float32),
    }
    if transcode:
        out["output_scale"] = torch.ones((), dtype=torch.float32)
    if skip:
        out["W_skip"] = W_skip.T.contiguous()
    return assemble(scfg, out, src, device)
