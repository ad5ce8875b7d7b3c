"""Headless Chromium for tests and screenshots of a built site (Selenium + Debian's chromium-driver).

Nothing here downloads a browser: it uses the `chromium` and `chromedriver` on PATH (scripts/install.sh
installs Debian's). The flags keep Chromium off the network (this machine's network is closed) and
the profile is always a fresh folder.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

from saekit.errors import SaekitError

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1360,1000",
)


def find_binaries() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) paths, None where missing."""

    def find(*names: str) -> str | None:
        for n in names:
            path = shutil.which(n) or (n if os.path.isfile(n) else None)
            if path:
                return path
        return None

    return find("chromium", "chromium-browser", "/usr/bin/chromium"), find(
        "chromedriver", "/usr/bin/chromedriver"
    )


def start_driver(profile_dir: str | Path, width: int = 1360):
    """A headless Chromium WebDriver with the console log on; raises SaekitError saying what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise SaekitError(
            "selenium is not installed; run scripts/install.sh (or pip install selenium)"
        ) from None
    binary, driver_path = find_binaries()
    if not binary or not driver_path:
        raise SaekitError(
            "chromium / chromium-driver not found; run scripts/install.sh (it apt-get installs both)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag if not flag.startswith("--window-size") else f"--window-size={width},1000")
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.unhandled_prompt_behavior = "ignore"  # a real dialog stays open, so a caller can see it
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    driver.set_page_load_timeout(60)
    return driver


def wait_ready(driver, timeout: float = 60.0) -> None:
    """Wait until a browser page says its data is in (`<body data-ready="1">`)."""
    end = time.time() + timeout
    while time.time() < end:
        if driver.execute_script("return !!document.body && document.body.dataset.ready === '1'"):
            return
        time.sleep(0.05)
    raise SaekitError(f"page {driver.current_url} not ready after {timeout:.0f} s")


def full_page_png(driver, path: str | Path, max_height: int = 8000) -> None:
    """Screenshot of the whole page (not only the window), via the DevTools protocol."""
    m = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = m.get("cssContentSize") or m["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    Path(path).write_bytes(base64.b64decode(shot["data"]))
