"""Seed groups: SAEs of one configuration trained with different seeds, and the spread of their figures.

A bootstrap interval says how much a figure moves on another sample of evaluation text; the spread
across seeds says how much it moves when the same recipe is trained again. Both are reported, so a
difference between two architectures can be compared with each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TRAIN_KEYS_IGNORED = frozenset(
    {
        "seed",
        "out",
        "acts",
        "quiet",
        "log_every",
        "checkpoint_every",
        "num_threads",
        "device",
        "prefetch",
        "cache_mb",
        "tensorboard",
        "wandb",
        "encoder",
        "distributed",
        "compile",
        "log",
    }
)
"""Training flags that do not change what is trained (or are the seed itself)."""


def config_key(sae, path: str | Path) -> str:
    """What must match for two SAEs to be seeds of one configuration: the SAE config without its
    provenance's token count, plus the training config (minus `TRAIN_KEYS_IGNORED`) when the folder
    holds train_summary.json."""
    cfg = sae.cfg.to_dict()
    prov = dict(cfg.pop("provenance", {}) or {})
    prov.pop("tokens_trained", None)
    key = {"sae": cfg, "provenance": prov}
    summary = Path(path) / "train_summary.json"
    if summary.is_file():
        try:
            train = json.loads(summary.read_text(encoding="utf-8")).get("train_config", {})
        except (OSError, json.JSONDecodeError):
            train = {}
        key["train"] = {k: v for k, v in train.items() if k not in TRAIN_KEYS_IGNORED}
    return json.dumps(key, sort_keys=True, default=str)


def seed_groups(keys: list[str]) -> list[list[int]]:
    """Indices of SAEs sharing a key, for every key held by two or more, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of a few numbers (one per seed)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return {"mean": float(v.mean()), "sd": sd, "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def group_spread(figures: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """figure -> spread across the members' values (members are dicts figure -> value)."""
    names = [k for k in figures[0] if all(k in f for f in figures)]
    return {k: spread([f[k] for f in figures]) for k in names}
