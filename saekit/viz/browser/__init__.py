"""The static HTML feature browser: `saekit browse ANALYSIS_DIR` (or `analyze ... --html`).

`build_site(analysis_dir, BrowserConfig(...))` writes a self-contained site (index + feature pages)
from `analysis.json`; `serve(site_dir)` serves it on 127.0.0.1 for sites too large to open from disk.
"""

from saekit.viz.browser.site import BrowserConfig, build_site

__all__ = ["BrowserConfig", "build_site"]
