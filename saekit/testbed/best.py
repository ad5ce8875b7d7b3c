"""Which testbed configurations are best: by faithful success, then success, then least change."""

from __future__ import annotations

from typing import Any


def _rank(row: dict[str, Any]) -> tuple[float, float, float]:
    return (row["faithful_success"], row["success"], -row["change"])


def best_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best configuration overall and per method/depth/stream/unit/window, by faithful success."""
    out: dict[str, Any] = {"overall": max(rows, key=_rank) if rows else None}
    for field in ("method", "depth", "stream", "unit", "window"):
        groups: dict[str, list] = {}
        for r in rows:
            groups.setdefault(r[field], []).append(r)
        out[f"by_{field}"] = {k: max(v, key=_rank) for k, v in groups.items()}
    return out


def seed_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed recipe: surgery on the late block, absolute strengths (2-92), all steps."""
    sel = [
        r
        for r in rows
        if r["method"] == "surgery" and r["depth"] == "late" and r["unit"] == "abs" and r["window"] == "all"
    ]
    return {"rows": sel, "best": max(sel, key=_rank) if sel else None}
