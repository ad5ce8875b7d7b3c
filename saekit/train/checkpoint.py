"""Atomic, resumable training checkpoints: tensors in safetensors, small state in JSON.

Layout of `out/checkpoint/`: `state.json` names the tensor file of the same step
(`state_<step>.safetensors`) and holds the step, the train config and the RNG-free scalars. The tensor
file is written first under a new name, then `state.json` is replaced atomically, then older tensor
files are deleted, so a kill at any instant leaves a complete (older or newer) checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from saekit.atomic import save_tensors_atomic, write_json_atomic
from saekit.device import HOST
from saekit.errors import CheckpointError

SCHEMA_VERSION = 1
STATE_FILE = "state.json"


def save_checkpoint(folder: str | Path, step: int, tensors: dict[str, Tensor], state: dict[str, Any]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"state_{step:09d}.safetensors"
    save_tensors_atomic(
        folder / name,
        {k: v.detach().to(HOST) for k, v in tensors.items()},
        metadata={"format": "saekit.train_checkpoint", "step": str(step)},
    )
    write_json_atomic(
        folder / STATE_FILE, {"schema_version": SCHEMA_VERSION, "step": step, "tensors": name, **state}
    )
    for old in folder.glob("state_*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / STATE_FILE).exists()


def load_checkpoint(folder: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Return (state dict from JSON, tensors); CheckpointError names what is wrong and what to do."""
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: {exc}; delete {folder} to start over"
        ) from None
    if state.get("schema_version", 0) > SCHEMA_VERSION:
        raise CheckpointError(
            f"{path} has schema_version {state.get('schema_version')}, newer than this saekit"
        )
    tpath = folder / str(state.get("tensors", ""))
    try:
        tensors = load_file(str(tpath))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointError(
            f"checkpoint tensors {tpath} unreadable ({exc}); delete {folder} to start over"
        ) from None
    return state, tensors
