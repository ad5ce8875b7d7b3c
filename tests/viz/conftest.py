"""Headless Chromium for the browser tests (Selenium + Debian's chromium-driver, no browser download).

`scripts/install.sh` installs both. Where Chromium or Selenium is missing the `browser` tests skip
with the reason; under CI (CI=true) a missing browser fails instead, so it cannot pass silently.
"""

from __future__ import annotations

import os

import pytest

# Counts calls of alert/confirm/prompt before any page script runs: a test can then tell that no
# script tried to open a dialog, not only that none is open now.
DIALOG_TRAP = (
    "window.__dialogs = 0;"
    "['alert','confirm','prompt'].forEach(function(n){window[n]=function(){window.__dialogs++;};});"
)


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI: {reason}; run scripts/install.sh")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chrome(tmp_path_factory):
    """A headless Chromium WebDriver with the browser console log enabled and a fresh profile."""
    from saekit.errors import SaekitError
    from saekit.viz.browser.chromium import start_driver

    try:
        driver = start_driver(tmp_path_factory.mktemp("chromium-profile"))
    except SaekitError as exc:
        _unavailable(str(exc))
    except Exception as exc:  # noqa: BLE001 - any start failure is reported as the skip reason
        _unavailable(f"headless chromium did not start: {str(exc).splitlines()[0]}")
    yield driver
    driver.quit()


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
