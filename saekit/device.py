"""Where computation runs: one parser for `--device` and the defaults that follow from the device.

Every verb takes `device: str = "auto"` and calls `resolve_device` once; everything below it receives a
`torch.device`. No compute path names "cpu" itself: host-side buffers (store writes, RNG state) use
`HOST`, which says *why* the tensor lives on the CPU.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from saekit.errors import SaekitError

#: Host memory: where stores, checkpoints and RNG state live regardless of the compute device.
HOST = torch.device("cpu")

_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class DeviceError(SaekitError, ValueError):
    """A `--device` value does not parse or names a device this machine does not have."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """`auto | cpu | cuda | cuda:N | mps` -> torch.device; `auto` = the first CUDA device when present.

    Refuses a CUDA device this machine does not have, instead of failing later inside torch.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = spec.strip().lower()
    if not _SPEC.match(spec):
        raise DeviceError(f"--device {spec!r} does not parse: expected auto, cpu, cuda, cuda:N or mps")
    if spec == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else HOST
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {spec}: this machine has no CUDA GPU (torch {torch.__version__}); "
                "use --device cpu or auto"
            )
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present "
                f"(cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
        return torch.device("cuda", index)
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError("--device mps: MPS is not available here; use --device cpu or auto")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True where a bf16 matmul was measured faster than fp32 on this CPU (see `auto_model_dtype`)."""
    return auto_model_dtype(HOST) == "bfloat16"


#: bf16 must be at least this much faster than fp32 for `--dtype auto` to take it (bf16 also rounds)
BF16_MIN_GAIN = 0.10


def bf16_matmul_times(device: torch.device, rows: int = 512, d: int = 576, hidden: int = 1536) -> dict:
    """Milliseconds of one linear layer of a small LM's shape (SmolLM2's MLP: 576 -> 1536, 512 tokens)
    in float32 and in bfloat16 on `device`."""
    from saekit.probe import time_candidates_ms

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(rows, d, generator=g).to(device), torch.randn(hidden, d, generator=g).to(device)
    fns = {}
    for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        xd, wd = x.to(dt), w.to(dt)
        fns[name] = lambda xd=xd, wd=wd: torch.nn.functional.linear(xd, wd)
    with torch.no_grad():
        return time_candidates_ms(fns, device, reps=5)


def auto_model_dtype(device: torch.device) -> str:
    """Model dtype for `--dtype auto`: bfloat16 on CUDA; on a CPU bfloat16 only where a bf16 linear
    layer was measured at least 10% faster than fp32 here (cached per machine, `saekit.probe`).

    CPU flags cannot tell: with native bf16 (AVX-512 BF16, AMX) bf16 is ~2x faster, but under an AVX2
    dispatch limit (`ONEDNN_MAX_CPU_ISA=AVX2`) or on an AVX2-only CPU it is emulated and 2-5x slower.
    """
    if device.type == "cuda":
        return "bfloat16"
    if device.type != "cpu":
        return "float32"
    from saekit.probe import cached_figures, machine_key

    times, _ = cached_figures("model_dtype", machine_key(device), lambda: bf16_matmul_times(device))
    fast = times.get("bfloat16", float("inf")) <= (1 - BF16_MIN_GAIN) * times.get("float32", 0.0)
    return "bfloat16" if fast else "float32"


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast on `device`'s own backend (cuda or cpu) for `dtype`; a no-op when dtype is None/float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def to_host(t: torch.Tensor, *, pinned: dict[tuple, torch.Tensor] | None = None) -> torch.Tensor:
    """Copy `t` to host memory. On CUDA with a `pinned` buffer cache the copy is non-blocking into a
    reused pinned buffer (call `synchronize(t.device)` before reading it); on the CPU it is `t` itself."""
    if t.device.type == "cpu":
        return t
    if pinned is None:
        return t.to(HOST)
    key = (tuple(t.shape), t.dtype)
    buf = pinned.get(key)
    if buf is None:
        buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        pinned[key] = buf
    buf.copy_(t, non_blocking=True)
    return buf


def synchronize(device: torch.device) -> None:
    """Wait for queued work on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def allow_tf32(enabled: bool) -> Iterator[None]:
    """Allow TF32 matmuls on CUDA within the block (restores the previous setting)."""
    old_mm, old_cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_mm, old_cudnn
