"""Interactive figures of the backtests (plotly), for the HTML pages of :mod:`sb3_crypto.evaluation.html`.

The PNG figures of :mod:`sb3_crypto.evaluation.plots` stay for papers; these are the same results
made to be explored: zoom into a month, hover a fill to read its size, fee and PnL, hide a baseline
by clicking its legend entry. plotly comes with the ``report`` extra and is imported only when a
figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from sb3_crypto.evaluation.rollout import BacktestResult
    from sb3_crypto.evaluation.sessions import SessionRecord

TEMPLATE = "plotly_white"
AGENT_COLOR = "#1f4e9c"
BASELINE_COLORS = ("#e8a317", "#7b8794", "#b5179e", "#2a9d8f", "#d64545", "#6a4c93")
BUY_COLOR, SELL_COLOR = "#2e9e44", "#d64545"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _go() -> Any:
    from sb3_crypto.evaluation.html import require_plotly

    require_plotly()  # the clear "install the report extra" error when plotly is missing
    import plotly.graph_objects as go

    return go


def _colors(names: Sequence[str]) -> dict[str, str]:
    colors, k = {}, 0
    for name in names:
        if name == "agent":
            colors[name] = AGENT_COLOR
        else:
            colors[name] = BASELINE_COLORS[k % len(BASELINE_COLORS)]
            k += 1
    return colors


def _layout(fig: go.Figure, *, height: int, yaxis: str, percent: bool = False, **kwargs: Any) -> go.Figure:
    settings = {
        "template": TEMPLATE,
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "yaxis_title": yaxis,
    }
    fig.update_layout(**{**settings, **kwargs})
    if percent:
        fig.update_yaxes(tickformat=".0%")
    return fig


def _times(result: BacktestResult) -> pd.DatetimeIndex:
    import pandas as pd

    return pd.DatetimeIndex(result.timestamps)


#: The equity figures switch to a log scale when the highest normalised equity is this many times the
#: lowest: a strong agent's 20-fold curve would otherwise flatten every baseline into the bottom line.
LOG_SCALE_RATIO = 10.0


def log_scale_fits(curves: Sequence[np.ndarray], ratio: float = LOG_SCALE_RATIO) -> bool:
    """Whether the equity ``curves`` (each normalised to its start) are best shown on a log scale:
    every value is positive and the highest is at least ``ratio`` times the lowest. A ruined curve
    (equity at or below 0) keeps the linear scale, where it can be drawn."""
    values = [np.asarray(curve, dtype=np.float64) / float(curve[0]) for curve in curves if len(curve) and curve[0] > 0]
    if not values or len(values) < len(curves):
        return False
    joined = np.concatenate(values)
    if not np.isfinite(joined).all() or joined.min() <= 0:
        return False
    return float(joined.max() / joined.min()) >= ratio


def equity_figure(results: Sequence[BacktestResult], *, log: bool | None = None) -> go.Figure:
    """Equity of every strategy, normalised to 1 at the start; the agent first and thickest.

    :param log: a log y axis (default: when :func:`log_scale_fits` the curves); buttons beside the
        plot switch between the linear and the log scale either way.
    """
    go = _go()
    colors = _colors([r.name for r in results])
    fig = go.Figure()
    for k, result in enumerate(results):
        fig.add_trace(
            go.Scatter(
                x=_times(result),
                y=result.equity / result.equity[0],
                name=result.name,
                mode="lines",
                line={"color": colors[result.name], "width": 2.2 if k == 0 else 1.2},
                hovertemplate="%{y:.4f}",
            )
        )
    if log is None:
        log = log_scale_fits([r.equity for r in results])
    scales = [
        {"label": scale, "method": "relayout", "args": [{"yaxis.type": scale, "yaxis.autorange": True}]}
        for scale in ("linear", "log")
    ]
    _layout(fig, height=420, yaxis="equity (start = 1)" + (", log scale" if log else ""))
    fig.update_yaxes(type="log" if log else "linear")
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "down",
                "buttons": scales,
                "active": int(log),
                "showactive": True,
                "x": 1.01,
                "xanchor": "left",
                "y": 1.0,
                "yanchor": "top",
                "pad": {"t": 0, "l": 0},
                "font": {"size": 11},
            }
        ],
        margin={"r": 80},  # room for the buttons right of the plot, clear of the modebar
    )
    return fig


def drawdown_figure(results: Sequence[BacktestResult]) -> go.Figure:
    """Drawdown from the running peak of every strategy (the agent filled)."""
    go = _go()
    colors = _colors([r.name for r in results])
    fig = go.Figure()
    for k, result in enumerate(results):
        drawdown = result.equity / np.maximum.accumulate(result.equity) - 1.0
        fig.add_trace(
            go.Scatter(
                x=_times(result),
                y=drawdown,
                name=result.name,
                mode="lines",
                fill="tozeroy" if k == 0 else None,
                line={"color": colors[result.name], "width": 1.6 if k == 0 else 1.0},
                hovertemplate="%{y:.2%}",
            )
        )
    return _layout(fig, height=300, yaxis="drawdown", percent=True)


def trades_figure(result: BacktestResult) -> go.Figure:
    """The close price with the agent's fills (buys ▲, sells ▼ at their fill price; hover for size,
    fee and realised PnL) and, below it, the exposure the agent held."""
    go = _go()
    from plotly.subplots import make_subplots

    times = _times(result)
    close = result.extra.get("close")
    exposure = result.extra.get("exposure")
    rows = 2 if exposure is not None else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.72, 0.28][:rows] if rows == 2 else None,
    )
    if close is not None:
        fig.add_trace(
            go.Scatter(x=times, y=close, name="close", mode="lines", line={"color": "#52606d", "width": 1.0}),
            row=1,
            col=1,
        )
    fills = result.extra.get("fills", [])
    for side, label, symbol, color in ((1, "buy", "triangle-up", BUY_COLOR), (-1, "sell", "triangle-down", SELL_COLOR)):
        chosen = [fill for fill in fills if fill[2] == side]
        fig.add_trace(
            go.Scatter(
                x=[fill[0] for fill in chosen],
                y=[fill[4] for fill in chosen],
                name=f"{label} ({len(chosen)})",
                mode="markers",
                marker={"symbol": symbol, "color": color, "size": 9, "line": {"width": 0.5, "color": "white"}},
                customdata=[[fill[3], fill[5], fill[6]] for fill in chosen],
                hovertemplate=(
                    f"{label} %{{customdata[0]:.6g}} @ %{{y:.6g}}<br>fee %{{customdata[1]:.4g}}, "
                    "realised PnL %{customdata[2]:.4g}<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
    if exposure is not None:
        fig.add_trace(
            go.Scatter(
                x=times,
                y=exposure,
                name="exposure",
                mode="lines",
                line={"color": AGENT_COLOR, "width": 1.0, "shape": "hv"},
                fill="tozeroy",
            ),
            row=2,
            col=1,
        )
        fig.update_yaxes(title_text="exposure", row=2, col=1)
    _layout(fig, height=520 if rows == 2 else 420, yaxis="price", hovermode="closest")
    return fig


def monthly_returns(result: BacktestResult) -> pd.DataFrame:
    """Return of every calendar month (rows: years, columns: ``Jan`` .. ``Dec``; NaN where the
    backtest did not run). The first month is measured from the starting equity."""
    import pandas as pd

    equity = pd.Series(result.equity, index=_times(result))
    month_end = equity.resample("ME").last().dropna()
    previous = month_end.shift(1)
    previous.iloc[0] = equity.iloc[0]
    returns = month_end / previous - 1.0
    table = pd.DataFrame(np.nan, index=sorted(set(returns.index.year)), columns=list(MONTHS))
    for stamp, value in returns.items():
        table.loc[stamp.year, MONTHS[stamp.month - 1]] = value
    table.index.name = "year"
    return table


def monthly_returns_figure(result: BacktestResult) -> go.Figure:
    """Heatmap of :func:`monthly_returns` (green gains, red losses, the value written in each cell)."""
    go = _go()
    table = monthly_returns(result)
    values = table.to_numpy(dtype=np.float64)
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0
    bound = max(bound, 1e-3)  # a symmetric scale around 0 even when every month is flat
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=list(table.columns),
            y=[str(year) for year in table.index],
            zmin=-bound,
            zmax=bound,
            colorscale="RdYlGn",
            texttemplate="%{z:.1%}",
            hovertemplate="%{y} %{x}: %{z:.2%}<extra></extra>",
            colorbar={"tickformat": ".0%"},
        )
    )
    fig = _layout(fig, height=120 + 50 * len(table), yaxis="", hovermode="closest")
    fig.update_yaxes(type="category", autorange="reversed")  # the first year on top
    return fig


def session_pnl_figure(records: Mapping[str, Sequence[SessionRecord]]) -> go.Figure:
    """Cumulative PnL over the sessions of the split, in order, for every strategy."""
    go = _go()
    colors = _colors(list(records))
    fig = go.Figure()
    for k, (name, recs) in enumerate(records.items()):
        pnl = np.cumsum([r.pnl for r in recs])
        labels = [f"{r.key[0]} {r.key[1]}" for r in recs]
        fig.add_trace(
            go.Scatter(
                x=np.arange(1, len(pnl) + 1),
                y=pnl,
                name=name,
                mode="lines",
                customdata=labels,
                line={"color": colors[name], "width": 2.2 if k == 0 else 1.2},
                hovertemplate="%{customdata}: %{y:.2f}",
            )
        )
    return _layout(fig, height=400, yaxis="cumulative PnL (quote)", xaxis_title="session")


def session_histogram_figure(records: Mapping[str, Sequence[SessionRecord]]) -> go.Figure:
    """Distribution of the PnL per session of every strategy (overlaid; the agent in front)."""
    go = _go()
    colors = _colors(list(records))
    fig = go.Figure()
    for name, recs in reversed(list(records.items())):
        fig.add_trace(
            go.Histogram(
                x=[r.pnl for r in recs],
                name=name,
                opacity=0.85 if name == "agent" else 0.45,
                marker_color=colors[name],
                nbinsx=40,
            )
        )
    return _layout(
        fig, height=360, yaxis="sessions", barmode="overlay", xaxis_title="PnL per session (quote)", hovermode="closest"
    )


def bar_figure(values: Mapping[str, float], *, yaxis: str, percent: bool = False) -> go.Figure:
    """One bar per strategy (the agent first), e.g. the DCA saving per cycle."""
    go = _go()
    colors = _colors(list(values))
    fig = go.Figure(
        go.Bar(
            x=list(values),
            y=list(values.values()),
            marker_color=[colors[name] for name in values],
            hovertemplate="%{x}: %{y:.4g}<extra></extra>",
        )
    )
    return _layout(fig, height=340, yaxis=yaxis, percent=percent, hovermode="closest")


def weights_figure(timestamps: Any, weights: np.ndarray, names: Sequence[str]) -> go.Figure:
    """Stacked area of the weights held over time (one row of ``weights`` per timestamp, columns in
    ``names`` order, cash first): how a portfolio's capital was spread. Short weights are left out
    (the long side is stacked), as in the PNG of :func:`sb3_crypto.evaluation.plots.weights_png`."""
    import pandas as pd

    go = _go()
    from plotly.colors import qualitative

    values = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"weights_figure: weights of shape {values.shape} do not match {len(names)} names")
    palette = qualitative.Plotly if len(names) <= 11 else qualitative.Alphabet
    times = pd.DatetimeIndex(timestamps)
    fig = go.Figure()
    for k, name in enumerate(names):
        fig.add_trace(
            go.Scatter(
                x=times,
                y=values[:, k],
                name=str(name),
                mode="lines",
                stackgroup="weights",
                line={"width": 0.4, "shape": "hv", "color": "#9aa5b1" if k == 0 else palette[(k - 1) % len(palette)]},
                hovertemplate="%{y:.1%}",
            )
        )
    fig = _layout(fig, height=400, yaxis="weight", percent=True)
    fig.update_yaxes(range=[0.0, max(1.0, float(values.sum(axis=1).max(initial=1.0)))])
    return fig


def grouped_bar_figure(values: Mapping[str, Mapping[str, float]], *, yaxis: str, xaxis: str = "") -> go.Figure:
    """Bars of several strategies side by side: ``values[strategy][item]`` (e.g. each asset's PnL
    contribution); one colour per strategy, the agent first, as in the other figures."""
    go = _go()
    colors = _colors(list(values))
    fig = go.Figure()
    for name, row in values.items():
        fig.add_trace(
            go.Bar(
                x=[str(item) for item in row],
                y=list(row.values()),
                name=name,
                marker_color=colors[name],
                hovertemplate="%{x}: %{y:.4g}",
            )
        )
    return _layout(fig, height=380, yaxis=yaxis, xaxis_title=xaxis, barmode="group", hovermode="closest")


__all__ = [
    "bar_figure",
    "drawdown_figure",
    "equity_figure",
    "grouped_bar_figure",
    "log_scale_fits",
    "monthly_returns",
    "monthly_returns_figure",
    "session_histogram_figure",
    "session_pnl_figure",
    "trades_figure",
    "weights_figure",
]
