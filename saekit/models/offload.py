"""Where a diffusers pipeline's weights live: all on the device, or offloaded to host memory.

`--offload none|model|sequential` maps to diffusers' own mechanisms (both need `accelerate` and CUDA):
- `none`: `pipe.to(device)`; every component sits on the GPU (FLUX.1 in bf16: ~34 GB with T5-XXL).
- `model`: `enable_model_cpu_offload`; one whole component (text encoder, transformer, VAE) is moved
  to the GPU when it runs and back after, so peak GPU memory is the largest component (FLUX's
  transformer, ~24 GB in bf16) at a small speed cost.
- `sequential`: `enable_sequential_cpu_offload`; weights stream to the GPU submodule by submodule,
  the least GPU memory (a few GB) and by far the slowest.
Offloading to the CPU from the CPU means nothing, so it is refused there before anything loads.
"""

from __future__ import annotations

from typing import Literal

import torch

from saekit.errors import ModelLoadError

Offload = Literal["none", "model", "sequential"]
OFFLOADS: tuple[str, ...] = ("none", "model", "sequential")


def check_offload(offload: str, device: torch.device) -> None:
    """Refuse an unknown choice, or offload without CUDA, before any weights are read."""
    if offload not in OFFLOADS:
        raise ModelLoadError(f"--offload {offload!r} is not one of {', '.join(OFFLOADS)}")
    if offload != "none" and device.type != "cuda":
        raise ModelLoadError(
            f"--offload {offload} moves weights between host memory and a CUDA GPU, but the device is "
            f"{device}; use --offload none on the CPU, or run on a machine with a GPU (--device cuda)"
        )


def place_pipeline(pipe, device: torch.device, offload: str = "none"):
    """Put `pipe` on `device` or enable diffusers' CPU offload onto it; returns `pipe`."""
    check_offload(offload, device)
    if offload == "none":
        return pipe.to(device)
    try:
        import accelerate  # noqa: F401  (diffusers' offload hooks come from accelerate)
    except ImportError as exc:
        raise ModelLoadError(
            f"--offload {offload} needs the `accelerate` package: pip install 'accelerate>=1.0' "
            "(or saekit[gpu]), or use --offload none"
        ) from exc
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    return pipe
