"""The decoder's projection, Adam step and renormalisation in one pass (`sae/native/decoder_adam.c`).

With a unit-norm decoder every training step (1) removes the gradient's component along each decoder row,
(2) takes an Adam step and (3) scales the rows back to unit norm. As three library calls that streams the
decoder (10.6 MB at 576 x 9216 fp32), its gradient and both Adam moments through memory about three
times, a memory-bound ~10% of a step at batch 1024; the C kernel reads and writes each row once.

The kernel works on the optimiser's own state (`exp_avg`, `exp_avg_sq`, `step`, created as torch creates
them), so checkpoints, resumption and the rest of the optimiser do not change: after the kernel the
decoder's gradient is set to None and `opt.step()` skips it. Where it cannot be used (not a CPU fp32
contiguous decoder, an Adam variant it does not implement, no C compiler, a failed probe, or
`SAEKIT_NATIVE=0`), `decoder_step_` returns False and the trainer takes the three separate calls. The
results agree with those to fp32 rounding (tests/train/test_fused_decoder.py).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

from saekit.sae.native_build import build_library, compiler, cpu_tag

SOURCE = Path(__file__).parents[1] / "sae" / "native" / "decoder_adam.c"
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-shared", "-fPIC", "-std=c11")
_lock = threading.Lock()
_kernel: object = None  # None: not tried yet; False: unavailable; else the ctypes function


def _load():
    fn = ctypes.CDLL(str(build_library(SOURCE, FLAGS, compiler(), cpu_tag()))).saekit_decoder_adam_rows
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2 + [ctypes.c_float] * 5 + [ctypes.c_int] * 3
    return fn


def reference_step_(
    W: Tensor, grad: Tensor, m: Tensor, v: Tensor, t: int, lr: float, betas: tuple[float, float], eps: float
) -> None:
    """The same update with torch ops (projection onto unit rows, Adam as torch.optim.Adam, renorm): the
    kernel's probe and the tests' reference."""
    b1, b2 = betas
    g = grad - (grad * W).sum(-1, keepdim=True) * W
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = v.sqrt() / math.sqrt(1 - b2**t) + eps
    W.addcdiv_(m, denom, value=-lr / (1 - b1**t))
    W /= torch.linalg.vector_norm(W, dim=-1, keepdim=True).clamp_min(1e-12)


def _call(fn, W: Tensor, grad: Tensor, m: Tensor, v: Tensor, t: int, lr: float, betas, eps: float,
          threads: int) -> None:  # fmt: skip
    b1, b2 = (float(b) for b in betas)
    rc = fn(W.data_ptr(), grad.data_ptr(), m.data_ptr(), v.data_ptr(), W.shape[0], W.shape[1],
            lr / (1 - b1**t), b1, b2, eps, math.sqrt(1 - b2**t), 1, 1, threads)  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"native decoder step returned {rc}")


def _probe(fn) -> bool:
    """The built kernel matches `reference_step_` over three steps on rows of an awkward length."""
    gen = torch.Generator().manual_seed(0)
    W = torch.nn.functional.normalize(torch.randn(37, 83, generator=gen), dim=-1)
    tensors = [W, torch.zeros_like(W), torch.zeros_like(W)]
    ref = [t.clone() for t in tensors]
    for t in (1, 2, 3):
        g = torch.randn(W.shape, generator=gen)
        _call(fn, *tensors[:1], g, *tensors[1:], t, 1e-2, (0.9, 0.999), 1e-8, 2)
        reference_step_(ref[0], g, ref[1], ref[2], t, 1e-2, (0.9, 0.999), 1e-8)
    return all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(tensors, ref, strict=True))


def kernel():
    """The ctypes kernel, or False where it cannot be used here (decided once per process)."""
    global _kernel
    if _kernel is None:
        with _lock:
            if _kernel is None:
                _kernel = False
                if os.environ.get("SAEKIT_NATIVE", "1") != "0":
                    try:
                        fn = _load()
                        if _probe(fn):
                            _kernel = fn
                        else:
                            warnings.warn("saekit: native decoder step disagreed with torch; using torch",
                                          RuntimeWarning, stacklevel=2)  # fmt: skip
                    except (OSError, RuntimeError) as e:
                        warnings.warn(f"saekit: native decoder step unavailable ({e}); using torch",
                                      RuntimeWarning, stacklevel=2)  # fmt: skip
    return _kernel


def _group_of(opt: torch.optim.Optimizer, p: Tensor) -> dict | None:
    return next((g for g in opt.param_groups if any(q is p for q in g["params"])), None)


def _plain_adam(group: dict) -> bool:
    """The Adam variant the kernel implements: no weight decay, amsgrad, maximize or graph capture."""
    lr = group.get("lr")
    return (
        not group.get("amsgrad", False)
        and not group.get("maximize", False)
        and not group.get("capturable", False)
        and not group.get("differentiable", False)
        and group.get("weight_decay", 0) == 0
        and isinstance(lr, float | int)
    )


def _fp32_cpu_dense(*ts: Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in ts)


def decoder_step_(W: Tensor, opt: torch.optim.Optimizer) -> bool:
    """Project, Adam-step and renormalise the unit-row decoder `W` in one pass, on `opt`'s state for `W`,
    then clear `W.grad` so `opt.step()` leaves it alone. False (and nothing changed) where the kernel cannot
    be used; the caller then runs the separate steps."""
    grad = W.grad
    if grad is None or not isinstance(opt, torch.optim.Adam) or W.dim() != 2 or grad.is_sparse:
        return False
    group = _group_of(opt, W)
    if group is None or not _plain_adam(group) or not _fp32_cpu_dense(W, grad):
        return False
    state = opt.state[W]
    if state and not _fp32_cpu_dense(state["exp_avg"], state["exp_avg_sq"]):
        return False
    fn = kernel()
    if not fn:
        return False
    if not state:  # created as torch.optim.Adam creates them, so the state dict is the same
        fused = bool(group.get("fused"))
        state["step"] = torch.zeros((), dtype=torch.float32) if fused else torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(W, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(W, memory_format=torch.preserve_format)
    state["step"] += 1
    t = int(state["step"].item())
    with torch.no_grad():
        _call(fn, W.detach(), grad, state["exp_avg"], state["exp_avg_sq"], t, float(group["lr"]),
              group["betas"], group["eps"], torch.get_num_threads())  # fmt: skip
    W.grad = None
    return True
