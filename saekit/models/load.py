"""`load_model`: one entry point for the embedded models, transformers LMs/encoders, CLIP, diffusers.

Which loader runs is decided by `model_kind` from the name or the folder's files, before anything
heavy is imported: CLIP (`clip` in the name, or config.json `model_type` clip / clip_vision_model /
clip_text_model) returns a `LoadedClip`; a diffusers pipeline (a folder with `model_index.json`, or
`flux` / `kandinsky` in the name) returns the pipeline; everything else returns a `LoadedModel`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from saekit.errors import ModelLoadError
from saekit.models.loaded import dtype_name, torch_dtype

EMBEDDED = ("smollm2", "minilm")
CLIP_MODEL_TYPES = {"clip": "both", "clip_vision_model": "vision", "clip_text_model": "text"}
"""config.json `model_type` -> the CLIP tower(s) the folder holds."""
ModelKind = Literal["lm", "clip", "diffusers"]
PipelineFamily = Literal["flux", "kandinsky_decoder", "kandinsky_prior", "other"]


def _config_model_type(path: Path) -> str | None:
    cfg = path / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def model_kind(name_or_path: str) -> ModelKind:
    """ "clip", "diffusers" or "lm" for a model name or folder (reads only small JSON files)."""
    key = name_or_path.strip()
    if key.lower() in EMBEDDED:
        return "lm"
    path = Path(key)
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers"
        mt = _config_model_type(path)
        if mt is not None:
            return "clip" if mt in CLIP_MODEL_TYPES else "lm"
    low = key.lower()
    if "flux" in low or "kandinsky" in low:
        return "diffusers"
    if "clip" in low:
        return "clip"
    return "lm"


def clip_towers(name_or_path: str) -> str:
    """Towers a CLIP folder holds ("vision", "text", "both"); hub names are assumed full CLIPModels."""
    mt = _config_model_type(Path(name_or_path)) if Path(name_or_path).is_dir() else None
    return CLIP_MODEL_TYPES.get(mt or "clip", "both")


def _offline_error(name: str, what: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load {what} {name!r}: it is not a local folder and fetching it from the Hugging Face hub "
        f"failed (no network, no login, or the licence is not accepted): {exc.__cause__ or exc}. Pass a "
        "local folder instead (e.g. one written by save_pretrained, or a downloaded snapshot)"
    )


def _load_clip(name: str, dtype: str, tower: str | None):
    from saekit.models.clip import load_clip

    have = clip_towers(name)
    tower = tower or have
    if have != "both" and tower != have:
        raise ModelLoadError(
            f"CLIP {name!r} holds only the {have} tower, but the {tower} tower was asked for; "
            f"use a full CLIPModel folder or a site on the {have} tower"
        )
    try:
        return load_clip(name, tower=tower, dtype=dtype_name(torch_dtype(dtype)))
    except ModelLoadError as exc:
        if not Path(name).exists():
            raise _offline_error(name, "CLIP", exc) from exc
        raise


def diffusers_class(name_or_path: str) -> str | None:
    """`_class_name` in a pipeline folder's model_index.json (None for hub ids and other folders)."""
    index = Path(name_or_path) / "model_index.json"
    if not index.is_file():
        return None
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def pipeline_family(name_or_path: str) -> PipelineFamily:
    """Which generator a diffusers pipeline is: from model_index.json's class, else from the name."""
    cls = diffusers_class(name_or_path) or ""
    if cls:
        if cls.startswith("Kandinsky"):
            return "kandinsky_prior" if "Prior" in cls else "kandinsky_decoder"
        return "flux" if cls.startswith("Flux") else "other"
    low = name_or_path.lower()
    if "kandinsky" in low:
        return "kandinsky_prior" if "prior" in low else "kandinsky_decoder"
    return "flux" if "flux" in low else "other"


def _null_components(path: Path) -> dict[str, None]:
    """Components a saved folder lists as null (saved without text encoders): passed as None on load."""
    index = path / "model_index.json"
    if not index.is_file():
        return {}
    try:
        spec: dict[str, Any] = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{index} is not valid JSON ({exc.msg}); re-save the pipeline") from exc
    missing = {
        k: None for k, v in spec.items() if not k.startswith("_") and (v is None or list(v) == [None, None])
    }
    if missing:
        for k in ("feature_extractor", "image_encoder"):
            missing.setdefault(k, None)
    return missing


def _load_flux_folder(path: Path, dt: str, dev: torch.device, offload: str, missing: dict[str, None]):
    from diffusers import FluxPipeline

    from saekit.models.offload import place_pipeline

    try:
        pipe = FluxPipeline.from_pretrained(str(path), dtype=getattr(torch, dt), **missing)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(
            f"cannot load the diffusers pipeline in {path}: {exc}; it must hold a FluxPipeline "
            "(model_index.json, transformer/, vae/, scheduler/)"
        ) from exc
    return place_pipeline(pipe, dev, offload)


def load_diffusers(
    name: str, dtype: str = "auto", device: str | torch.device | None = "auto", offload: str = "none"
):
    """A FLUX or Kandinsky 2.2 pipeline from a hub id or folder, on `device` or CPU-offloaded onto it.

    `dtype="auto"` is bfloat16 on CUDA (float32 on CPUs without native bf16). A folder whose
    `model_index.json` lists components as null (saved without text encoders, e.g. to be driven with
    prompt embeddings) loads with those as None. `offload` (none | model | sequential) is checked
    before any weights are read: it needs CUDA.
    """
    from saekit.device import auto_model_dtype, resolve_device
    from saekit.formats.hub import hub_model_name
    from saekit.models.flux import load_flux
    from saekit.models.offload import check_offload

    name = hub_model_name(name)  # hf:ORG/REPO is the hub id ORG/REPO
    dev = resolve_device(device or "auto")
    check_offload(offload, dev)
    dt = auto_model_dtype(dev) if dtype == "auto" else dtype_name(torch_dtype(dtype))
    family = pipeline_family(name)
    if family.startswith("kandinsky"):
        from saekit.models.kandinsky import load_kandinsky_pipeline

        return load_kandinsky_pipeline(
            name, "prior" if family == "kandinsky_prior" else "decoder", dtype=dt, device=dev, offload=offload
        )
    path = Path(name)
    missing = _null_components(path)
    if missing:
        return _load_flux_folder(path, dt, dev, offload, missing)
    try:
        return load_flux(name, dtype=dt, device=dev, offload=offload)
    except ModelLoadError as exc:
        if not path.exists():
            raise _offline_error(name, "FLUX pipeline", exc) from exc
        raise


def load_model(
    name_or_path: str,
    *,
    dtype: str | torch.dtype = "bfloat16",
    quiet: bool = False,
    clip_tower: str | None = None,
    device: str | torch.device | None = None,
    offload: str = "none",
):
    """Load `smollm2` (embedded GGUF, cached), `minilm` (embedded), a transformers id / folder
    (-> `LoadedModel`), a CLIP (-> `saekit.models.clip.LoadedClip`) or a diffusers FLUX pipeline.

    bfloat16 is the default because this project's CPUs have fast bf16 (AVX-512 BF16: ~4x the
    float32 throughput); ask for "float32" when exactness matters more than speed. `clip_tower`
    ("vision", "text", "both"; default: what the folder holds), `device` (diffusers; default
    cuda when present) and `offload` (diffusers: none | model | sequential, needs CUDA; see
    `saekit.models.offload`) apply only to those kinds. `hf:ORG/REPO` names the hub id `ORG/REPO`
    (`saekit.formats.hub.hub_model_name`: offline, a repo missing from the cache is named).
    """
    from saekit.formats.hub import hub_model_name

    name_or_path = hub_model_name(name_or_path)
    if offload != "none" and model_kind(name_or_path) != "diffusers":
        raise ModelLoadError(
            f"--offload {offload} applies to diffusers pipelines (FLUX, Kandinsky); "
            f"{name_or_path!r} is not one: use --offload none"
        )
    key = name_or_path.strip().lower()
    if key == "smollm2":
        from saekit.models.smollm2 import load_smollm2

        return load_smollm2(dtype=dtype, quiet=quiet)
    if key == "minilm":
        from saekit.models.minilm import load_minilm

        return load_minilm(dtype=dtype, quiet=quiet)
    kind = model_kind(name_or_path)
    if kind == "clip":
        return _load_clip(name_or_path, dtype_name(torch_dtype(dtype)), clip_tower)
    if kind == "diffusers":
        return load_diffusers(name_or_path, dtype_name(torch_dtype(dtype)), device, offload)
    from saekit.models.hf import load_hf

    return load_hf(name_or_path, dtype=dtype, quiet=quiet)
