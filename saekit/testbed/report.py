"""Write the testbed's JSON, markdown summary table and PNGs into the output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saekit.atomic import write_json_atomic, write_text_atomic
from saekit.testbed.config import TestbedConfig
from saekit.testbed.experiment import TestbedResult, config_key, strengths_for

COLUMNS = (
    "method",
    "depth",
    "block",
    "stream",
    "unit",
    "window",
    "strength",
    "success",
    "faithful_success",
    "confidence",
    "nn_dist",
    "realistic",
    "change",
)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows if r is not None]
    return "\n".join(lines)


def _rate(r: dict[str, Any], key: str) -> str:
    ci = r.get(f"{key}_ci")
    return f"{r[key]:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def scenario_table(sc: dict[str, Any]) -> str:
    """Best configuration per method (by faithful success) with 95% intervals, floor and ceiling."""
    lines = [
        "| method | site (depth/stream) | unit | strength | success [95% CI] | faithful [95% CI] | nn-dist "
        "| n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, r in sorted(sc["best"]["by_method"].items(), key=lambda kv: -kv[1]["faithful_success"]):
        lines.append(
            f"| {m} | {r['depth']}/{r['stream']} | {r['unit']} | {r['strength']:g} | {_rate(r, 'success')} | "
            f"{_rate(r, 'faithful_success')} | {r['nn_dist']:.2f} | {r.get('n', '-')} |"
        )
    fl, ce = sc["floor_unsteered"], sc["ceiling_conditioned_on_target"]
    lines.append(f"| unsteered (floor) | - | - | - | {fl['success']:.2f} | {fl['faithful_success']:.2f} | "
                 f"{fl['nn_dist']:.2f} | {sc.get('n_per_configuration', '-')} |")  # fmt: skip
    n = sc.get("n_per_configuration", "-")
    lines.append(f"| conditioned on target (ceiling) | - | - | - | {ce['success']:.2f} | "
                 f"{ce['faithful_success']:.2f} | {ce['nn_dist']:.2f} | {n} |")  # fmt: skip
    return "\n".join(lines)


SCENARIO_TITLES = {
    "null": "null class (unconditional): steering must add the class",
    "other": "class to class: generated as digit a, steered to digit b (a != b)",
}


def summary_markdown(res: dict[str, Any]) -> str:
    m = res["model"]
    parts = [
        "# saekit testbed results",
        "",
        f"classifier test accuracy {m['classifier_test_acc']:.3f}; generator's own-class accuracy "
        f"{m['own_class_accuracy']:.3f}; realistic = nearest-real-digit distance <= "
        f"{m['realistic_threshold']:.3f} (95th percentile of held-out real digits; their mean is "
        f"{m['real_test_nn_dist_mean']:.3f}). faithful success = the classifier says target AND realistic.",
    ]
    for name, sc in res.get("scenarios", {"": res}).items():
        title = SCENARIO_TITLES.get(name, name)
        parts += ["", f"## Scenario: {title}", "", scenario_table(sc)]
        parts += ["", "### Best per site", "", table(list(sc["best"]["by_depth"].values()))]
    seed = res["seed_configuration"]
    if seed["best"] is not None:
        parts += [
            "",
            "## Seed configuration (surgery, late block, abs strengths, all steps)",
            table(seed["rows"]),
        ]
    for field in ("method", "depth", "stream", "unit", "window"):
        parts += [
            "",
            f"## Best per {field} (first scenario)",
            table(list(res["best"][f"by_{field}"].values())),
        ]
    parts += ["", "timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res["timings"].items()), ""]
    return "\n".join(parts)


def write_reports(result: TestbedResult, cfg: TestbedConfig, out_dir: str | Path) -> list[Path]:
    """results.json, results.md, grid_<depth>_<stream>_<unit>_<window>.png, tradeoff_*.png."""
    from saekit.viz.testbed_plots import steering_grid, tradeoff_plot

    base_images = result.baseline
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = result.results
    written = [out / "results.json", out / "results.md"]
    write_json_atomic(written[0], res)
    write_text_atomic(written[1], summary_markdown(res))
    windows = ["all"] if "all" in cfg.windows else list(cfg.windows[:1])
    for depth in cfg.depths:
        for stream in cfg.streams:
            for unit in cfg.units:
                for window in windows:
                    imgs = {m: result.images[config_key(depth, stream, m, unit, window)] for m in cfg.methods}
                    title = f"{depth} block, {stream} stream, strength unit {unit}, window {window}"
                    written.append(
                        steering_grid(
                            out / f"grid_{depth}_{stream}_{unit}_{window}.png",
                            imgs,
                            list(cfg.methods),
                            strengths_for(cfg, unit),
                            title,
                            unit,
                            baseline=base_images,
                        )
                    )
    b = res["best"]["overall"]
    if b is not None and b["window"] not in windows:
        imgs = {
            m: result.images[config_key(b["depth"], b["stream"], m, b["unit"], b["window"])]
            for m in cfg.methods
        }
        written.append(
            steering_grid(
                out / "grid_best.png",
                imgs,
                list(cfg.methods),
                strengths_for(cfg, b["unit"]),
                f"best: {b['depth']} block, {b['stream']} stream, {b['unit']}, window {b['window']}",
                b["unit"],
                baseline=base_images,
            )
        )
    floor, ceil = res["floor_unsteered"], res["ceiling_conditioned_on_target"]
    written.append(
        tradeoff_plot(
            out / "tradeoff_success_vs_realism.png",
            res["rows"],
            "nn_dist",
            "mean distance to nearest real digit (lower = more realistic)",
            floor,
            ceil,
        )
    )
    written.append(
        tradeoff_plot(
            out / "tradeoff_success_vs_change.png",
            res["rows"],
            "change",
            "mean change vs unsteered sample (same noise)",
            floor,
            ceil,
        )
    )
    return written
