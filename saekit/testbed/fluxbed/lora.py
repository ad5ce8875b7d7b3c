"""A LoRA for one factor value of the testbed's FluxPipeline: the baseline an SAE feature is measured against.

The seeds ask "can SAE be the new LoRA?". The fair LoRA is the one a FLUX user would train: peft adapters
added to the `FluxTransformer2DModel` with diffusers' own adapter API (`transformer.add_adapter`), trained
with the same flow-matching loss as the pipeline itself (`train.train_flow`, base weights and both text
encoders frozen), saved with `FluxPipeline.save_lora_weights` so `pipe.load_lora_weights(folder)` loads it.

The task is the factor sweep's (`saekit.sweep.image_factors`): the prompt asks for some value of a factor
and the edit must make the image show the target value instead. So the training pairs are renders whose
factor *is* the target value (every other factor as drawn) with captions that ask for *another* value:
the LoRA learns to override that part of the prompt and nothing else. The renders come from the build's
training digit images; the sweep's prompts come from its held-out ones.

A LoRA folder holds `pytorch_lora_weights.safetensors` (diffusers' file) and `lora_info.json` (what it
was trained for, on which transformer, and what it cost: seconds, trainable parameters, bytes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saekit.errors import ModelLoadError, SAEConfigError

LORA_FILE = "pytorch_lora_weights.safetensors"
INFO_FILE = "lora_info.json"
INFO_SCHEMA = 1
_SHAPE_KEYS = ("in_channels", "num_layers", "num_single_layers", "attention_head_dim", "num_attention_heads",
               "joint_attention_dim", "pooled_projection_dim")  # fmt: skip


@dataclass(frozen=True)
class FactorLoraConfig:
    """Train one LoRA that makes the testbed pipeline draw `factor = value` whatever the prompt asks."""

    model: str
    """The FluxPipeline folder (`runs/fluxbed/pipeline`)."""
    factor: str
    """The factor: colour | thickness | position | size | digit."""
    value: str
    """The target value, as captions spell it (`red`, `top left`, `thick`, `3`)."""
    out: str
    """The LoRA folder to write (pytorch_lora_weights.safetensors, lora_info.json)."""
    rank: int = 4
    """LoRA rank r of every adapted projection."""
    alpha: float | None = None
    """lora_alpha (the update is scaled by alpha / r); default: the rank, i.e. scale 1."""
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    """Module names peft adapts: the attention projections of every double and single block, the common
    choice of diffusers' FLUX LoRA scripts."""
    steps: int = 400
    """AdamW steps of flow matching on the LoRA parameters."""
    batch: int = 16
    lr: float = 3e-3
    """Peak learning rate (linear warm-up over 50 steps, cosine decay)."""
    n_renders: int = 2000
    """Training renders (training digit images, the factor set to `value`)."""
    seed: int = 0
    build_config: str | None = None
    """The build's build_config.json (the text and sigma settings of flow matching); default: beside
    the pipeline folder."""
    quiet: bool = False

    def __post_init__(self) -> None:
        for name in ("rank", "steps", "batch", "n_renders"):
            if getattr(self, name) <= 0:
                raise SAEConfigError(f"FactorLoraConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise SAEConfigError(f"FactorLoraConfig.lr must be > 0, got {self.lr}")
        if not self.target_modules:
            raise SAEConfigError("FactorLoraConfig.target_modules is empty: name the projections to adapt")


@dataclass
class LoraTrainResult:
    """What `train_factor_lora` made and what it cost."""

    folder: Path
    info: dict
    losses: list[float]
    pipe: Any = None
    """The FluxPipeline it was trained in, the adapter still attached and active."""


def factor_value_index(factor: str, value: str) -> tuple[int, int]:
    """(factor column in FACTORS, value index) with an error that lists the valid names."""
    from saekit.testbed.fluxbed.render import FACTORS, factor_values

    try:
        values = factor_values(factor)
    except ValueError as exc:
        raise SAEConfigError(str(exc)) from None
    if value not in values:
        raise SAEConfigError(f"{factor} has no value {value!r}; values: {', '.join(values)}")
    return FACTORS.index(factor), values.index(value)


def lora_training_set(build, factor: str, value: str, n: int, seed: int):
    """`n` renders of training digit images with `factor` set to `value`, and captions that ask for another
    value of that factor (uniformly among the others): (`Render`, captions). `build`: the FluxbedConfig."""
    from saekit.testbed.fluxbed.build import render_caption
    from saekit.testbed.fluxbed.render import N_VALUES, digit_split, render, sample_factors

    fi, vi = factor_value_index(factor, value)
    rng = np.random.default_rng(seed)
    train_idx, _ = digit_split(build.seed, build.test_fraction)
    sources, rows = sample_factors(train_idx, n, rng, heldout=None)
    rows[:, fi] = vi
    data = render(sources, rows, rng)
    asked = rows.copy()
    others = [v for v in range(N_VALUES[factor]) if v != vi]
    asked[:, fi] = rng.choice(others, size=n)
    return data, [render_caption(r) for r in asked]


def read_build_config(model: str | Path, build_config: str | Path | None):
    """The testbed build's FluxbedConfig, from `build_config` or `<model>/../build_config.json`."""
    from saekit.testbed.fluxbed.config import FluxbedConfig

    path = Path(build_config) if build_config else Path(model).parent / "build_config.json"
    if not path.is_file():
        raise SAEConfigError(
            f"{path} not found: the testbed build's config is needed; pass --build-config "
            "runs/fluxbed/build_config.json"
        )
    raw = json.loads(path.read_text())
    return FluxbedConfig(**{k: v for k, v in raw.items() if k in FluxbedConfig.__dataclass_fields__})


def check_pipeline_folder(model: str | Path) -> None:
    """A clear error unless `model` is a saved FluxPipeline folder."""
    index = Path(model) / "model_index.json"
    if not index.is_file():
        raise ModelLoadError(
            f"{model} is not a diffusers pipeline folder (no model_index.json); pass the testbed's "
            "pipeline, e.g. runs/fluxbed/pipeline"
        )
    name = json.loads(index.read_text()).get("_class_name")
    if name != "FluxPipeline":
        raise ModelLoadError(f"{model} holds a {name}, not a FluxPipeline; a factor LoRA needs the testbed's")


def transformer_signature(transformer) -> dict:
    """The shape-deciding entries of a FluxTransformer2DModel's config (a LoRA only fits the same)."""
    return {k: transformer.config[k] for k in _SHAPE_KEYS}


def trainable_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def train_factor_lora(cfg: FactorLoraConfig) -> LoraTrainResult:
    """Train and save the LoRA (module docstring); returns its folder, info and per-step losses."""
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from saekit.atomic import write_json_atomic
    from saekit.testbed.fluxbed.build import load_pipeline, peak_rss_mib
    from saekit.testbed.fluxbed.train import encode_latents, train_flow

    factor_value_index(cfg.factor, cfg.value)  # fail before loading anything
    check_pipeline_folder(cfg.model)
    build = read_build_config(cfg.model, cfg.build_config)
    pipe = load_pipeline(cfg.model)
    t0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data, captions = lora_training_set(build, cfg.factor, cfg.value, cfg.n_renders, cfg.seed)
    vae_cfg = pipe.vae.config
    latents = (encode_latents(pipe.vae, data.images) - vae_cfg.shift_factor) * vae_cfg.scaling_factor
    data_s = time.perf_counter() - t0

    transformer = pipe.transformer
    for m in (pipe.text_encoder, pipe.text_encoder_2, pipe.vae, transformer):
        m.requires_grad_(False)
    alpha = cfg.alpha if cfg.alpha is not None else float(cfg.rank)
    lora = LoraConfig(
        r=cfg.rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(cfg.target_modules)
    )
    transformer.add_adapter(lora)
    n_trainable = trainable_count(transformer)
    flow_cfg = dataclasses.replace(build, flow_steps=cfg.steps, flow_batch=cfg.batch, flow_lr=cfg.lr,
                                   caption_dropout=0.0, flow_ema=0.0, quiet=cfg.quiet)  # fmt: skip
    t1 = time.perf_counter()
    tokenizers = (pipe.tokenizer, pipe.tokenizer_2)
    texts = (pipe.text_encoder, pipe.text_encoder_2)
    losses = train_flow(transformer, *texts, tokenizers, latents, captions, pipe.scheduler, flow_cfg, gen)
    train_s = time.perf_counter() - t1

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".lora.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    FluxPipeline.save_lora_weights(
        tmp,
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),  # alpha and rank
    )
    os.replace(tmp / LORA_FILE, out / LORA_FILE)
    shutil.rmtree(tmp)
    info = {
        "schema": INFO_SCHEMA,
        "factor": cfg.factor,
        "value": cfg.value,
        "config": dataclasses.asdict(cfg),
        "transformer": transformer_signature(transformer),
        "trainable_params": n_trainable,
        "base_transformer_params": sum(p.numel() for p in transformer.parameters()) - n_trainable,
        "file_bytes": (out / LORA_FILE).stat().st_size,
        "data_s": round(data_s, 2),
        "train_s": round(train_s, 2),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "threads": torch.get_num_threads(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])),
    }
    write_json_atomic(out / INFO_FILE, info)
    return LoraTrainResult(folder=out, info=info, losses=losses, pipe=pipe)


def read_lora_info(folder: str | Path) -> dict:
    """A factor LoRA folder's lora_info.json, with a clear error when the folder is not one."""
    folder = Path(folder)
    if not (folder / LORA_FILE).is_file() or not (folder / INFO_FILE).is_file():
        raise ModelLoadError(
            f"{folder} is not a factor LoRA folder (needs {LORA_FILE} and {INFO_FILE}); make one with "
            "`saekit testbed lora --model runs/fluxbed/pipeline --factor colour --value red --out <folder>`"
        )
    return json.loads((folder / INFO_FILE).read_text())


def load_factor_lora(pipe, folder: str | Path, adapter_name: str = "factor") -> dict:
    """Load a factor LoRA into `pipe` with `pipe.load_lora_weights` after checking it was trained on a
    transformer of this shape; returns its info. Undo with `pipe.unload_lora_weights()`."""
    info = read_lora_info(folder)
    mine = transformer_signature(pipe.transformer)
    if info["transformer"] != mine:
        raise ModelLoadError(
            f"the LoRA in {folder} was trained on a transformer with {info['transformer']}, but this "
            f"pipeline's is {mine}; train one on this pipeline (saekit testbed lora --model <pipeline>)"
        )
    from diffusers.utils import logging as diffusers_logging

    # the LoRA holds transformer keys only, and diffusers warns on every load that the CLIP text encoder
    # got none; errors still show
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        pipe.load_lora_weights(str(folder), weight_name=LORA_FILE, adapter_name=adapter_name)
    finally:
        diffusers_logging.set_verbosity(level)
    return info
