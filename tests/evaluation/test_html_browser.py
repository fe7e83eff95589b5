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

from pathlib import Path

import numpy as np
from browser import PLOTS_STATE

from sb3_crypto.evaluation.backtest import backtest


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
