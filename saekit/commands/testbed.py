"""`saekit testbed`: train the flow-matching digits testbed and measure diffusion steering end to end.

`saekit testbed build ...` is the FluxPipeline testbed instead (`saekit.commands.testbed_build`), and
`saekit testbed lora ...` trains a factor LoRA on it (`saekit.commands.testbed_lora`)."""

from __future__ import annotations

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
    """Start from the tiny CI configuration (under a minute) instead of the full one; every
    `--config.*` flag given still applies on top of it."""
    config: TestbedConfig = field(default_factory=TestbedConfig)
    """The experiment configuration."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N. The testbed's models are tiny (48-wide) and run on the host; an
    accelerator is refused with a clear message rather than silently ignored."""


def _line(tag: str, r: dict | None) -> str:
    if r is None:
        return f"{tag}: (not in this sweep)"
    return (
        f"{tag}: {r['method']} @ {r['depth']} ({r['block']}) {r['stream']} stream, "
        f"{r['strength']:g} {r['unit']}, window {r['window']}: success {r['success']:.2f}, "
        f"faithful {r['faithful_success']:.2f}, confidence {r['confidence']:.2f}, nn-dist {r['nn_dist']:.2f}"
    )


def parse(argv: list[str]) -> TestbedArgs:
    """The flags as `TestbedArgs`. With `--ci` the CI configuration is the default that `--config.*`
    flags override (seed and quiet default to the full configuration's, as for any CLI run)."""
    import tyro

    from saekit.testbed.config import ci_config

    default = None
    if "--ci" in argv:
        full = TestbedConfig()
        default = TestbedArgs(ci=True, config=ci_config(seed=full.seed, quiet=full.quiet))
    return tyro.cli(TestbedArgs, args=argv, prog="saekit testbed", default=default)


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:  # `saekit testbed build`: the FluxPipeline testbed (saekit.testbed.fluxbed)
        from saekit.commands.testbed_build import main as build_main

        return build_main(argv[1:])
    if argv[:1] == ["lora"]:  # `saekit testbed lora`: a factor LoRA on that FluxPipeline
        from saekit.commands.testbed_lora import main as lora_main

        return lora_main(argv[1:])
    args = parse(argv)
    from saekit.device import HOST, resolve_device
    from saekit.errors import SaekitError

    dev = resolve_device(args.device)
    if dev.type != HOST.type and args.device != "auto":
        raise SaekitError(f"saekit testbed runs on the host only (found --device {dev}); use --device auto")
    from saekit.testbed.experiment import run_testbed
    from saekit.testbed.report import write_reports

    cfg = args.config
    result = run_testbed(cfg, args.out)
    written = write_reports(result, cfg, args.out)
    res = result.results
    for name, sc in res["scenarios"].items():
        print(f"scenario {name}: " + _line("best", sc["best"]["overall"]))
        print(
            f"  floor success {sc['floor_unsteered']['success']:.2f}; ceiling success "
            f"{sc['ceiling_conditioned_on_target']['success']:.2f}"
        )
    print(_line("seed (surgery, late, 2-92 abs, all steps)", res["seed_configuration"]["best"]))
    print(f"total {res['timings']['total_s']:.0f}s")
    print(f"wrote {len(written)} files to {args.out} (results.json, results.md, grids, trade-off plots)")
    sys.stdout.flush()
    return 0
