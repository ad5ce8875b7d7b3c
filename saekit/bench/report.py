"""The bench's table: which figures, their labels, the markdown and the JSON form of a report."""

from __future__ import annotations

import math
from typing import Any

from saekit.bench.bootstrap import Interval

RECONSTRUCTION = (
    ("fvu", "FVU", 3),
    ("fvu_inliers", "FVU w/o outliers", 3),
    ("l0", "L0", 1),
    ("never_fired_pct", "never fired %", 1),
    ("dense_pct", "dense %", 2),
    ("ce_sae", "CE spliced", 3),
    ("kl", "KL", 3),
    ("ce_recovered", "CE rec. vs zero", 3),
    ("ce_recovered_mean", "CE rec. vs mean", 3),
)
"""(figure, column label, digits) of the first table."""
INTERPRETABILITY = (
    ("absorption_rate", "absorption", 3),
    ("main_miss_rate", "main latent missed", 3),
    ("split_latents", "split latents", 2),
)
"""... of the second table, after one column per probe k."""
NOTES = """Intervals: 95% percentile bootstrap ({n_boot} replicates). Core figures resample the held-out
documents (one context each; per-token values computed by the bench, summing to `saekit eval`'s figures);
dense latents resample blocks of 256 store rows when a store was given, else documents. Never-fired
latents have no interval: a resample holds fewer distinct rows, so it can only find more latents silent
(its percentile interval would lie wholly above the value); see the seed spread. Probing resamples
the test texts' documents (plays for Shakespeare tasks) within each task; the mean over tasks weighs
tasks equally. Absorption resamples held-out words within each letter (rate: mean over letters);
split latents resample letters. Intervals cover the evaluation sample, not training: see the seed
spread for that."""


def probe_columns(ks: tuple[int, ...]) -> tuple[tuple[str, str, int], ...]:
    return tuple((f"probe_k{k}", f"probe k={k}", 3) for k in ks)


def _cell(iv: Any, digits: int) -> str:
    if isinstance(iv, Interval):
        return iv.fmt(digits)
    return "—"


def _table(rows: list[tuple[str, dict]], columns, lead: tuple[str, ...] = ()) -> list[str]:
    head = ["SAE", *lead, *(c[1] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows:
        extra = [str(row.get(k, "")) for k in ("arch", "d_sae", "k")][: len(lead)]
        cells = [_cell(row["figures"].get(key), d) for key, _, d in columns]
        lines.append("| " + " | ".join([name, *extra, *cells]) + " |")
    return lines


def _tasks_table(report: dict, k: int) -> list[str]:
    saes = report["saes"]
    base = report["baselines"]["raw_activations"]["probing_tasks"]
    head = ["task (chance)", f"raw k={k}", "raw full width", *(s["name"] for s in saes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, b in base.items():
        cells = [f"{task} ({b['chance']:.2f})", _cell(b.get(f"raw_k{k}"), 3), _cell(b.get("raw_full"), 3)]
        cells += [_cell(s["probing_tasks"].get(task, {}).get(f"sae_k{k}"), 3) for s in saes]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _seed_lines(report: dict) -> list[str]:
    lines = []
    for g in report.get("seed_groups", []):
        lines += [
            "",
            f"**{len(g['members'])} seeds of one configuration**: {', '.join(g['members'])}",
            "",
            "| figure | mean | sd across seeds | min | max | mean interval half-width |",
            "|---|---|---|---|---|---|",
        ]
        for fig, s in g["spread"].items():
            hw = g["half_width"].get(fig, float("nan"))
            hw_txt = f"{hw:.4f}" if math.isfinite(hw) else "no interval"
            lines.append(
                f"| {fig} | {s['mean']:.4f} | {s['sd']:.4f} | {s['min']:.4f} | {s['max']:.4f} | {hw_txt} |"
            )
    return (["", "## Spread across seeds", *lines]) if lines else []


def _timing_lines(report: dict) -> list[str]:
    t = report["timings_s"]
    lines = [
        "",
        "## Time per metric (seconds, wall)",
        "",
        "| metric | shared (model passes, once per run) | per SAE (mean) | total |",
        "|---|---|---|---|",
    ]
    for metric, row in t["per_metric"].items():
        lines.append(f"| {metric} | {row['shared']:.1f} | {row['per_sae']:.1f} | {row['total']:.1f} |")
    lines.append(f"| model load | {t['model_load']:.1f} | | |")
    lines.append(f"| **all** | | | **{t['total']:.1f}** |")
    return lines


def markdown(report: dict) -> str:
    """The report as markdown: the two tables, probing per task, seed spreads, time per metric, notes."""
    ks = tuple(report["config"]["probing"]["ks"])
    rows = [(s["name"], s) for s in report["saes"]]
    out = [
        f"# saekit bench: {report['model']} @ {report['hook_point']}",
        "",
        f"{len(rows)} SAE(s); model dtype {report['dtype']}; device {report['device']}.",
        "",
        "## Reconstruction and downstream loss",
        "",
    ]
    out += _table(rows, RECONSTRUCTION, lead=("arch", "d_sae", "k"))
    if "core_sample" in report:
        c = report["core_sample"]
        firing = f"{c['store_rows']} store rows" if c["store_rows"] else "the held-out tokens"
        out += [
            "",
            f"{c['tokens']} held-out tokens from {c['documents']} documents ({c['norm_outliers']} norm "
            f"outliers); never-fired and dense latents counted on {firing}.",
        ]
    if "probing" in report["metrics"] or "absorption" in report["metrics"]:
        out += ["", "## Sparse probing (mean accuracy over tasks) and absorption", ""]
        cols = probe_columns(ks) + INTERPRETABILITY
        raw = report["baselines"].get("raw_activations")
        base_rows = [("raw activations (baseline)", raw)] if raw else []
        out += _table(rows + base_rows, cols)
        if raw and "raw_full" in raw["figures"]:
            out.append(
                f"\nProbe on all {report['d_in']} raw dimensions: {raw['figures']['raw_full'].fmt(3)}."
            )
        acc = report["baselines"].get("letter_probe_accuracy")
        if isinstance(acc, Interval):
            out.append(f"First-letter probe (absorption) held-out accuracy: {acc.fmt(3)}.")
    if "probing" in report["metrics"]:
        for k in (ks[0], ks[min(2, len(ks) - 1)]) if len(ks) > 1 else ks:
            out += ["", f"### Sparse probing per task, k={k}", "", *_tasks_table(report, k)]
    out += _seed_lines(report) + _timing_lines(report)
    out += ["", "## Notes", "", NOTES.format(n_boot=report["config"]["n_boot"])]
    return "\n".join(out) + "\n"


def jsonable(obj: Any) -> Any:
    """Intervals as {value, lo, hi, n}; NaN as null."""
    if isinstance(obj, Interval):
        return {k: jsonable(v) for k, v in obj.to_dict().items()}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
