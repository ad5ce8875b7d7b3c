"""Build the feature browser of an analysis and take the screenshots in docs/results/.

    python docs/results/browser_screenshots.py --analysis /work/data/demo/analysis \
        --sae /work/data/demo/sae --name browser_lm
    # -> docs/results/browser_lm_index.png, docs/results/browser_lm_feature.png

The site is built in a temporary folder (the analysis folder is only read). Needs headless Chromium
(scripts/install.sh).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    from saekit.analysis import report
    from saekit.viz.browser import BrowserConfig, build_site
    from saekit.viz.browser.chromium import full_page_png, start_driver, wait_ready

    ap = argparse.ArgumentParser()
    ap.add_argument("--analysis", required=True)
    ap.add_argument("--sae", default=None)
    ap.add_argument("--feature", type=int, default=None, help="feature page to capture (default: first)")
    ap.add_argument("--name", default="browser_lm")
    ap.add_argument("--out", default=str(Path(__file__).parent))
    ap.add_argument("--index-height", type=int, default=900)
    a = ap.parse_args()
    doc = report.load(a.analysis)
    feature = a.feature if a.feature is not None else min(int(k) for k in doc["features"])
    with tempfile.TemporaryDirectory() as tmp:
        index = build_site(a.analysis, BrowserConfig(out=f"{tmp}/site", sae=a.sae, quiet=True))
        driver = start_driver(f"{tmp}/profile")
        try:
            driver.set_window_size(1360, a.index_height)
            driver.get(index.as_uri())
            wait_ready(driver)
            driver.save_screenshot(str(Path(a.out) / f"{a.name}_index.png"))
            driver.get(index.parent.joinpath("feature.html").as_uri() + f"?f={feature}")
            wait_ready(driver)
            full_page_png(driver, Path(a.out) / f"{a.name}_feature.png")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        finally:
            driver.quit()
    print(f"wrote {a.name}_index.png, {a.name}_feature.png (feature {feature}); console errors: {errors}")


if __name__ == "__main__":
    main()
