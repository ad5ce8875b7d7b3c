"""`saekit export`: write a native SAE in another library's folder layout, file names and config keys.

`export_sae(ExportConfig(sae=..., to=..., out=...))` folds saekit's conventions into plain weights
(the constant input scale `c`: `W_enc * c`, `b_dec / c`, `W_dec / c` — the same function of raw
activations; a transcoder's input scale `a` and output scale `c`: `W_enc * a`, `W_dec / c`, `b_dec / c`,
`W_skip * a / c`), checks the target can represent the SAE, and calls the target's writer
(`saekit.formats.writers`). What a target cannot express is refused with the reason instead of
written approximately. `saekit.load(out)` reads every export back (to float rounding of the fold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from saekit.errors import SAEFormatError

TARGETS = ("saelens", "sparsify", "dictionary_learning")

#: target -> native architectures it has a class for (and the class used).
SUPPORTED: dict[str, dict[str, str]] = {
    "saelens": {
        "relu": "standard",
        "topk": "topk",
        "jumprelu": "jumprelu",
        "gated": "gated",
        "batchtopk": "jumprelu",
    },
    "sparsify": {"topk": "topk"},
    "dictionary_learning": {
        "relu": "AutoEncoder",
        "topk": "AutoEncoderTopK",
        "batchtopk": "BatchTopKSAE",
        "jumprelu": "JumpReluAutoEncoder",
        "gated": "GatedAutoEncoder",
        "topk_abs": "VSAETopK",
    },
}


@dataclass(frozen=True)
class ExportConfig:
    """`saekit export SAE --to saelens|sparsify|dictionary_learning OUT`."""

    sae: str
    """The SAE to export: any folder or file `saekit.load` reads."""
    to: Literal["saelens", "sparsify", "dictionary_learning"]
    """Target library."""
    out: str
    """Output folder (created; existing files of the target layout are replaced atomically)."""


def folded_tensors(sae) -> dict[str, Tensor]:
    """The SAE's tensors (float64) with the constant input scale folded in, so input_scale becomes 1 (a
    transcoder's output scale too)."""
    t = {
        name: v.detach().to("cpu", torch.float64)
        for name, v in sae.state_dict().items()
        if v.is_floating_point()
    }
    if sae.cfg.transcode:  # x_n = a x in, prediction / c out; the skip term is in normalised units
        a, c = float(t.pop("input_scale")), float(t.pop("output_scale"))
        t["W_enc"] = t["W_enc"] * a
        t["W_dec"] = t["W_dec"] / c
        t["b_dec"] = t["b_dec"] / c
        if "W_skip" in t:
            t["W_skip"] = t["W_skip"] * (a / c)
        return t
    c = float(sae.input_scale) if sae.cfg.normalization != "layer_norm" else 1.0
    t["W_enc"] = t["W_enc"] * c
    t["b_dec"] = t["b_dec"] / c
    t["W_dec"] = t["W_dec"] / c
    t.pop("input_scale")
    return t


#: What each target says it has for transcoders (why a saekit transcoder cannot go there otherwise).
TRANSCODER_SUPPORT = {
    "sparsify": "sparsify transcoders (`transcode: true`) select the top k per row, with an optional W_skip",
    "saelens": "SAELens' transcoder classes are ReLU ('transcoder', 'skip_transcoder': with W_skip) and "
    "JumpReLU ('jumprelu_transcoder': no W_skip, also the inference form of a BatchTopK transcoder); none "
    "selects the top k latents per row. Export a TopK transcoder --to sparsify",
    "dictionary_learning": "dictionary_learning has no transcoder class (its dictionaries reconstruct their "
    "input). Export it --to sparsify",
}

#: SAELens transcoder architecture per native arch, without and with a skip term (None: none fits).
SAELENS_TRANSCODERS: dict[str, tuple[str | None, str | None]] = {
    "relu": ("transcoder", "skip_transcoder"),
    "jumprelu": ("jumprelu_transcoder", None),
    "batchtopk": ("jumprelu_transcoder", None),
}


def target_class(sae, target: str) -> str:
    """The target library's class (architecture) name for `sae` (which `refusal` has accepted)."""
    if sae.cfg.transcode and target == "saelens":
        return SAELENS_TRANSCODERS[sae.cfg.arch][int(sae.cfg.skip_connection)]
    return SUPPORTED[target][sae.cfg.arch]


def refusal(sae, target: str) -> str | None:
    """Why `target` cannot represent `sae` exactly, or None when it can."""
    arch, cfg = sae.cfg.arch, sae.cfg
    if cfg.transcode and target == "saelens":
        if SAELENS_TRANSCODERS.get(arch, (None, None))[int(cfg.skip_connection)] is None:
            skip = " with a skip term" if cfg.skip_connection else ""
            return f"it is a {arch} transcoder{skip}: {TRANSCODER_SUPPORT[target]}"
        if arch == "batchtopk" and float(sae.threshold) < 0:
            return "this batchtopk transcoder's inference threshold was never estimated"
        return None
    if cfg.transcode and target != "sparsify":
        return f"it is a transcoder: {TRANSCODER_SUPPORT[target]}"
    if cfg.transcode and sae.d_out != sae.d_in:
        return (
            f"sparsify transcoders predict outputs as wide as their inputs; this one maps {sae.d_in} -> "
            f"{sae.d_out}"
        )
    if arch not in SUPPORTED[target]:
        known = ", ".join(SUPPORTED[target])
        return f"{target} has no class for saekit arch {arch!r} (it can take: {known})"
    if cfg.skip_connection and target != "sparsify":
        return f"{target} SAEs have no linear skip term (W_skip); only sparsify skip transcoders do"
    if cfg.normalization == "layer_norm" and target != "saelens":
        return (
            f"{target} has no per-row layer-norm preprocessing; "
            "only SAELens (normalize_activations='layer_norm') does"
        )
    if arch == "batchtopk" and float(sae.threshold) < 0:
        return "this batchtopk SAE's inference threshold was never estimated (it falls back to per-row top-k)"
    return None


def export_sae(cfg: ExportConfig) -> Path:
    """Load `cfg.sae`, check `cfg.to` can represent it, write it to `cfg.out`; returns the folder."""
    import saekit
    from saekit.formats import writers

    if cfg.to not in TARGETS:
        raise SAEFormatError(f"unknown export target {cfg.to!r}; choose one of {', '.join(TARGETS)}")
    sae = saekit.load(cfg.sae)
    why = refusal(sae, cfg.to)
    if why is not None:
        raise SAEFormatError(f"cannot export {cfg.sae} to {cfg.to}: {why}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = {"saelens": writers.write_saelens, "sparsify": writers.write_sparsify}.get(
        cfg.to, writers.write_dictionary_learning
    )
    writer(sae, folded_tensors(sae), target_class(sae, cfg.to), out)
    return out
