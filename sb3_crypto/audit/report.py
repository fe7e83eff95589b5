"""``audit.html``: the audit as one self-contained page (:class:`~sb3_crypto.evaluation.html.HtmlReport`).

The verdict and its reasons lead the page; then the headline figures, and one section per part with
its table and an interactive plot: the null distribution with the agent's Sharpe ratio, the power
runs against the bar they had to clear, PnL against the cost multiple, the trials' CSCV logits, the
seeds with their IQM and confidence interval, and the agent's test-split equity. Without plotly
(the ``report`` extra) the page has the tables and says what to install for the plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sb3_crypto.evaluation.html import REPORT_EXTRA, HtmlReport, plotly_available

#: The colour of the verdict box for each verdict.
LEVELS = {"edge": "good", "leak_found": "bad", "no_evidence": "warn", "untestable": "info"}
#: Below this many null runs the null plot shows each run as a point rather than a histogram.
NULL_HISTOGRAM_RUNS = 30
#: What each verdict means, shown under the reasons.
MEANINGS = {
    "edge": "The agent's test-split result stands out from markets without an edge, survives its costs and "
    "every check that was run.",
    "no_evidence": "Nothing here shows an edge: the result is what chance, costs, the search or the seed explain.",
    "leak_found": "A feature or an observation reads the future: every other number of this run is void.",
    "untestable": "The audit cannot tell: the configuration could not find even a planted edge, or no null "
    "run finished, or the env has no equity curve to test.",
}


#: What each of ``audit.json``'s figures is, shown beside it ("-": the part did not run).
FIGURE_MEANINGS = {
    "test_sharpe": "annualised Sharpe ratio of the agent on the test split, at the run's costs (0 if it never trades)",
    "test_total_return": "total return of the agent on the test split, at the run's costs",
    "null_p_value": "share of no-edge markets doing at least as well: (1 + #{null >= agent}) / (1 + null runs)",
    "n_null_runs": "null runs that finished (19 are needed before p can reach 0.05)",
    "null_median_sharpe": "median test-split Sharpe ratio of the null runs",
    "power_recovered": "1 if more than half the power runs found the planted edge, else 0",
    "power_median_sharpe": "median test-split Sharpe ratio of the power runs (lower middle one of an even count)",
    "pnl_before_costs": "total return on the test split with fees and slippage set to 0",
    "pnl_after_costs": "total return on the test split at the run's costs",
    "break_even_cost_multiple": "multiple of the run's costs where the return reaches 0 (0: no gain without costs)",
    "break_even_fee": "the fee at the break-even multiple",
    "turnover": "traded notional over mean equity, at the run's costs",
    "mean_holding_bars": "mean bars a position of one sign is held",
    "fees_share_of_capital": "fees paid as a share of the starting capital",
    "fills": "trades on the test split",
    "deflated_sharpe": "probability that the true Sharpe ratio beats the best that as many trials of noise would show "
    "(needs --study)",
    "pbo": "probability of backtest overfitting of the study's selection, by CSCV (needs --study)",
    "n_trials": "trials of the study, pruned ones included",
    "seed_iqm": "interquartile mean over seeds of the test-split Sharpe ratio",
    "seed_iqm_ci_low": "lower end of its 95 % bootstrap interval",
    "seed_iqm_ci_high": "upper end of its 95 % bootstrap interval",
    "seed_total_return_iqm": "interquartile mean over seeds of the test-split total return",
    "n_seeds": "seeds the interquartile mean is over",
}


def _figure_rows(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"figure": name, "value": value, "meaning": FIGURE_MEANINGS.get(name, "")} for name, value in figures.items()
    ]


def render(report: Mapping[str, Any]) -> str:
    """The page for an audit (the dict written to ``audit.json``)."""
    plots = plotly_available()
    verdict = report["verdict"]
    page = HtmlReport(
        f"Audit: {report.get('algo', '?')} on {report.get('env_id', '?')}",
        subtitle=f"{report['model']} - audited {report['created']} - {report.get('steps', '?')} training steps",
    )
    page.verdict(report.get("verdict_text", verdict), list(report["reasons"]), level=LEVELS.get(verdict, "info"))
    page.text(MEANINGS.get(verdict, ""))
    if not plots:
        page.text(f'The plots need plotly: pip install "sb3_crypto[{REPORT_EXTRA}]", then audit again.')
    parts = report.get("parts", {})
    page.heading("Figures")
    page.table(_figure_rows(report.get("figures", {})))
    for note in parts.get("notes", []):
        page.text(note)
    if report.get("agent_returns") and plots:
        page.figure(_equity(report["agent_returns"]), title="The agent on the test split (at the run's costs)")
    if "leak" in parts:
        page.heading("1. Leak check")
        page.table([dict(check) for check in parts["leak"].get("checks", [])])
        for warning in parts["leak"].get("warnings", []):
            page.text(f"Warning: {warning}")
    if "null" in parts:
        null = parts["null"]
        page.heading("2. Null test")
        page.text(
            f"The run's configuration trained with the same budget on {null['n_runs']} markets without an edge "
            f"({', '.join(null.get('kinds', []))}, in turn). The agent's test-split Sharpe ratio "
            f"{null['observed_sharpe']:.3f} has p = {_number(null.get('p_value'))} against them (the smallest "
            f"{null['n_runs']} runs can give is {null['smallest_p_value']:.3f}; 19 are needed for 0.05); "
            f"{null.get('n_failed', 0)} runs failed."
        )
        if plots and null.get("sharpes"):
            page.figure(_null_plot(null), title="Null distribution of test-split Sharpe ratios")
        rows = [{"market": kind, "runs": len(v), "median Sharpe": _median(v)} for kind, v in null["by_kind"].items()]
        page.table(rows, title="By null market")
    if "power" in parts:
        power = parts["power"]
        page.heading("3. Power test")
        page.text(
            f"The configuration on a synthetic market with a planted trend (momentum {power.get('momentum')}); a "
            f"simple trend rule makes a Sharpe ratio of {_number(power.get('trend_rule_sharpe'))} on it before costs. "
            f"Recovered: {'yes' if power['recovered'] else 'no'} ({power.get('beating_bar', '?')} of "
            f"{power['n_runs']} runs above the bar {_number(power['bar'])}, the null runs' "
            f"{1 - report.get('alpha', 0.05):.0%} quantile or 0 if higher; median Sharpe "
            f"{_number(power['median_sharpe'])}; more than half must clear it)."
        )
        if plots and power.get("sharpes"):
            page.figure(_points(power["sharpes"], power["bar"], "power run", "bar to clear"), title="Power runs")
    if "costs" in parts:
        costs = parts["costs"]
        page.heading("4. Costs")
        for finding in costs.get("findings", []):
            page.text(finding)
        if plots:
            page.figure(_cost_plot(costs["sweep"]), title="Test-split PnL against the multiple of the run's costs")
        columns = ("multiple", "total_return", "sharpe", "fills", "fees_share_of_capital", "turnover")
        page.table([{k: row.get(k) for k in (*columns, "mean_holding_bars")} for row in costs["sweep"]], title="Sweep")
    if "selection" in parts:
        selection = parts["selection"]
        page.heading("5. Selection bias")
        pbo = selection.get("pbo") or {}
        page.table(
            [
                {"study": selection["study"], "trials": selection["n_trials"], "complete": selection["n_complete"]},
            ]
        )
        page.table(
            [
                {"measure": "deflated Sharpe ratio", "value": selection.get("deflated_sharpe")},
                {
                    "measure": "variance of trial Sharpe ratios (per bar)",
                    "value": selection.get("trial_sharpe_variance"),
                },
                {"measure": "PBO (CSCV)", "value": pbo.get("pbo")},
                {"measure": "CSCV combinations", "value": pbo.get("n_combinations")},
            ]
        )
        page.text(f"Trial Sharpe ratios: {selection['sharpe_source']}.")
        for note in selection.get("notes", []):
            page.text(note)
        if plots and pbo.get("logits"):
            page.figure(_histogram(pbo["logits"], 0.0, "logit of the pick's out-of-sample rank"), title="CSCV logits")
    if "seeds" in parts:
        seeds = parts["seeds"]
        page.heading("6. Seeds")
        summaries = [seeds[m] for m in ("sharpe", "total_return") if m in seeds]
        page.table(
            [{k: s[k] for k in ("metric", "n_seeds", "iqm", "ci_low", "ci_high", "mean", "median")} for s in summaries],
            title=f"Interquartile mean over seeds with {0.95:.0%} percentile-bootstrap intervals",
        )
        if plots and "sharpe" in seeds:
            page.figure(_seed_plot(seeds["sharpe"]), title="Test-split Sharpe ratio by seed")
    return page.render()


def _number(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.3f}"


def _median(values: list[Any]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(finite)) if finite else None


def _equity(returns: list[float]) -> Any:
    import plotly.graph_objects as go

    equity = np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))
    fig = go.Figure(go.Scatter(y=equity, mode="lines", name="agent"))
    fig.update_layout(height=320, xaxis_title="bar of the test split", yaxis_title="equity (start = 1)")
    return fig


def _null_plot(null: Mapping[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    few = sum(len(values) for values in null["by_kind"].values()) < NULL_HISTOGRAM_RUNS
    for kind, values in null["by_kind"].items():
        finite = [v for v in values if v is not None and np.isfinite(v)]
        if few:  # every run as a point: a histogram of a handful of runs draws bins wider than their spread
            fig.add_trace(go.Scatter(x=finite, y=[kind] * len(finite), mode="markers", name=f"null: {kind}"))
        else:
            fig.add_trace(go.Histogram(x=finite, name=f"null: {kind}", opacity=0.7))
    fig.add_vline(x=null["observed_sharpe"], line_color="#d64545", annotation_text="agent")
    fig.update_layout(height=360, xaxis_title="test-split Sharpe ratio", yaxis_title="null market" if few else "runs")
    if not few:
        fig.update_layout(barmode="stack")
    return fig


def _points(values: list[Any], bar: float, name: str, line: str) -> Any:
    import plotly.graph_objects as go

    finite = [v for v in values if v is not None]
    fig = go.Figure(go.Scatter(x=list(range(1, len(finite) + 1)), y=finite, mode="markers", name=name))
    fig.add_hline(y=bar, line_dash="dash", annotation_text=line)
    fig.update_layout(height=320, xaxis_title="run", yaxis_title="test-split Sharpe ratio")
    fig.update_xaxes(dtick=1)
    return fig


def _cost_plot(sweep: list[Mapping[str, Any]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Scatter(x=[row["multiple"] for row in sweep], y=[row["total_return"] for row in sweep], mode="lines+markers")
    )
    fig.add_hline(y=0.0, line_dash="dash")
    fig.add_vline(x=1.0, line_dash="dot", annotation_text="the run's costs")
    fig.update_layout(height=340, xaxis_title="multiple of fee and slippage", yaxis_title="total return")
    fig.update_yaxes(tickformat=".0%")
    return fig


def _histogram(values: list[float], line: float, title: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=values))
    fig.add_vline(x=line, line_dash="dash")
    fig.update_layout(height=320, xaxis_title=title, yaxis_title="combinations")
    return fig


def _seed_plot(summary: Mapping[str, Any]) -> Any:
    import plotly.graph_objects as go

    scores = summary["scores"]
    fig = go.Figure(go.Scatter(x=list(range(len(scores))), y=scores, mode="markers", name="seed"))
    fig.add_hline(y=summary["iqm"], annotation_text="IQM")
    if summary["ci_low"] is not None and summary["ci_high"] is not None:
        fig.add_hrect(y0=summary["ci_low"], y1=summary["ci_high"], opacity=0.15, line_width=0)
    fig.update_layout(height=320, xaxis_title="seed", yaxis_title="test-split Sharpe ratio")
    fig.update_xaxes(dtick=1)
    return fig


__all__ = ["FIGURE_MEANINGS", "LEVELS", "MEANINGS", "render"]
