"""`saekit export SAE --to saelens|sparsify|dictionary_learning OUT`: write an SAE for another library."""

from __future__ import annotations

import tyro

from saekit.formats.export import ExportConfig


def _positionals_to_flags(argv: list[str]) -> list[str]:
    """`SAE ... OUT` positionals -> `--sae SAE --out OUT` (flags and their values pass through)."""
    positional, flags, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            flags.append(arg)
            if "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("-") and arg != "--help":
                flags.append(argv[i + 1])
                i += 1
        else:
            positional.append(arg)
        i += 1
    named = [x for name, value in zip(("--sae", "--out"), positional) for x in (name, value)]
    return named + flags + positional[2:]  # extra positionals go on, for tyro to report


def main(argv: list[str]) -> int:
    try:
        cfg = tyro.cli(
            ExportConfig,
            args=_positionals_to_flags(argv),
            prog="saekit export",
            description="Write an SAE in SAELens / sparsify / dictionary_learning layout, refusing (with the "
            "reason) what a target cannot represent exactly.",
        )
    except SystemExit as exc:  # --help, or a flag error tyro already reported
        return int(exc.code or 0)
    from saekit.formats.export import export_sae

    out = export_sae(cfg)
    print(f"wrote {cfg.to} SAE to {out}")
    return 0
