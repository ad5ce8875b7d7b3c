"""`saekit testbed build|lora`: the FluxPipeline testbed (`saekit.testbed.fluxbed`).

`build` trains the small FluxPipeline on digit renders with known factors (`saekit.commands.testbed_build`);
`lora` trains one factor LoRA on it (`saekit.commands.testbed_lora`). The older flow-matching digits
testbed that plain `saekit testbed` used to run was removed; an old invocation gets an error naming
`saekit testbed build`.
"""

from __future__ import annotations

from saekit.errors import SaekitError

USAGE = """usage: saekit testbed {build,lora} [flags]

The testbed: a small diffusers FluxPipeline trained from scratch on captioned digit renders with known
factors (digit, colour, thickness, position, size), so SAE steering can be measured against ground truth with
the ordinary `saekit harvest / train / analyze / steer / sweep` commands.

subcommands:
  build  train the FluxPipeline and write out/pipeline, report.json, report.md and sample sheets
         (saekit testbed build --ci --out runs/fluxbed_ci: a tiny build in about a minute)
  lora   train one factor LoRA on a built pipeline (the LoRA baseline of `saekit sweep --loras`)

`saekit testbed build --help` and `saekit testbed lora --help` list their flags.
Guide: docs/guide/fluxbed.md."""

SUBCOMMANDS = ("build", "lora")


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        from saekit.commands.testbed_build import main as build_main

        return build_main(argv[1:])
    if argv[:1] == ["lora"]:
        from saekit.commands.testbed_lora import main as lora_main

        return lora_main(argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    raise SaekitError(
        f"{argv[0]!r} is not a subcommand. The flow-matching digits testbed that plain `saekit testbed` "
        "ran was removed and replaced by `saekit testbed build` (a small FluxPipeline with known factors): "
        "run `saekit testbed build --out DIR` (`--ci` for a tiny one), then `saekit harvest/train/sweep` "
        "on DIR/pipeline. `saekit testbed --help` lists the subcommands."
    )
