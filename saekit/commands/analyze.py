"""`saekit analyze real|synthetic|compare`: what SAE features mean.

* `real`: one pass over activations -> top contexts, statistics, logit effects; from a store
  (`--store`) or straight from a model and a corpus (`--corpus`, activations computed on the fly).
  Image stores (CLIP, FLUX, testbed) also get image grids, heatmaps and per-timestep plots.
* `synthetic`: token sequences that maximise each feature (needs the model).
* `compare`: real + synthetic (reusing what --out already holds for those features) + comparison.
All three write/extend `OUT/analysis.json` and PNGs in OUT.
"""

from __future__ import annotations

from typing import Annotated, Union

import tyro

from saekit.analysis.run import CompareArgs, RealArgs, SyntheticArgs

Command = Union[  # noqa: UP007 - tyro needs a Union of annotated subcommands
    Annotated[RealArgs, tyro.conf.subcommand("real")],
    Annotated[SyntheticArgs, tyro.conf.subcommand("synthetic")],
    Annotated[CompareArgs, tyro.conf.subcommand("compare")],
]


def parse(argv: list[str]) -> RealArgs | SyntheticArgs | CompareArgs:
    """The job config the flags describe (`analyze real|synthetic|compare ...`)."""
    return tyro.cli(Command, args=argv, prog="saekit analyze", description=__doc__)


def compare_lines(doc: dict) -> list[str]:
    """One line per compared feature: how far synthetic maximisers got relative to the real maximum."""
    return [
        f"feature {k}: synthetic/real max = {c['ratio_to_real_max']:.2f}"
        if c["ratio_to_real_max"] is not None
        else f"feature {k}: never fired in real data"
        for k, c in ((k, f["comparison"]) for k, f in doc["features"].items() if "comparison" in f)
    ]


def main(argv: list[str]) -> int:
    from saekit.analysis.run import run_compare, run_real, run_synthetic

    args = parse(argv)
    if isinstance(args, CompareArgs):
        lines = compare_lines(run_compare(args))
    elif isinstance(args, RealArgs):
        doc = run_real(args)
        s = doc["summary"]
        lines = [
            f"analyze real: {s['n_rows']:,} tokens, {s['n_selected']} features reported, {s['n_dead']} of "
            f"{s['n_features']} never fired -> {args.out}/analysis.json"
        ]
    else:
        run_synthetic(args)
        lines = []
    if not args.quiet and lines:
        print("\n".join(lines))
    if args.html:
        from saekit.commands.browse import build_and_report

        build_and_report(args.out, sae=args.sae, quiet=args.quiet)
    return 0
