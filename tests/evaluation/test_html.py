"""The HTML report page: escaping of every user text, tables, figures embedded offline, and writes
that are atomic and never replace a page silently."""

from __future__ import annotations

import math
import os
import re
import sys

import numpy as np
import pandas as pd
import pytest

from sb3_crypto.evaluation.html import HtmlReport
from sb3_crypto.files import OutputExistsError

EVIL = '<script>alert("x")</script> & <b>bold</b>'


def _body(page: str) -> str:
    """The page without its embedded plotly.js (which holds ``<`` of its own)."""
    return re.sub(r"<script type=\"text/javascript\">.*?</script>", "", page, count=1, flags=re.S)


def test_every_user_text_is_escaped():
    report = HtmlReport(EVIL, subtitle=EVIL)
    report.verdict(EVIL, [EVIL, "second reason"], level="bad")
    report.heading(EVIL)
    report.text(EVIL)
    report.table(pd.DataFrame({EVIL: [EVIL, "ok"]}, index=pd.Index([EVIL, "b"], name=EVIL)), title=EVIL)
    page = report.render()
    assert "<script>" not in page and "<b>" not in page  # no script or markup of the caller's made it in raw
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"
    # title (twice: <title> and <h1>), subtitle, verdict label, reason, heading, text, table title,
    # column name, index name, index label, cell
    assert page.count(escaped) == 12


def test_verdict_leads_the_page_and_checks_its_level():
    report = HtmlReport("t")
    report.heading("Later section")
    report.verdict("no evidence of edge", ["p = 0.41 over 20 null runs"], level="warn")
    page = report.render()
    assert page.index("verdict-warn") < page.index("Later section")
    assert "<li>p = 0.41 over 20 null runs</li>" in page
    with pytest.raises(ValueError, match="one verdict"):
        report.verdict("edge", [], level="good")
    with pytest.raises(ValueError, match="level must be one of good, bad, warn, info, got 'great'"):
        HtmlReport("t").verdict("edge", [], level="great")


def test_text_keeps_paragraphs_and_lines():
    report = HtmlReport("t")
    report.text("first line\nsecond line\n\n  \nnext paragraph")
    assert "<p>first line<br>second line</p><p>next paragraph</p>" in report.render()


def test_table_formats_floats_and_keeps_integers_text_and_missing_values():
    report = HtmlReport("t")
    records = [
        {"strategy": "agent", "sharpe": 1.234567, "trades": 12, "note": None},
        {"strategy": "buy_and_hold", "sharpe": np.float32(-0.5), "trades": np.int64(1), "extra": math.nan},
    ]
    report.table(records, float_format="{:.2f}")
    table = re.search(r"<table.*?</table>", report.render(), flags=re.S).group(0)
    headers = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table)
    assert headers == ["strategy", "sharpe", "trades", "note", "extra"]  # default index not shown
    body = re.search(r"<tbody>.*?</tbody>", table).group(0)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>")]
    assert rows[0] == ["agent", "1.23", "12", "&ndash;", "&ndash;"]
    assert rows[1] == ["buy_and_hold", "-0.50", "1", "&ndash;", "&ndash;"]
    assert '<td class="text">agent</td>' in table  # text left-aligned, numbers right-aligned
    assert "<td>1.23</td>" in table


def test_table_shows_a_named_index():
    frame = pd.DataFrame({"sharpe": [1.5]}, index=pd.Index(["agent"], name="strategy"))
    report = HtmlReport("t")
    report.table(frame)
    page = report.render()
    assert '<th class="text">strategy</th><th>sharpe</th>' in page
    assert '<th class="text">agent</th><td>1.5</td>' in page


def test_table_rejects_bad_input_naming_the_problem():
    report = HtmlReport("t")
    with pytest.raises(TypeError, match="table row 1 is a list, expected a mapping"):
        report.table([{"a": 1}, [2]])
    with pytest.raises(TypeError, match="DataFrame or a sequence of mappings, got str"):
        report.table("a,b")
    with pytest.raises(ValueError, match=re.escape("float_format '{:.2q}' cannot format a float")):
        report.table([{"a": 1.0}], float_format="{:.2q}")


def test_figures_embed_plotly_once_and_nothing_from_the_network():
    go = pytest.importorskip("plotly.graph_objects", reason="the report extra (plotly) is part of dev")
    report = HtmlReport("t")
    for name in ("first", EVIL):
        report.figure(go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name=name)), title=name)
    page = report.render()
    assert report.n_figures == 2
    assert page.count('class="plotly-graph-div"') == 2
    assert page.count("plotly.js v") == 1  # the library's banner: embedded once
    assert re.search(r"<script[^>]*\bsrc=", page) is None  # no script loaded from anywhere
    assert re.search(r"<link\b", page) is None  # no stylesheet or font loaded from anywhere
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    body = _body(page)
    assert "<script>alert" not in body  # the trace name is escaped inside the figure's JSON too
    assert "&lt;script&gt;alert" in body  # ... and escaped in the figure's title


def test_a_page_without_figures_needs_no_plotly():
    report = HtmlReport("t")
    report.table([{"a": 1}])
    page = report.render()
    assert "plotly.js" not in page and report.n_figures == 0


def test_write_is_atomic_and_refuses_to_replace_silently(tmp_path):
    path = tmp_path / "out" / "report.html"
    first = HtmlReport("first")
    assert first.write(path) == path
    assert "<title>first</title>" in path.read_text(encoding="utf-8")
    second = HtmlReport("second")
    with pytest.raises(OutputExistsError, match=r"report.html.*overwrite=True"):
        second.write(path)
    assert "<title>first</title>" in path.read_text(encoding="utf-8")  # untouched
    second.write(path, overwrite=True)
    assert "<title>second</title>" in path.read_text(encoding="utf-8")
    assert os.listdir(path.parent) == ["report.html"]  # no temporary file left behind


def test_a_failed_render_leaves_the_old_page(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    HtmlReport("old").write(path)
    report = HtmlReport("new")

    def broken() -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(RuntimeError, match="render failed"):
        report.write(path, overwrite=True)
    assert "<title>old</title>" in path.read_text(encoding="utf-8")
    assert os.listdir(tmp_path) == ["report.html"]


# The backtest's page --------------------------------------------------------------------------------

# Hourly closes: 100 through January, 110 through February, 121 for the first ten days of March.
MONTHLY_CLOSES = [100.0] * (31 * 24) + [110.0] * (28 * 24) + [121.0] * (10 * 24)


def _buy_and_hold_results():
    import helpers

    from sb3_crypto.evaluation.baselines import compare_with_baselines

    def make():
        return helpers.hand_env(MONTHLY_CLOSES)

    return compare_with_baselines(lambda obs: np.array([1.0], np.float32), make, random_seeds=(0,))


def test_monthly_returns_by_hand():
    from sb3_crypto.evaluation.figures import monthly_returns

    agent = _buy_and_hold_results()[0]  # all in from the first decision, no costs: equity follows the close
    table = monthly_returns(agent)
    assert list(table.index) == [2022] and list(table.columns[:3]) == ["Jan", "Feb", "Mar"]
    np.testing.assert_allclose(table.loc[2022, ["Jan", "Feb", "Mar"]].to_numpy(float), [0.0, 0.1, 0.1], atol=1e-12)
    assert table.loc[2022, "Apr":].isna().all()  # months the backtest did not cover stay empty


def test_equity_curve_page_has_its_figures_the_extra_ones_and_the_tables():
    go = pytest.importorskip("plotly.graph_objects", reason="the report extra (plotly) is part of dev")
    from sb3_crypto.evaluation.figures import trades_figure
    from sb3_crypto.evaluation.reports import equity_curve_page

    results = _buy_and_hold_results()
    trades = trades_figure(results[0])
    assert [trace.name for trace in trades.data] == ["close", "buy (1)", "sell (0)", "exposure"]
    assert list(trades.data[1].y) == [100.0]  # bought once, at the open of the next bar
    extra = [("Weights", go.Figure(go.Scatter(y=[0.5, 0.5]))), ("Turnover", go.Figure(go.Bar(y=[0.1])))]
    page = equity_curve_page(results, {"env": "CryptoTrading-v0", "split": "all"}, extra_figures=extra)
    html = page.render()
    assert page.n_figures == 6
    assert html.index("Monthly returns") < html.index("<h3>Weights</h3>") < html.index("<h3>Turnover</h3>")
    assert "agent: +21.00 % against buy-and-hold&#x27;s +21.00 %" in html  # 100 -> 121, no costs
    assert "<th>buy_and_hold</th>" in html and "<th>random</th>" in html


def test_backtest_without_plotly_writes_the_rest_and_names_the_extra(tmp_path, monkeypatch):
    import helpers

    from sb3_crypto.evaluation.backtest import backtest
    from sb3_crypto.evaluation.reports import HTML_SKIPPED

    for name in ("plotly", "plotly.io", "plotly.graph_objects"):
        monkeypatch.setitem(sys.modules, name, None)  # import plotly... raises ImportError
    lines = []
    settings = {"data": helpers.bars(MONTHLY_CLOSES[:200]), "window_size": 4, "norm_warmup": 4}
    settings["split_fractions"] = (1.0, 0.0, 0.0)
    backtest(
        lambda obs: np.array([1.0], np.float32),
        "CryptoTrading-v0",
        settings,
        split="all",
        out=tmp_path,
        echo=lines.append,
    )
    assert (
        lines[-1]
        == HTML_SKIPPED
        == ('report.html not written: the interactive HTML report needs plotly (pip install "sb3_crypto[report]")')
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["equity.csv", "equity.png", "metrics.json", "trades.csv"]
    with pytest.raises(ImportError, match=r'pip install "sb3_crypto\[report\]"'):
        HtmlReport("t").figure(object())


def test_dca_backtest_writes_its_page_beside_metrics_json(tmp_path):
    import json

    from sb3_crypto.envs.dca import BUY
    from sb3_crypto.evaluation.backtest import backtest

    results = backtest(lambda obs: BUY, "CryptoDCA-v0", {"cycle_length": 5, "window_size": 5}, out=tmp_path)
    assert results["agent"] == results["first_day"]  # always buying at once is the first-day baseline
    assert json.loads((tmp_path / "metrics.json").read_text())["results"] == results
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count('class="plotly-graph-div"') == 1
    assert f"agent: {100 * results['agent']:+.2f} % per cycle" in page
