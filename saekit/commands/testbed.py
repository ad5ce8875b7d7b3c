"""`saekit testbed`: train the flow-matching digits testbed and measure diffusion steering end to end."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from saekit.testbed.config import TestbedConfig


@dataclass(frozen=True)
class TestbedArgs:
    """Run the whole testbed experiment and write results.json, results.md and PNGs into `out`."""

    __test__ = False
    out: Path = Path("runs/testbed")
    """Output folder; the trained generator/classifier are cached in out/models/ and reused."""
    ci: bool = False
    """Use the tiny CI configuration (under a minute) instead of `config`."""
    config: TestbedConfig = field(default_factory=TestbedConfig)
    """The experiment configuration."""


def main(argv: list[str]) -> int:
    import tyro

    args = tyro.cli(TestbedArgs, args=argv, prog="saekit testbed")
    from saekit.testbed.config import ci_config
    from saekit.testbed.experiment import run_testbed
    from saekit.testbed.report import write_reports

    cfg = args.config
    if args.ci:
        cfg = ci_config(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in ("seed", "quiet")})
    result = run_testbed(cfg, args.out)
    written = write_reports(result, cfg, args.out)
    res = result.results
    best, seed = res["best"]["overall"], res["seed_configuration"]["best"]

    def line(tag: str, r: dict | None) -> str:
        if r is None:
            return f"{tag}: (not in this sweep)"
        return (
            f"{tag}: {r['method']} @ {r['depth']} ({r['block']}) {r['stream']} stream, {r['strength']:g} {r['unit']}, "
            f"window {r['window']}: success {r['success']:.2f}, faithful {r['faithful_success']:.2f}, "
            f"confidence {r['confidence']:.2f}, nn-dist {r['nn_dist']:.2f}, change {r['change']:.2f}"
        )

    print(line("best", best))
    print(line("seed (surgery, late, 2-92 abs, all steps)", seed))
    print(
        f"floor success {res['floor_unsteered']['success']:.2f}; ceiling success "
        f"{res['ceiling_conditioned_on_target']['success']:.2f}; total {res['timings']['total_s']:.0f}s"
    )
    print(f"wrote {len(written)} files to {args.out} (results.json, results.md, grids, trade-off plots)")
    sys.stdout.flush()
    return 0
