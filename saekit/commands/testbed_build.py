"""`saekit testbed build`: train the small FluxPipeline testbed (a diffusers folder) and report its figures.

Reached through `saekit testbed build ...` (`saekit.commands.testbed` dispatches).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from saekit.testbed.fluxbed.config import FluxbedConfig


@dataclass(frozen=True)
class BuildArgs:
    """Build `out/pipeline` (a diffusers FluxPipeline folder) and write report.json, report.md and
    sample sheets into `out`."""

    __test__ = False
    out: Path = Path("runs/fluxbed")
    """Output folder; the pipeline is `out/pipeline` (load it with `FluxPipeline.from_pretrained`)."""
    ci: bool = False
    """Start from the tiny CI configuration (about a minute on one thread, far worse) instead of the full one;
    every `--config.*` flag given still applies on top of it."""
    config: FluxbedConfig = field(default_factory=FluxbedConfig)
    """The build configuration."""


def parse(argv: list[str]) -> BuildArgs:
    import tyro

    from saekit.testbed.fluxbed.config import ci_config

    default = BuildArgs(ci=True, config=ci_config()) if "--ci" in argv else None
    return tyro.cli(BuildArgs, args=argv, prog="saekit testbed build", default=default)


def main(argv: list[str]) -> int:
    args = parse(argv)
    import torch

    from saekit.testbed.fluxbed.build import build_fluxbed

    result = build_fluxbed(args.config, args.out)
    r = result.report
    gen = r["generation_accuracy"]
    print(
        f"pipeline: {result.pipeline_dir}  (FluxPipeline.from_pretrained; call it with height=32, width=32)"
    )
    print(
        f"built in {r['build_s']:.0f} s on {torch.get_num_threads()} thread(s); "
        f"peak memory {r['peak_rss_mib']:.0f} MiB"
    )
    for name, acc in (
        ("judges, real test renders", r["judge_accuracy_on_real_test_renders"]),
        ("generations, training combinations", gen["training_combinations"]),
        ("generations, held-out combinations", gen["heldout_combinations"]),
    ):
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()))
    print(f"wrote {args.out / 'report.md'}")
    return 0
