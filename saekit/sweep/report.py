"""Sweep outputs: per-strength summary (for plots), the test-split tables (markdown) and the files."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

METRICS = ("overall", "concept_score", "fluency", "relevance", "concept_cos", "nll")


def _mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else None


def summarize(records: list[dict]) -> list[dict]:
    """Means per (layer, arm, strength) over every concept and prompt (train and test), in first-seen
    order; what the strength plots draw (the honest numbers are in the protocol tables)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[r["layer"], r["arm"], r["strength"]].append(r)
    out = []
    for (layer, arm, strength), rows in groups.items():
        means = {m: _mean([r.get(m) for r in rows]) for m in METRICS}
        out.append({"layer": layer, "method": arm, "strength": strength, "n": len(rows), **means})
    return out


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ci(row: dict) -> str:
    lo, hi = row["ci"]
    return "-" if lo != lo else f"[{lo:.3f}, {hi:.3f}]"


def format_table(result) -> str:
    """Markdown: test-split table per layer and at the train-chosen layer, best SAE arm vs DiffMean,
    then the per-strength means over all prompts."""
    p = result.protocol
    head = "| layer | arm | test overall | 95% CI | concept | fluency | relevance | n | chosen |"
    lines = [
        "### Test prompts (strength chosen per concept on train prompts)",
        "",
        head,
        "|---|" * 1 + "---|" * 8,
    ]
    rows = sorted(p["per_layer"], key=lambda r: (r["layer"], -(r["overall"] or 0)))
    rows += sorted(p["best_layer"], key=lambda r: -(r["overall"] or 0))
    for r in rows:
        chosen = (
            ",".join(map(str, r.get("layers", []))) if r["layer"] == "chosen" else ",".join(r["strengths"])
        )
        layer = "-" if r["layer"] == -1 else r["layer"]
        lines.append(
            f"| {layer} | {r['arm']} | {_f(r['overall'])} | {_ci(r)} | {_f(r['concept_score'])} | "
            f"{_f(r['fluency'])} | {_f(r['relevance'])} | {r['n']} | {chosen} |"
        )
    b = p.get("best_sae_vs_diffmean")
    if b:
        lo, hi = b["difference_ci"]
        lines += ["", f"Best SAE arm (chosen on train): **{b['arm']}**, test {_f(b['sae_test'])} vs "
                  f"DiffMean {_f(b['diffmean_test'])}; paired difference {_f(b['difference'])} "
                  f"(95% CI [{lo:.3f}, {hi:.3f}], {b['n_pairs']} concept x prompt pairs)."]  # fmt: skip
    pc = p.get("sae_per_concept")
    if pc and pc["sae_test"] is not None:
        lo, hi = pc["difference_ci"]
        lines += ["", "SAE arm, layer and strength chosen **per concept** on train: test "
                  f"{_f(pc['sae_test'])} {_ci({'ci': pc['sae_ci']})} vs DiffMean {_f(pc['diffmean_test'])}; "
                  f"paired difference {_f(pc['difference'])} (95% CI [{lo:.3f}, {hi:.3f}], "
                  f"{pc['n_pairs']} pairs)."]  # fmt: skip
    lines += ["", "### All prompts, per strength (for the plots; not a fair comparison)", "",
              "| layer | arm | strength | overall | concept | fluency | relevance | n |",
              "|---|" + "---|" * 7]  # fmt: skip
    for s in result.summary:
        layer = "-" if s["layer"] == -1 else s["layer"]
        lines.append(
            f"| {layer} | {s['method']} | {s['strength']} | {_f(s['overall'])} | {_f(s['concept_score'])} | "
            f"{_f(s['fluency'])} | {_f(s['relevance'])} | {s['n']} |"
        )
    return "\n".join(lines)


def save_result(result, out: str | Path) -> dict[str, Path]:
    """sweep.json, table.md and the PNGs, all written atomically."""
    from saekit.atomic import write_json_atomic, write_text_atomic
    from saekit.viz.steer_plots import plot_score_vs_strength, plot_test_table, plot_tradeoff

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "sweep.json",
        "table": out / "table.md",
        "strength_png": out / "score_vs_strength.png",
        "tradeoff_png": out / "tradeoff.png",
        "test_png": out / "test_table.png",
    }
    write_json_atomic(paths["json"], {"schema_version": 2, "format": "saekit.sweep", **asdict(result)})
    write_text_atomic(paths["table"], format_table(result) + "\n")
    plot_score_vs_strength(result.summary, paths["strength_png"])
    plot_tradeoff(result.summary, paths["tradeoff_png"])
    plot_test_table(result.protocol, paths["test_png"])
    return paths
