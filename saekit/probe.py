"""Kernel and dtype choices by measurement, cached per machine.

Which path is fastest depends on the CPU (AMX, AVX-512 with or without native bf16, AVX2), on the
dispatch limits a user sets (`ONEDNN_MAX_CPU_ISA`, `MKL_ENABLE_INSTRUCTIONS`, `ATEN_CPU_CAPABILITY`),
on the thread count and on torch itself: CPU flag names cannot tell (an AVX-512-BF16 flag says nothing
about whether oneDNN may use it). So every `auto` choice times its candidates once at the run's own
shapes and keeps the figures in `$SAEKIT_CACHE/probes/<name>.json`, keyed by everything above.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: environment variables that change which kernels run, hence part of every cache key
DISPATCH_VARS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "MKL_CBWR")


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: torch.device) -> str:
    """What decides kernel speed here: device, CPU, torch version, threads and dispatch limits."""
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    env = ",".join(f"{v}={os.environ[v]}" for v in DISPATCH_VARS if v in os.environ)
    return f"{device.type}|{dev}|torch {torch.__version__}|threads {torch.get_num_threads()}|{env}"


def time_ms(fn: Callable[[], Any], device: torch.device, reps: int = 3, warmup: int = 1) -> float:
    """Best wall time of `reps` calls of `fn` in milliseconds, after `warmup` calls (the minimum is the
    least disturbed by other work on a shared machine)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 1000.0 * best


def time_candidates_ms(
    fns: dict[str, Callable[[], Any]], device: torch.device, reps: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Best wall time (ms) of each candidate, the candidates run in turn round after round: load from
    other work then slows all of them alike instead of whichever happened to run during it."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: 1000.0 * t for name, t in best.items()}


#: a probe taken while the 1-minute load average exceeded this many times the CPU count is used for the
#: run but not cached: on a machine busy with other work the timings can rank the candidates wrongly
BUSY_LOAD_PER_CPU = 1.25


def machine_busy() -> bool:
    try:
        return os.getloadavg()[0] > BUSY_LOAD_PER_CPU * (os.cpu_count() or 1)
    except OSError:
        return False


def _file(name: str) -> Path:
    from saekit.models.cache import cache_dir

    return cache_dir() / "probes" / f"{name}.json"


def cached_figures(
    name: str, key: str, measure: Callable[[], dict[str, float]]
) -> tuple[dict[str, float], bool]:
    """`measure()`'s figures for `key`, from the cache when present; `(figures, came_from_cache)`.

    Figures measured on a busy machine (`machine_busy`) are returned but not cached, so the next run
    measures again. A cache that cannot be read or written is ignored (a choice must never fail a run)."""
    path = _file(name)
    table: dict[str, Any] = {}
    try:
        table = json.loads(path.read_text())
        if isinstance(table.get(key), dict):
            return {k: float(v) for k, v in table[key].items()}, True
    except (OSError, ValueError, TypeError):
        table = {}
    figures = measure()
    if machine_busy():
        return figures, False
    try:
        from saekit.atomic import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**table, key: figures})
    except OSError:
        pass
    return figures, False
