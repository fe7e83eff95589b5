"""Headless Chromium for the tests of the HTML pages (backtest reports, the audit): Selenium with
Debian's ``chromedriver`` (packages ``chromium`` and ``chromium-driver``, ``scripts/install_browser.sh``).

The ``chromium`` fixture (registered in ``conftest.py``) gives a WebDriver with a fresh profile and the
browser's console log. Outside CI a machine without the browser skips the test, saying so; under CI
(``CI`` set) their absence fails it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
INSTALL = "install them with scripts/install_browser.sh (Debian packages chromium and chromium-driver)"

#: Chromium on a machine whose network is closed: no first-run, sync, component or background traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)

#: Per figure: drawn (a plotly SVG with a size) and holding drawn data (scatter traces, bars, heatmap images).
PLOTS_STATE = """
const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
return {
  plots: plots.length,
  drawn: plots.map(p => {
    const svg = p.querySelector('svg.main-svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {
      id: p.id,
      svg: box.width > 100 && box.height > 100,
      data: p.querySelectorAll('g.trace path, g.trace image, g.hm image, g.point path').length,
    };
  }),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  first: document.querySelector('main, body').querySelector('section, h2, table').className,
};
"""


def missing(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} under CI; {INSTALL}")
    pytest.skip(f"{reason}; {INSTALL}")


@pytest.fixture
def chromium(tmp_path: Path):
    """A headless Chromium (Selenium WebDriver) with a fresh profile, quit after the test."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        missing("chromium or chromedriver is not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium (the dev extra) is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: Selenium Manager (which would look for drivers on the network) is not used.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
