"""Reports of the backtests: plain-text tables, ``metrics.json``, CSV files and the figures.

Writing a report computes every file's content first (tables, JSON, figures), then writes the
files one by one, each atomically (:mod:`sb3_crypto.files`). ``metrics.json`` is strict
JSON: undefined numbers (a Sharpe ratio without dispersion, ...) are ``null``. A folder that
already holds a report's files is refused unless ``overwrite=True``.

Trade counts: ``fills`` counts every executed order, ``round_trips`` the closed trades (fills that
realised PnL); the win rate, profit factor and average win / loss are over the round trips.

``report.html`` is the same report as one interactive page (:mod:`sb3_crypto.evaluation.html`): a
summary box, the figures of :mod:`sb3_crypto.evaluation.figures` and the tables. It is written when
plotly (the ``report`` extra) is installed; without it the other files are written as before and the
backtest says which extra to install (:data:`HTML_SKIPPED`). Each page builder returns the
:class:`~sb3_crypto.evaluation.html.HtmlReport` unwritten and takes ``extra_figures`` (title, figure),
so another kind of backtest can reuse a page and add its own figures. The portfolio backtest's page
(:func:`portfolio_page`) is built from the equity-curve page's pieces (summary box, equity and
drawdown, monthly returns, metrics and readiness) plus the weights, turnover, concentration and
per-asset PnL of a portfolio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sb3_crypto import metrics
from sb3_crypto.evaluation import figures
from sb3_crypto.evaluation.html import REPORT_EXTRA, HtmlReport, plotly_available
from sb3_crypto.evaluation.plots import equity_png, session_pngs
from sb3_crypto.files import check_output_dir, claim_output_dir, to_strict_json, write_bytes

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from sb3_crypto.evaluation.rollout import BacktestResult
    from sb3_crypto.evaluation.sessions import SessionRecord

#: The interactive page of a backtest, beside its CSV files and PNGs.
REPORT_HTML = "report.html"
#: The files of :func:`write_results` (equity-curve backtests).
RESULT_FILES = ("metrics.json", "equity.csv", "trades.csv", "equity.png", REPORT_HTML)
#: The files of :func:`write_session_results`.
SESSION_RESULT_FILES = ("metrics.json", "sessions.csv", "trades.csv", "pnl_hist.png", "best_worst.png", REPORT_HTML)
#: The files of :func:`write_dca_results`.
DCA_RESULT_FILES = ("metrics.json", REPORT_HTML)
#: The one line a backtest prints when it cannot write its HTML page.
HTML_SKIPPED = (
    f'{REPORT_HTML} not written: the interactive HTML report needs plotly (pip install "sb3_crypto[{REPORT_EXTRA}]")'
)

#: More figures for a page: (title, plotly figure), added after the page's own.
ExtraFigures = Sequence[tuple[str, "go.Figure"]]


def _meta(meta: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in meta.items()}


def _write_all(out: Path, files: dict[str, bytes], *, overwrite: bool) -> None:
    """Write the prepared ``files`` into ``out`` (each atomically), refusing an occupied folder."""
    claim_output_dir(out, files, overwrite=overwrite)
    for name, data in files.items():
        write_bytes(out / name, data)


def format_table(results: list[BacktestResult]) -> str:
    """A plain-text comparison table (percentages for returns and drawdown)."""
    header = f"{'strategy':<14}{'total ret':>11}{'annual ret':>12}{'sharpe':>9}{'max dd':>9}{'fills':>8}{'fees':>11}"
    lines = [header, "-" * len(header)]
    for result in results:
        s = result.summary()
        lines.append(
            f"{result.name:<14}{100 * s['total_return']:>10.2f}%{100 * s['annual_return']:>11.2f}%"
            f"{s['sharpe']:>9.2f}{100 * s['max_drawdown']:>8.2f}%{int(s['fills']):>8d}{s['fees_paid']:>11.2f}"
        )
    return "\n".join(lines)


def format_session_table(summaries: dict[str, dict[str, float]]) -> str:
    """Plain-text comparison of the session strategies."""
    header = f"{'strategy':<16}{'sessions':>9}{'mean PnL':>11}{'total PnL':>12}{'win rate':>10}{'sharpe/s':>10}"
    lines = [header, "-" * len(header)]
    for name, s in summaries.items():
        lines.append(
            f"{name:<16}{int(s['sessions']):>9d}{s['mean_pnl']:>11.2f}{s['total_pnl']:>12.2f}"
            f"{100 * s['win_rate']:>9.1f}%{s['sharpe_per_session']:>10.3f}"
        )
    return "\n".join(lines)


def trade_log(result: BacktestResult) -> Any:
    """The fills of a run as a DataFrame: time, side, size, fill price, fee, realised PnL."""
    import pandas as pd

    columns = ["time", "bar", "side", "size", "price", "fee", "pnl"]
    frame = pd.DataFrame(result.extra.get("fills", []), columns=columns)
    frame["side"] = frame["side"].map({1: "buy", -1: "sell"})
    return frame.drop(columns="bar")


def _percent(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:+.2f} %"


def _number(value: float, spec: str = ".2f") -> str:
    return "n/a" if value != value else format(value, spec)


def _subtitle(meta: Mapping[str, Any]) -> str:
    parts = [f"{meta['env']}" if "env" in meta else "", f"split {meta['split']!r}" if "split" in meta else ""]
    if "model" in meta:
        parts.append(f"model {Path(str(meta['model'])).name}")
    return ", ".join(part for part in parts if part)


def _settings_table(page: HtmlReport, meta: Mapping[str, Any]) -> None:
    page.heading("Settings")
    page.table([{"setting": key, "value": str(value)} for key, value in meta.items()])


def _add_figures(page: HtmlReport, extra_figures: ExtraFigures) -> None:
    for title, figure in extra_figures:
        page.figure(figure, title=title)


def _summary_verdict(
    page: HtmlReport,
    results: Sequence[BacktestResult],
    summaries: Mapping[str, Mapping[str, float]],
    readiness: Mapping[str, Any] | None,
    benchmark: str,
    benchmark_label: str,
) -> None:
    """The box that leads a page of equity curves: the agent's return against the ``benchmark``
    strategy's (called ``benchmark_label``), its Sharpe ratio, drawdown, fees, the bars covered and
    the readiness count."""
    import pandas as pd

    agent = results[0]
    mine = summaries[agent.name]
    other = summaries.get(benchmark)
    label = f"{agent.name}: {_percent(mine['total_return'])}"
    if other is not None:
        label += f" against {benchmark_label}'s {_percent(other['total_return'])}"
    reasons = [
        f"Sharpe {_number(mine['sharpe'])}"
        + (f" ({benchmark_label} {_number(other['sharpe'])})" if other is not None else "")
        + f", max drawdown {_percent(mine['max_drawdown'])}",
        f"{int(mine['fills'])} fills paid {mine['fees_paid']:.2f} in fees "
        f"({100 * mine['fees_paid'] / agent.equity[0]:.2f} % of the starting equity)",
        f"{len(agent.equity) - 1} bars, {pd.Timestamp(agent.timestamps[0])} .. {pd.Timestamp(agent.timestamps[-1])}",
    ]
    if readiness is not None:
        passed = sum(check["passed"] for check in readiness["criteria"].values())
        reasons.append(
            f"production readiness: {passed} of {len(readiness['criteria'])} criteria passed "
            f"({'ready' if readiness['ready'] else 'not ready'})"
        )
    page.verdict(label, reasons, level="info")


def _equity_section(page: HtmlReport, results: Sequence[BacktestResult]) -> None:
    """Equity of every strategy (log scale when a strong curve would flatten the others) and drawdown."""
    page.heading("Equity")
    page.figure(figures.equity_figure(results), title="Equity against the baselines (start = 1)")
    page.figure(figures.drawdown_figure(results), title="Drawdown from the running peak")


def _monthly_section(page: HtmlReport, agent: BacktestResult) -> None:
    page.heading("Monthly returns")
    page.figure(figures.monthly_returns_figure(agent), title=f"{agent.name}, by calendar month")


def _metrics_section(
    page: HtmlReport, summaries: Mapping[str, Mapping[str, float]], readiness: Mapping[str, Any] | None
) -> None:
    """Every strategy's metrics and, when checked, the agent's production readiness."""
    import pandas as pd

    page.heading("Metrics")
    page.text("Returns, volatility and drawdowns are fractions (0.05 = 5 %), annualised with the bar frequency.")
    page.table(pd.DataFrame(summaries).rename_axis("metric"))
    if readiness is not None:
        page.table(
            [
                {"criterion": name, "value": check["value"], "threshold": check["threshold"], "passed": check["passed"]}
                for name, check in readiness["criteria"].items()
            ],
            title="Production readiness of the agent",
        )


def equity_curve_page(
    results: list[BacktestResult],
    meta: Mapping[str, Any],
    summaries: Mapping[str, Mapping[str, float]] | None = None,
    readiness: Mapping[str, Any] | None = None,
    *,
    extra_figures: ExtraFigures = (),
    title: str = "Backtest",
) -> HtmlReport:
    """The page of an equity-curve backtest: a summary box, equity against the baselines, drawdown,
    the agent's trades on the price, its monthly returns, the metrics table and the readiness check.

    :param results: the agent first, then the baselines (as :func:`compare_with_baselines` returns them).
    :param summaries: each strategy's metrics (default: ``result.summary()``).
    :param readiness: :func:`sb3_crypto.metrics.production_readiness` of the agent, when checked.
    :param extra_figures: more (title, figure) pairs, after the page's own figures.
    """
    summaries = summaries or {r.name: r.summary() for r in results}
    agent = results[0]
    page = HtmlReport(title, subtitle=_subtitle(meta))
    _summary_verdict(page, results, summaries, readiness, benchmark="buy_and_hold", benchmark_label="buy-and-hold")
    page.text(
        "Out-of-sample backtest beside the baselines, under the same fee and slippage. It reports results; it "
        "does not test whether an edge is real (that takes null runs, a power test and the selection count)."
    )
    _equity_section(page, results)
    page.heading("Trades")
    page.figure(figures.trades_figure(agent), title=f"{agent.name}'s fills on the price")
    _monthly_section(page, agent)
    _add_figures(page, extra_figures)
    _metrics_section(page, summaries, readiness)
    _settings_table(page, meta)
    return page


#: The rows of a portfolio page's turnover and concentration table (keys of ``portfolio_summary``).
PORTFOLIO_SHAPE_METRICS = ("turnover", "annual_turnover", "hhi", "effective_assets", "max_weight", "invested")


def portfolio_page(
    results: list[BacktestResult],
    meta: Mapping[str, Any],
    summaries: Mapping[str, Mapping[str, float]],
    asset_pnl: Mapping[str, Mapping[str, float]],
    readiness: Mapping[str, Any] | None = None,
    *,
    baselines: Mapping[str, str] | None = None,
    extra_figures: ExtraFigures = (),
    title: str = "Portfolio backtest",
) -> HtmlReport:
    """The page of a portfolio backtest (:mod:`sb3_crypto.evaluation.portfolio`): the equity-curve
    page's summary box (against ``equal_weight_hold``), equity against every baseline and drawdown,
    then the agent's stacked weights over time (cash included), turnover and concentration per
    strategy, each asset's PnL contribution per strategy (bars and table), the agent's monthly
    returns, the metrics and readiness tables and the settings.

    :param results: the agent first, then the baselines; the agent's ``extra`` holds ``weights``
        (cash first) and ``assets``, as ``run_portfolio_policy`` records them.
    :param summaries: each strategy's ``portfolio_summary``.
    :param asset_pnl: ``asset_pnl[strategy][asset]``: the asset's contribution to the strategy's PnL.
    :param baselines: baseline name -> what it is, shown as a table.
    """
    import pandas as pd

    agent = results[0]
    page = HtmlReport(title, subtitle=_subtitle(meta))
    benchmark, label = "equal_weight_hold", "equal-weight buy-and-hold"
    _summary_verdict(page, results, summaries, readiness, benchmark=benchmark, benchmark_label=label)
    page.text(
        "Out-of-sample backtest beside the baselines, every one run through the env as target weights: the same "
        "fees, slippage, dead band and asset lifetimes. best_asset_hindsight is chosen with hindsight (the split's "
        "last prices) and is not a strategy anyone could have run. The page reports results; it does not test "
        "whether an edge is real."
    )
    if baselines:
        page.table([{"baseline": name, "what it is": text} for name, text in baselines.items()])
    _equity_section(page, results)
    page.heading("Weights")
    names = ["cash", *agent.extra["assets"]]
    page.figure(
        figures.weights_figure(agent.timestamps, agent.extra["weights"], names),
        title=f"{agent.name}'s weights over time (long side, cash first)",
    )
    page.heading("Turnover and concentration")
    page.text(
        "Turnover: traded value / equity per bar (annualised: times the bars per year). Concentration over the "
        "weights held after every step: HHI (the sum of squared asset weights) and the effective number of "
        "assets (1 / HHI)."
    )
    page.figure(
        figures.bar_figure({name: s["annual_turnover"] for name, s in summaries.items()}, yaxis="annual turnover"),
        title="Annual turnover per strategy",
    )
    page.figure(
        figures.bar_figure({name: s["effective_assets"] for name, s in summaries.items()}, yaxis="effective assets"),
        title="Effective number of assets per strategy (mean of 1 / HHI)",
    )
    shape = {name: {key: s.get(key, float("nan")) for key in PORTFOLIO_SHAPE_METRICS} for name, s in summaries.items()}
    page.table(pd.DataFrame(shape).rename_axis("metric"), title="Turnover and concentration")
    page.heading("PnL contribution per asset")
    page.text("Each asset's contribution to the strategy's PnL over the split (in the quote currency, fees included).")
    page.figure(
        figures.grouped_bar_figure(asset_pnl, yaxis="PnL contribution (quote)", xaxis="asset"),
        title="PnL contribution per asset",
    )
    page.table(pd.DataFrame(asset_pnl).rename_axis("asset"), title="PnL contribution per asset (quote)")
    _monthly_section(page, agent)
    _add_figures(page, extra_figures)
    _metrics_section(page, summaries, readiness)
    _settings_table(page, meta)
    return page


def write_results(
    results: list[BacktestResult],
    out: Path,
    meta: Mapping[str, Any],
    readiness_criteria: Mapping[str, tuple[str, float]] | None = None,
    *,
    overwrite: bool = False,
    html: bool | None = None,
    extra_figures: ExtraFigures = (),
) -> None:
    """Write ``metrics.json`` (every strategy, the readiness check of the agent), ``equity.csv``,
    ``trades.csv`` (the agent's fills), ``equity.png`` and ``report.html`` into ``out``; refuse
    (``OutputExistsError``) when ``out`` holds any of them already, unless ``overwrite``.

    :param html: write ``report.html`` (default: when plotly is installed; see :data:`HTML_SKIPPED`).
    :param extra_figures: more (title, plotly figure) pairs for the page (see :func:`equity_curve_page`).
    """
    import pandas as pd

    check_output_dir(out, RESULT_FILES, overwrite=overwrite)  # before the work, not after it
    summaries = {r.name: r.summary() for r in results}
    benchmark = next((r for r in results if r.name == "buy_and_hold"), None)
    if benchmark is not None:
        alpha, beta = metrics.alpha_beta(results[0].returns, benchmark.returns, results[0].periods_per_year)
        summaries[results[0].name].update(alpha=alpha, beta=beta)
    payload = {
        "meta": _meta(meta),
        "results": summaries,
        "production_readiness": metrics.production_readiness(summaries[results[0].name], readiness_criteria),
    }
    curves = pd.DataFrame({r.name: r.equity for r in results}, index=pd.Index(results[0].timestamps, name="timestamp"))
    files = {
        "metrics.json": (to_strict_json(payload, default=float) + "\n").encode(),
        "equity.csv": curves.to_csv().encode(),
        "trades.csv": trade_log(results[0]).to_csv(index=False).encode(),
        "equity.png": equity_png(results),
    }
    if plotly_available() if html is None else html:
        page = equity_curve_page(results, meta, summaries, payload["production_readiness"], extra_figures=extra_figures)
        files[REPORT_HTML] = page.render().encode()
    _write_all(Path(out), files, overwrite=overwrite)


def session_page(
    records: Mapping[str, list[SessionRecord]],
    summaries: Mapping[str, Mapping[str, float]],
    meta: Mapping[str, Any],
    *,
    extra_figures: ExtraFigures = (),
    title: str = "Session backtest",
) -> HtmlReport:
    """The page of a session backtest: a summary box, cumulative PnL over the sessions and the
    distribution of PnL per session of every strategy, and the summary table."""
    import pandas as pd

    mine = summaries["agent"]
    best = max((name for name in summaries if name != "agent"), key=lambda n: summaries[n]["total_pnl"], default=None)
    label = f"agent: total PnL {mine['total_pnl']:.2f} over {int(mine['sessions'])} sessions"
    reasons = [f"win rate {_number(100 * mine['win_rate'], '.1f')} %, mean PnL {mine['mean_pnl']:.2f} per session"]
    if best is not None:
        reasons.append(f"best baseline: {best}, total PnL {summaries[best]['total_pnl']:.2f}")
    page = HtmlReport(title, subtitle=_subtitle(meta))
    page.verdict(label, reasons, level="info")
    page.text("Every session of the split once, for every strategy, under the same fee and slippage.")
    page.heading("PnL")
    page.figure(figures.session_pnl_figure(records), title="Cumulative PnL over the sessions")
    page.figure(figures.session_histogram_figure(records), title="PnL per session")
    _add_figures(page, extra_figures)
    page.heading("Metrics")
    page.table(pd.DataFrame(summaries).rename_axis("metric"))
    _settings_table(page, meta)
    return page


def write_session_results(
    records: dict[str, list[SessionRecord]],
    summaries: dict[str, dict[str, float]],
    out: Path,
    meta: Mapping[str, Any],
    *,
    overwrite: bool = False,
    html: bool | None = None,
    extra_figures: ExtraFigures = (),
) -> None:
    """``metrics.json``, ``sessions.csv`` (PnL of every strategy per session), ``trades.csv`` (the
    agent's fills), the plots and ``report.html`` (when plotly is installed, or as ``html`` says);
    refuses an ``out`` that holds any of them, unless ``overwrite``."""
    import pandas as pd

    check_output_dir(out, SESSION_RESULT_FILES, overwrite=overwrite)
    agent = records["agent"]
    table = pd.DataFrame({name: [r.pnl for r in recs] for name, recs in records.items()})
    table.insert(0, "ticker", [r.key[0] for r in agent])
    table.insert(1, "signal_time", [r.key[1] for r in agent])
    rows = [
        (
            r.key[0],
            r.key[1],
            fill.bar,
            "buy" if fill.side > 0 else "sell",
            fill.units,
            fill.price,
            fill.fee,
            fill.realized_pnl,
        )
        for r in agent
        for fill in r.fills
    ]
    columns = ["ticker", "signal_time", "bar", "side", "size", "price", "fee", "pnl"]
    files = {
        "metrics.json": (to_strict_json({"meta": _meta(meta), "results": summaries}, default=float) + "\n").encode(),
        "sessions.csv": table.to_csv(index=False).encode(),
        "trades.csv": pd.DataFrame(rows, columns=columns).to_csv(index=False).encode(),
        **session_pngs(agent),
    }
    if plotly_available() if html is None else html:
        files[REPORT_HTML] = session_page(records, summaries, meta, extra_figures=extra_figures).render().encode()
    _write_all(Path(out), files, overwrite=overwrite)


def dca_page(
    savings: Mapping[str, float],
    meta: Mapping[str, Any],
    *,
    extra_figures: ExtraFigures = (),
    title: str = "DCA backtest",
) -> HtmlReport:
    """The page of a DCA backtest: the mean saving per cycle of the agent and the baselines."""
    page = HtmlReport(title, subtitle=_subtitle(meta))
    best = max((name for name in savings if name != "agent"), key=lambda n: savings[n], default=None)
    reasons = [f"best baseline: {best}, {_percent(savings[best])}"] if best is not None else []
    page.verdict(f"agent: {_percent(savings['agent'])} per cycle against the cycle's average price", reasons)
    page.text("Mean saving per cycle against buying at the cycle's average price (0 by definition), every cycle once.")
    page.figure(figures.bar_figure(savings, yaxis="mean saving per cycle", percent=True), title="Saving per cycle")
    _add_figures(page, extra_figures)
    page.table([{"strategy": name, "saving per cycle": value} for name, value in savings.items()], title="Metrics")
    _settings_table(page, meta)
    return page


def write_dca_results(
    results: Mapping[str, float],
    out: Path,
    meta: Mapping[str, Any],
    *,
    reward_scale: float = 1.0,
    overwrite: bool = False,
    html: bool | None = None,
) -> None:
    """``metrics.json`` (mean reward per cycle of every strategy) and ``report.html`` (when plotly
    is installed, or as ``html`` says); refuses an ``out`` that holds them, unless ``overwrite``."""
    files = {"metrics.json": (to_strict_json({"meta": _meta(meta), "results": dict(results)}) + "\n").encode()}
    if plotly_available() if html is None else html:
        savings = {name: value / reward_scale for name, value in results.items()}
        files[REPORT_HTML] = dca_page(savings, meta).render().encode()
    _write_all(Path(out), files, overwrite=overwrite)
