"""Headless Chromium for the browser tests (Selenium + Debian's chromium-driver, no browser download).

`scripts/install.sh` installs both. Where Chromium or Selenium is missing the `browser` tests skip
with the reason; under CI (CI=true) a missing browser fails instead, so it cannot pass silently.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_FLAGS = (
    "--headless=new",
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
# Counts calls of alert/confirm/prompt before any page script runs: a test can then tell that no
# script tried to open a dialog, not only that none is open now.
DIALOG_TRAP = (
    "window.__dialogs = 0;"
    "['alert','confirm','prompt'].forEach(function(n){window[n]=function(){window.__dialogs++;};});"
)


def _find(*names: str) -> str | None:
    for n in names:
        path = shutil.which(n) or (n if os.path.isfile(n) else None)
        if path:
            return path
    return None


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {reason}; run scripts/install.sh")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chrome(tmp_path_factory):
    """A headless Chromium WebDriver with the browser console log enabled and a fresh profile."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (scripts/install.sh installs it)")
    binary = _find("chromium", "/usr/bin/chromium", "chromium-browser")
    driver_path = _find("chromedriver", "/usr/bin/chromedriver")
    if not binary or not driver_path:
        _unavailable("chromium / chromium-driver not installed (scripts/install.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.unhandled_prompt_behavior = "ignore"  # a real dialog stays open, so a test can see it
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    except Exception as exc:  # noqa: BLE001 - any start failure is reported as the skip reason
        _unavailable(f"headless chromium did not start: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def full_page_png(driver, path) -> None:
    """Screenshot of the whole page (not only the window), via the DevTools protocol."""
    import base64

    m = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = m.get("cssContentSize") or m["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    with open(path, "wb") as fh:
        fh.write(base64.b64decode(shot["data"]))


@pytest.fixture()
def page(chrome):
    """The shared driver with the dialog trap armed and the log emptied for this test."""
    trap = chrome.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": DIALOG_TRAP})
    chrome.get_log("browser")
    yield chrome
    chrome.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": trap["identifier"]})


@pytest.fixture()
def write_analysis(tmp_path):
    """write_analysis(doc) -> folder holding doc as analysis.json."""
    import json

    def write(doc: dict, name: str = "analysis"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "analysis.json").write_text(json.dumps(doc))
        return folder

    return write
