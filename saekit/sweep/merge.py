"""Merge sweeps run per layer into one result, and the methods x layers test grid.

On a shared 2-core machine one sweep process per layer finishes sooner than one process over every
layer, and a layer measured earlier (with the same protocol) need not be rerun. The merged records
feed the same protocol (`saekit.sweep.protocol`): strengths chosen per concept on train prompts,
test means with bootstrap intervals, and the layer chosen on train for the `chosen` rows. Runs are
only merged when they measured the same concepts and prompts (checked on the baseline records).
Pure functions over sweep.json dicts; no model.
"""

from __future__ import annotations

from statistics import fmean

from saekit.errors import SteeringError
from saekit.steer.concept.recipes import choose_on_train
from saekit.sweep.protocol import best_sae_vs_diffmean, protocol_table, rows_at_choice, sae_per_concept


def _units(doc: dict) -> set[tuple]:
    """(concept, prompt, split) units of a run, from its layer-independent baseline records."""
    return {(r["concept"], r["prompt_idx"], r["split"]) for r in doc["records"] if r["layer"] == -1}


def common_concepts(docs: list[dict]) -> list[str]:
    """Concepts every run measured at every one of its layers (a stopped run's partial file covers the
    first few), in the first run's order."""
    per_run = [{r["concept"] for r in d["records"] if r["layer"] != -1} for d in docs]
    first = [c["concept"] for c in docs[0].get("concepts", [])] or sorted(per_run[0])
    return [c for c in dict.fromkeys(first) if all(c in s for s in per_run)]


def restrict(doc: dict, concepts: list[str]) -> dict:
    """`doc` with only the records (and concept infos) of `concepts`."""
    keep = set(concepts)
    return {**doc, "records": [r for r in doc["records"] if r["concept"] in keep],
            "concepts": [c for c in doc.get("concepts", []) if c["concept"] in keep]}  # fmt: skip


def merge_records(docs: list[dict]) -> list[dict]:
    """Every layer's records of every run, the baselines (layer -1) once, from the first run."""
    if not docs:
        raise SteeringError("merge needs at least one sweep.json")
    units = _units(docs[0])
    seen: dict[tuple, int] = {}
    out = [r for r in docs[0]["records"] if r["layer"] == -1]
    for i, doc in enumerate(docs):
        if _units(doc) != units:
            raise SteeringError(
                f"sweep {i} measured other concepts/prompts than sweep 0; merge only runs of one protocol"
            )
        for r in doc["records"]:
            if r["layer"] == -1:
                continue
            key = (r["layer"], r["arm"])
            if seen.setdefault(key, i) != i:
                raise SteeringError(f"layer {key[0]} arm {key[1]} is in sweeps {seen[key]} and {i}")
            out.append(r)
    return out


def merge_sweeps(docs: list[dict], seed: int = 0):
    """One `SweepResult` (records, concepts, protocol table, summary) from several sweep.json dicts."""
    from saekit.sweep.config import SweepResult
    from saekit.sweep.report import summarize

    records = merge_records(docs)
    return SweepResult(
        config={"merged": [d.get("config", {}) for d in docs]},
        concepts=[c for d in docs for c in d.get("concepts", [])],
        records=records,
        protocol=protocol_table(records, seed=seed),
        summary=summarize(records),
        seconds=sum(float(d.get("seconds", 0.0)) for d in docs),
    )


def layer_grid(records: list[dict], seed: int = 0) -> dict:
    """Test mean and interval per (arm, layer) at the strengths chosen on train, and per layer the best
    SAE arm (chosen on train at that layer) minus DiffMean, paired over (concept, prompt)."""
    prot = protocol_table(records, seed=seed)
    layers = sorted({r["layer"] for r in records if r["layer"] != -1})
    cells = {(r["arm"], r["layer"]): r for r in prot["per_layer"]}
    vs_dm, per_concept = {}, {}
    for layer in layers:
        sub = [r for r in records if r["layer"] == layer]
        vs_dm[layer] = best_sae_vs_diffmean(sub, choose_on_train(sub, over_layers=True), seed)
        per_concept[layer] = sae_per_concept(sub, seed)
    arms = sorted({a for a, lay in cells if lay != -1}, key=lambda a: -_mean_over_layers(cells, a, layers))
    return {"layers": layers, "arms": arms, "cells": cells, "best_sae_vs_diffmean": vs_dm,
            "sae_per_concept": per_concept}  # fmt: skip


def _mean_over_layers(cells: dict, arm: str, layers: list) -> float:
    vals = [cells[arm, lay]["overall"] for lay in layers if (arm, lay) in cells]
    return fmean(vals) if vals else float("-inf")


def _signed(x: float | None, ci: list[float]) -> str:
    return "-" if x is None else f"{x:+.3f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _cell(row: dict | None) -> str:
    if row is None or row["overall"] is None:
        return "-"
    lo, hi = row["ci"]
    return f"{row['overall']:.3f} [{lo:.2f}, {hi:.2f}]"


def format_layer_grid(grid: dict, records: list[dict]) -> str:
    """Markdown: arms x layers (test overall [95% CI]), DiffMean's row repeated under each layer's best
    SAE arm, the paired difference per layer, and the baselines."""
    layers = grid["layers"]
    head = "| arm | " + " | ".join(f"layer {lay}" for lay in layers) + " |"
    lines = [head, "|---|" + "---|" * len(layers)]
    for arm in grid["arms"]:
        lines.append(
            f"| {arm} | " + " | ".join(_cell(grid["cells"].get((arm, lay))) for lay in layers) + " |"
        )
    diffs = []
    for lay in layers:
        b = grid["best_sae_vs_diffmean"].get(lay)
        if not b or b["difference"] is None:
            diffs.append("-")
            continue
        lo, hi = b["difference_ci"]
        diffs.append(f"{b['arm']}: {b['difference']:+.3f} [{lo:+.2f}, {hi:+.2f}]")
    lines.append("| best SAE arm (train) - DiffMean | " + " | ".join(diffs) + " |")
    pcs = [grid.get("sae_per_concept", {}).get(lay) for lay in layers]
    cells = [_cell({"overall": p["sae_test"], "ci": p["sae_ci"]}) if p else "-" for p in pcs]
    lines.append("| SAE arm+strength per concept (train) | " + " | ".join(cells) + " |")
    cells = [_signed(p["difference"], p["difference_ci"]) if p else "-" for p in pcs]
    lines.append("| per-concept SAE - DiffMean | " + " | ".join(cells) + " |")
    test = [r for r in records if r["layer"] == -1 and r["split"] == "test"]
    for arm in ("prompting", "unsteered"):
        vals = [r["overall"] for r in test if r["arm"] == arm]
        if vals:
            lines.append(
                f"| {arm} (no layer) | {fmean(vals):.3f} (n {len(vals)}) |" + " |" * (len(layers) - 1)
            )
    return "\n".join(lines)


def chosen_layer_rows(records: list[dict]) -> dict[str, list[int]]:
    """Arm -> the layers the train prompts chose for it (one per concept), for the report."""
    choice = choose_on_train(records, over_layers=True)
    rows = rows_at_choice(records, choice, True)
    out: dict[str, list[int]] = {}
    for (arm, _concept), (layer, _s) in sorted(choice.items()):
        if any(r["arm"] == arm for r in rows) and layer != -1:
            out.setdefault(arm, []).append(layer)
    return out
