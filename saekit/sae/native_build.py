"""Compile one of saekit's C kernels (`saekit/sae/native/*.c`) into a cached shared library.

Kernels are built with the system C compiler (`$CC`, else `cc`/`gcc`/`clang`) with `-march=native`, so a
build belongs to one CPU: the cache key (under `~/.cache/saekit/native/`, `$SAEKIT_CACHE` moves it) is
the source, the flags, the compiler and this CPU's model and feature flags. Each caller decides what to
do when there is no compiler (every kernel has a torch fallback with the same results).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from saekit.atomic import atomic_path
from saekit.models.cache import cache_dir


def cpu_tag() -> str:
    """What `-march=native` depends on: the CPU's model and feature flags (from /proc/cpuinfo)."""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return cc
    return next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def build_library(source: Path, flags: tuple[str, ...], cc: str | None, tag: str) -> Path:
    """The shared library of `source` built with `cc` and `flags` for the CPU `tag`, compiled now when
    no cached build of exactly these exists."""
    if cc is None:
        raise RuntimeError("no C compiler found (set $CC or install gcc)")
    src = source.read_bytes()
    key = hashlib.sha256(src + repr((flags, cc, platform.machine(), tag)).encode()).hexdigest()[:16]
    out = cache_dir() / "native" / f"{source.stem}-{key}.so"
    if out.exists():
        return out
    with atomic_path(out) as tmp:  # a concurrent build or reader sees the whole library or none
        res = subprocess.run([cc, *flags, "-o", str(tmp), str(source), "-lpthread", "-lm"],
                             capture_output=True, text=True)  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed: {res.stderr.strip()[-400:]}")
    return out
