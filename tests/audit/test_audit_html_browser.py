"""``audit.html`` in a real headless Chromium: the verdict leads the page with its reasons, every
figure is drawn with data, nothing is fetched and the console stays free of errors.

The report is constructed from the audit's own functions on made-up numbers (no training), so the
test takes a few seconds. The browser comes from the Debian packages ``chromium`` and
``chromium-driver`` (``scripts/install_browser.sh``); as in ``tests/evaluation/test_html_browser.py``
a machine without them skips this test, saying so, and under CI (``CI`` set) their absence fails it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from browser import PLOTS_STATE

from sb3_crypto.audit.core import decide, figures, null_part, power_part
from sb3_crypto.audit.report import render
from sb3_crypto.audit.stats import pbo_cscv, seed_summary


def constructed_report() -> dict:
    """An audit of made-up results with every part, built by the audit's own functions."""
    rng = np.random.default_rng(0)
    null = null_part(2.5, [{"sharpe": s, "market_kind": k} for s, k in zip(rng.normal(0, 1, 19), "ab" * 10)], 0.05)
    null["kinds"] = ["sign", "synthetic"]
    power = power_part([{"sharpe": 4.0}, {"sharpe": 3.0}, {"sharpe": 0.5}], null["sharpes"], 0.05)
    power.update(momentum=0.5, trend_rule_sharpe=18.0)
    sweep = [
        {"multiple": m, "total_return": 0.3 - 0.2 * m, "sharpe": 2.5 - m, "fills": 120, "fees_share_of_capital": 0.01}
        for m in (0.0, 0.5, 1.0, 2.0)
    ]
    for row in sweep:
        row.update(turnover=40.0, mean_holding_bars=12.0)
    costs = {"findings": ["the gain survives up to 1.50x the run's costs"], "sweep": sweep, "pnl_after_costs": 0.1}
    costs.update(pnl_before_costs=0.3, break_even_multiple=1.5, break_even_fee=0.00075, fills=120, turnover=40.0)
    trials = rng.normal(0.0005, 0.01, size=(400, 6))
    selection = {"study": "tuning", "n_trials": 7, "n_complete": 6, "deflated_sharpe": 0.97, "notes": []}
    selection.update(trial_sharpe_variance=0.001, pbo=pbo_cscv(trials), sharpe_source="validation returns")
    per_seed = [rng.normal(0.001, 0.01, 300) for _ in range(5)]
    seeds = {"n_seeds": 5, "n_failed": 0, "errors": [], "seeds": list(range(5))}
    seeds["sharpe"] = seed_summary(per_seed, metric="sharpe")
    seeds["total_return"] = seed_summary(per_seed, metric="total_return")
    leak = {"leak": False, "checks": [{"check": "features", "passed": True, "detail": "agrees"}], "warnings": []}
    parts = {"notes": [], "leak": leak, "null": null, "power": power, "costs": costs}
    parts.update(selection=selection, seeds=seeds, agent={"sharpe": 2.5, "total_return": 0.1})
    verdict, reasons = decide(parts)
    return {
        "schema": 1,
        "verdict": verdict,
        "verdict_text": verdict.replace("_", " "),
        "reasons": reasons,
        "figures": figures(parts),
        "created": "2026-11-29T12:00:00+00:00",
        "model": "logs/ppo/CryptoTrading-v0_1/CryptoTrading-v0.zip",
        "algo": "ppo",
        "env_id": "CryptoTrading-v0",
        "steps": 512,
        "alpha": 0.05,
        "agent_returns": per_seed[0].tolist(),
        "parts": parts,
    }


def test_audit_page_leads_with_its_verdict_and_draws_every_figure(tmp_path: Path, chromium) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    report = constructed_report()
    page = tmp_path / "audit.html"
    page.write_text(render(report), encoding="utf-8")
    n_figures = 6  # equity, null distribution, power runs, cost sweep, CSCV logits, seeds
    chromium.get(page.as_uri())
    state = WebDriverWait(chromium, 15).until(
        lambda driver: (s := driver.execute_script(PLOTS_STATE))["plots"] == n_figures and s
    )
    assert all(plot["svg"] and plot["data"] > 0 for plot in state["drawn"]), state["drawn"]
    assert state["resources"] == []  # self-contained: opens offline
    # the verdict leads the page, with every reason
    assert state["first"].startswith("verdict")
    assert chromium.find_element("css selector", ".verdict .label").text == report["verdict_text"]
    shown = [item.text for item in chromium.find_elements("css selector", ".verdict li")]
    assert shown == report["reasons"] and len(shown) >= 2
    body = chromium.find_element("tag name", "body").text
    for heading in ("1. Leak check", "2. Null test", "3. Power test", "4. Costs", "5. Selection bias", "6. Seeds"):
        assert heading in body
    assert "the smallest 19 runs can give is 0.050" in body  # the p-value comes with its run count
    assert "PBO (CSCV)" in body and "deflated Sharpe ratio" in body
    errors = [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
