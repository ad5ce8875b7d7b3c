"""`saekit browse ANALYSIS_DIR`: build the static HTML feature browser from `analysis.json`.

    saekit browse runs/demo/analysis                 # writes runs/demo/analysis/browser/index.html
    saekit browse runs/demo/analysis --sae runs/demo/sae   # + nearest features by decoder cosine
    saekit browse runs/demo/analysis --serve --port 8000   # and serve it on http://127.0.0.1:8000/
    saekit browse runs/fluxbed/sweep_colour             # an image sweep: tables + labelled contact sheet

The site opens from disk (file://) and makes no network requests; `--serve` is for large sites.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tyro

from saekit.viz.browser import BrowserConfig, build_site


@dataclass(frozen=True)
class BrowseArgs:
    """Build (and optionally serve) the feature browser of one analysis folder."""

    analysis: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ANALYSIS_DIR")]
    """Analysis folder (holding analysis.json from `saekit analyze`)."""
    site: Annotated[BrowserConfig, tyro.conf.arg(name="")] = field(default_factory=BrowserConfig)
    """How the site is built."""
    serve: bool = False
    """Serve the site on 127.0.0.1 after building it (Ctrl-C stops)."""
    port: int = 8000
    """Port for --serve (0: any free port)."""


def build_and_report(analysis: str, sae: str | None = None, quiet: bool = False) -> None:
    """Build ANALYSIS/browser and print where to open it (used by `analyze --html` and the demo)."""
    index = build_site(analysis, BrowserConfig(sae=sae, quiet=quiet))
    print(f"browser: open file://{index.resolve()}")


def main(argv: list[str]) -> int:
    args = tyro.cli(BrowseArgs, args=argv, prog="saekit browse", description=__doc__)
    from saekit.viz.browser.sweep_page import build_sweep_page, is_sweep_folder

    if is_sweep_folder(args.analysis):  # an image sweep: its tables and labelled contact sheet
        index = build_sweep_page(args.analysis)
    else:
        index = build_site(args.analysis, args.site)
    print(f"browser: open file://{index.resolve()}")
    if args.serve:
        from saekit.viz.browser.serve import make_server

        server = make_server(index.parent, args.port)
        print(f"browser: serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
    return 0
