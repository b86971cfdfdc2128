"""Headless Chromium through Selenium, for tests of the HTML report (and its screenshot in reports/).

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them): the browser runs with
the flags a closed network needs (no background networking, no component updates) and a fresh
profile. ``missing()`` says why a test cannot run here, or None.

    python tests/browser.py PAGE.html SHOT.png [WIDTH HEIGHT]    # a screenshot of a page, as the README shows it
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def missing() -> str | None:
    """Why no browser test can run here (None when Chromium, its driver and selenium are installed)."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    if _browser() is None or shutil.which(DRIVER) is None:
        return "no headless browser: apt-get install chromium chromium-driver (.ci/run installs them)"
    return None


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A Selenium driver of headless Chromium with a fresh profile, its console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="modbench-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = _browser()
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(shutil.which(DRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The page's console messages of level SEVERE (script errors, failed loads)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(page: Path, out: Path, width: int = 1400, height: int | None = None) -> Path:
    """A screenshot of ``page`` with its last row's details open: ``height`` pixels, or the whole page."""
    from selenium.webdriver.common.by import By

    with chromium(width) as driver:
        driver.get(page.resolve().as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.openable")
        if rows:
            driver.execute_script("arguments[0].click()", rows[-1])  # a script's click scrolls nothing
        height = height or int(driver.execute_script("return document.documentElement.scrollHeight")) + 40
        driver.set_window_size(width, min(height, 6000))
        driver.save_screenshot(str(out))
    return out


if __name__ == "__main__":
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2]), *map(int, sys.argv[3:])))
