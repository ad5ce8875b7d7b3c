"""Merge per-layer sweep.json files into one result folder with the methods x layers grid.

python scripts/merge_sweeps.py --out docs/results/sweep_layers A/sweep.json B/sweep.json ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from saekit.atomic import write_text_atomic
from saekit.sweep.merge import common_concepts, format_layer_grid, layer_grid, merge_sweeps, restrict
from saekit.sweep.report import format_table, save_result
from saekit.viz.steer_layer_plot import plot_layer_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--common", action="store_true", help="keep only concepts every run finished")
    ap.add_argument("sweeps", nargs="+")
    args = ap.parse_args()
    docs = [json.loads(Path(p).read_text()) for p in args.sweeps]
    if args.common:
        keep = common_concepts(docs)
        print(f"concepts every run finished: {keep}")
        docs = [restrict(d, keep) for d in docs]
    result = merge_sweeps(docs)
    save_result(result, args.out)
    grid = layer_grid(result.records)
    test_prompting = [
        r["overall"] for r in result.records if r["arm"] == "prompting" and r["split"] == "test"
    ]
    grid["prompting"] = sum(test_prompting) / len(test_prompting) if test_prompting else None
    plot_layer_grid(grid, Path(args.out) / "layers.png")
    text = "## Methods x layers (test prompts, strength chosen per concept on train)\n\n"
    text += format_layer_grid(grid, result.records) + "\n\n" + format_table(result) + "\n"
    write_text_atomic(Path(args.out) / "table.md", text)
    print(text)


if __name__ == "__main__":
    main()
