"""`saekit info PATH [--verify]`: describe any SAE saekit reads, or an activation store."""

from __future__ import annotations

import json

import tyro

from saekit.formats.describe import InfoConfig


def main(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-"):  # the path is given positionally: `saekit info sae/`
        argv = ["--path", argv[0], *argv[1:]]
    try:
        cfg = tyro.cli(
            InfoConfig,
            args=argv,
            prog="saekit info",
            description="Format, architecture, sizes, normalisation and provenance of an SAE (any format "
            "saekit reads), or an activation store's manifest.",
        )
    except SystemExit as exc:  # --help, or a flag error tyro already reported
        return int(exc.code or 0)
    from saekit.formats.describe import describe

    print(json.dumps(describe(cfg), indent=2, default=str))
    return 0
