"""A faster row-wise top-k for the CPU: the C kernel in `native/topk_rows.c`, built on first use.

`torch.topk` on the CPU costs about a quarter of a TopK training step at batch 4096 x 9216 (it copies
each row into (value, index) pairs and heap-sorts them). The kernel scans each row twice instead (a
group-max pass that yields a tight lower bound on the k-th value, then a vectorised compare that passes
only a few candidates on), 3-4x faster on one thread (`benchmarks/train_profile.py`).

It is built with the system C compiler (`$CC`, else `cc`/`gcc`/`clang`) into
`~/.cache/saekit/native/` (`$SAEKIT_CACHE` moves it), keyed by the source, the flags and this CPU, in
well under a second. Where there is no compiler, the build fails, or the built kernel disagrees with
`torch.topk` on a probe, `topk_rows` falls back to `torch.topk` (one warning), so a missing compiler costs
speed, never results. `SAEKIT_NATIVE=0` turns it off.

Results are a top-k *set* like torch.topk's (unsorted; NaN ranks above every number); among tied values
the kernel may choose other positions than torch does.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

from saekit.sae.native_build import build_library
from saekit.sae.native_build import compiler as _compiler
from saekit.sae.native_build import cpu_tag as _cpu_tag

SOURCE = Path(__file__).with_name("native") / "topk_rows.c"
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=c11")
_DTYPES = {torch.float32: 0, torch.bfloat16: 1}
_lock = threading.Lock()
_kernel: object = None  # None: not tried yet; False: unavailable; else the ctypes function


def build() -> Path:
    """Compile the kernel (if this source/flags/CPU has no cached build) and return the shared library."""
    return build_library(SOURCE, FLAGS, _compiler(), _cpu_tag())


def _load():
    lib = ctypes.CDLL(str(build()))
    fn = lib.saekit_topk_rows
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]  # fmt: skip
    return fn


def _call(fn, x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    rows, n = x.shape
    vals = torch.empty(rows, k, dtype=x.dtype)
    idx = torch.empty(rows, k, dtype=torch.int64)
    rc = fn(x.data_ptr(), rows, x.stride(0), n, k, _DTYPES[x.dtype], vals.data_ptr(), idx.data_ptr(),
            torch.get_num_threads())  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"native top-k returned {rc}")
    return vals, idx


def _ranked(v: Tensor) -> Tensor:
    """Values in ascending order, NaN as +inf (how top-k ranks it), so sets compare with torch.equal."""
    return v.float().nan_to_num(nan=float("inf")).sort(-1).values


def _probe(fn) -> bool:
    """The built kernel agrees with torch.topk on rows with ties, -inf, NaN and both dtypes."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 300, generator=gen)
    x[1] = float("-inf")
    x[2, ::7] = float("nan")
    x[3] = torch.randint(0, 4, (300,), generator=gen).float()
    for dt in _DTYPES:
        xd = x.to(dt)
        for k in (1, 5, 37, 300):
            v, i = _call(fn, xd, k)
            ref = _ranked(xd.topk(k, dim=-1).values)
            if not torch.equal(_ranked(v), ref) or not torch.equal(_ranked(xd.gather(1, i)), _ranked(v)):
                return False
    return True


def kernel():
    """The ctypes kernel, or False where it cannot be used here (decided once per process)."""
    global _kernel
    if _kernel is None:
        with _lock:
            if _kernel is None:
                if os.environ.get("SAEKIT_NATIVE", "1") == "0":
                    _kernel = False
                else:
                    try:
                        fn = _load()
                        _kernel = fn if _probe(fn) else False
                        if _kernel is False:
                            warnings.warn("saekit: native top-k disagreed with torch.topk; using torch.topk",
                                          RuntimeWarning, stacklevel=2)  # fmt: skip
                    except (OSError, RuntimeError) as e:
                        warnings.warn(f"saekit: native top-k unavailable ({e}); using torch.topk",
                                      RuntimeWarning, stacklevel=2)  # fmt: skip
                        _kernel = False
    return _kernel


def usable(x: Tensor, k: int) -> bool:
    """This input can go to the kernel: a CPU fp32/bf16 matrix with unit column stride, 1 <= k <= n."""
    return (
        x.device.type == "cpu"
        and x.dim() == 2
        and x.dtype in _DTYPES
        and x.shape[0] > 0
        and 1 <= k <= x.shape[1] < 2**31
        and (x.shape[1] == 1 or x.stride(1) == 1)
        and not (torch.is_grad_enabled() and x.requires_grad)
    )


def topk_rows(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """`x.topk(k, dim=-1, sorted=False)` for 2-D inputs; the native kernel where `usable` and built."""
    if usable(x, k):
        fn = kernel()
        if fn:
            return _call(fn, x, k)
    return x.topk(k, dim=-1, sorted=False)
