"""On-disk cache of the SAE-independent part of a spliced eval (`spliced.Baseline`).

Evaluating several SAEs at one hook (a sweep over k or width, checkpoints of one run) repeats the same
prefix forward and the same zero / mean ablation passes every time. The cache keeps them under
`<cache_dir>/eval_baselines/<key>.safetensors`, where the key hashes what they depend on: the model
(class, config and a strided sample of every parameter), the hook point, dtype and device type, the
tokens, the scored positions and the batch size. `spliced_metrics_and_baseline` re-checks a loaded
baseline against the model before using it, so a key collision or an edited model costs time, not
correctness. Files are safetensors (no pickle) written atomically; an unreadable one is ignored and
rewritten; the folder is kept under `MAX_TOTAL_BYTES` by deleting the least recently used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from saekit.atomic import atomic_path
from saekit.eval.spliced import Baseline
from saekit.hooks import HookPoint
from saekit.models.cache import cache_dir

FORMAT = "saekit-eval-baseline"
VERSION = "1"
MAX_BYTES = 1 << 30
"""Baselines whose prefix activations exceed this are not written (they would cost more disk than the
prefix forward they save is worth); the eval still runs, just without a cache."""
MAX_TOTAL_BYTES = 4 << 30
"""After a write, the oldest baselines are deleted until the folder holds at most this much."""
_SAMPLE = 257


def model_fingerprint(model: nn.Module) -> str:
    """A cheap identity of a model's weights: every parameter's name, shape, dtype and a strided sample
    of its values (fine-tuning or loading other weights changes nearly every value, hence the sample)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, p in model.named_parameters():
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // _SAMPLE)
        sample = flat[::step][:_SAMPLE].float().cpu()
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


def baseline_key(
    model: nn.Module, hook_point, token_id: Tensor, mask: Tensor, positions: Tensor, batch_size: int
) -> str:
    """Hex key of everything a `Baseline` depends on."""
    p = next(model.parameters())
    h = hashlib.sha256(
        f"{FORMAT}/{VERSION}|{model_fingerprint(model)}|{HookPoint.parse(hook_point)}".encode()
    )
    h.update(f"|{p.dtype}|{p.device.type}|{batch_size}|{tuple(token_id.shape)}|".encode())
    for t in (token_id.long(), mask.bool(), positions.bool()):
        h.update(t.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:32]


def baseline_path(key: str, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "eval_baselines" / f"{key}.safetensors"


def save_baseline(path: Path, baseline: Baseline, max_bytes: int = MAX_BYTES) -> bool:
    """Write atomically; False (nothing written) when the prefix is larger than `max_bytes`."""
    from safetensors.torch import save_file

    size = sum(x.numel() * x.element_size() for x in baseline.prefix)
    if size > max_bytes:
        return False
    tensors = {f"prefix.{i}": x.detach().cpu().contiguous() for i, x in enumerate(baseline.prefix)}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "n_batches": str(len(baseline.prefix)),
        "ce_orig_sum": repr(float(baseline.ce_orig_sum)),
        "ce_zero_sum": repr(float(baseline.ce_zero_sum)),
        "ce_mean_sum": repr(float(baseline.ce_mean_sum)),
        "count": str(int(baseline.count)),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    evict_oldest(path.parent, MAX_TOTAL_BYTES, keep=path)
    return True


def evict_oldest(folder: Path, max_total: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently written baselines until `folder` holds <= `max_total` bytes; returns them.

    Loading touches a file's mtime, so what a sweep keeps reading stays."""
    files = []
    for f in folder.glob("*.safetensors"):
        try:
            st = f.stat()
        except OSError:  # removed by a concurrent eval
            continue
        files.append((st.st_mtime, st.st_size, f))
    total, removed = sum(size for _, size, _ in files), []
    for _, size, f in sorted(files, key=lambda t: t[0]):
        if total <= max_total:
            break
        if keep is not None and f == keep:
            continue
        f.unlink(missing_ok=True)
        total -= size
        removed.append(f)
    return removed


def load_baseline(path: Path) -> Baseline | None:
    """The cached baseline, or None when there is none or it cannot be read (with a warning then)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
            n = int(meta["n_batches"])
            prefix = [f.get_tensor(f"prefix.{i}") for i in range(n)]
            sums = [float(meta[k]) for k in ("ce_orig_sum", "ce_zero_sum", "ce_mean_sum")]
            count = int(meta["count"])
        if not all(torch.isfinite(torch.tensor(sums))) or count <= 0:
            raise ValueError("non-finite CE sums or no tokens")
    except Exception as err:  # a truncated or foreign file must not stop the eval
        warnings.warn(
            f"eval: ignoring unreadable baseline cache {path} ({err}); it will be rewritten", stacklevel=2
        )
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: the last to be evicted
    return Baseline(prefix, *sums, count)
