"""The backtest's HTML page in a real headless Chromium: every figure is drawn, nothing is fetched, and
the console stays free of errors.

Chromium is driven through Selenium and Debian's ``chromedriver``: WebDriver waits for the figures
to be drawn and reads the browser's console log directly, where ``--dump-dom`` would snapshot the
page at an arbitrary moment and leave the console to be parsed out of Chromium's own stderr chatter.
The browser comes from the Debian packages ``chromium`` and ``chromium-driver``
(``scripts/install_browser.sh``). Outside CI a machine without them skips this test, saying so;
under CI (``CI`` set) their absence fails it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sb3_crypto.evaluation.backtest import backtest

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
};
"""


def _missing(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} under CI; {INSTALL}")
    pytest.skip(f"{reason}; {INSTALL}")


@pytest.fixture
def chromium(tmp_path: Path):
    """A headless Chromium (Selenium WebDriver) with a fresh profile, quit after the test."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _missing("chromium or chromedriver is not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium (the dev extra) is not installed")
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


def check_page(chromium, page: Path, n_figures: int) -> None:
    """Open ``page``: its ``n_figures`` plotly figures are drawn with data, nothing is fetched, and the
    console shows no error."""
    from selenium.webdriver.support.ui import WebDriverWait

    assert page.read_text(encoding="utf-8").count('class="plotly-graph-div"') == n_figures
    chromium.get(page.as_uri())
    state = WebDriverWait(chromium, 15).until(
        lambda driver: (s := driver.execute_script(PLOTS_STATE))["plots"] == n_figures and s
    )
    assert [plot["id"] for plot in state["drawn"]] == [f"figure-{k}" for k in range(1, n_figures + 1)]
    for plot in state["drawn"]:
        assert plot["svg"], f"{page.name}: {plot['id']} has no drawn SVG"
        assert plot["data"] > 0, f"{page.name}: {plot['id']} shows no data"
    assert state["resources"] == []  # nothing fetched: the page is self-contained
    assert chromium.find_element("css selector", ".verdict .label").text.startswith("agent: ")
    errors = [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], page.name


def test_backtest_pages_draw_every_figure_without_console_errors(tmp_path: Path, trained, chromium) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from sb3_crypto.envs.dca import BUY

    model, env_id = trained("sac_gsde")
    out = tmp_path / "backtest"
    backtest(model, env_id, {"window_size": 16}, out=out, echo=lambda line: None)
    assert (out / "equity.png").is_file()  # the page beside the PNGs
    check_page(chromium, out / "report.html", 4)  # equity, drawdown, trades on the price, monthly returns
    # The console is really read: an error the page logs now shows up.
    chromium.execute_script("console.error('probe from the test')")
    assert any("probe from the test" in entry["message"] for entry in chromium.get_log("browser"))

    # The DCA page too (the session page is built by the same code; its backtest trains a classifier).
    dca = {"cycle_length": 5, "window_size": 5}
    backtest(lambda obs: BUY, "CryptoDCA-v0", dca, out=tmp_path / "dca", echo=lambda line: None)
    check_page(chromium, tmp_path / "dca" / "report.html", 1)  # saving per cycle

    # The portfolio page, from a fixed-weights policy (the page builder does not care who chose them).
    portfolio = {"synthetic_kwargs": {"n_assets": 3, "n_bars": 300, "seed": 2}, "window_size": 6}
    fixed = np.array([0.0, 1.0, 0.5, -0.5], dtype=np.float32)
    backtest(lambda obs: fixed, "CryptoPortfolio-v0", portfolio, out=tmp_path / "portfolio", echo=lambda line: None)
    # equity, drawdown, stacked weights, turnover, concentration, PnL per asset, monthly returns
    check_page(chromium, tmp_path / "portfolio" / "report.html", 7)
    # The equity figure's scale buttons work: "log" turns its y axis to a log axis.
    assert chromium.execute_script("return document.getElementById('figure-1').layout.yaxis.type") == "linear"
    buttons = chromium.find_elements("css selector", "#figure-1 .updatemenu-button")
    assert [button.text for button in buttons] == ["linear", "log"]
    buttons[1].click()
    WebDriverWait(chromium, 5).until(
        lambda driver: driver.execute_script("return document.getElementById('figure-1').layout.yaxis.type") == "log"
    )
    assert [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"] == []
