"""Figures of the backtests (PNG, for reports and papers), drawn with matplotlib's file backend.

Each figure is drawn into memory first (``*_png`` functions return the PNG bytes) and written with
an atomic rename (``plot_*`` functions), so a report can draw all its figures before it writes any
file, and a kill never leaves half a PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sb3_crypto.envs.futures import CLOSE, LONG, SHORT
from sb3_crypto.evaluation.figures import log_scale_fits
from sb3_crypto.files import write_bytes

if TYPE_CHECKING:
    from sb3_crypto.evaluation.rollout import BacktestResult
    from sb3_crypto.evaluation.sessions import SessionRecord


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure: Any, dpi: int) -> bytes:
    """``figure`` as PNG bytes; the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def plot_equity(results: list[BacktestResult], path: Path) -> Path:
    """Equity of every strategy (normalised to 1; on a log scale when
    :func:`~sb3_crypto.evaluation.figures.log_scale_fits` the curves) above the agent's drawdown,
    with its fills marked."""
    write_bytes(path, equity_png(results))
    return path


def equity_png(results: list[BacktestResult]) -> bytes:
    """The figure of :func:`plot_equity` as PNG bytes."""
    import pandas as pd

    plt = pyplot()
    agent = results[0]
    times = pd.DatetimeIndex(agent.timestamps)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 1))
    for result in results:
        top.plot(times, result.equity / result.equity[0], label=result.name, lw=1.6 if result is agent else 1.0)
    position = {stamp: k for k, stamp in enumerate(agent.timestamps)}
    for time, _bar, side, *_ in agent.extra.get("fills", []):
        if time in position:
            k = position[time]
            top.scatter(
                times[k],
                agent.equity[k] / agent.equity[0],
                marker="^" if side > 0 else "v",
                color="green" if side > 0 else "red",
                s=12,
                zorder=3,
            )
    if log_scale_fits([result.equity for result in results]):  # a strong agent would flatten the baselines
        top.set_yscale("log")
        top.set_ylabel("equity (start = 1, log scale)")
    else:
        top.set_ylabel("equity (start = 1)")
    top.legend(loc="upper left")
    drawdown = agent.equity / np.maximum.accumulate(agent.equity) - 1.0
    bottom.fill_between(times, drawdown, 0.0, color="firebrick", alpha=0.4)
    bottom.set_ylabel("agent drawdown")
    figure.tight_layout()
    return png(figure, dpi=110)


def plot_optimization_history(values: list[float], path: Path, ylabel: str) -> Path:
    """Each trial's value and the best so far, in trial order."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(values, ".", label="trial")
    axis.plot(np.maximum.accumulate(values), "-", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel(ylabel)
    axis.legend()
    figure.tight_layout()
    write_bytes(path, png(figure, dpi=100))
    return path


MARKERS = {LONG: ("^", "green", "long"), SHORT: ("v", "red", "short"), CLOSE: ("x", "black", "close")}


def plot_sessions(records: list[SessionRecord], out: Path, n_extremes: int = 3) -> list[Path]:
    """``pnl_hist.png`` (histograms of PnL per session and of the win rate per block of sessions) and
    ``best_worst.png`` (the best and worst sessions: price with the signal bar and hold / long /
    short / close markers)."""
    paths = []
    for name, data in session_pngs(records, n_extremes).items():
        paths.append(write_bytes(Path(out) / name, data))
    return paths


def session_pngs(records: list[SessionRecord], n_extremes: int = 3) -> dict[str, bytes]:
    """The figures of :func:`plot_sessions` as PNG bytes by file name."""
    plt = pyplot()
    pnl = np.array([r.pnl for r in records])
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    left.hist(
        [pnl[pnl > 0], pnl[pnl <= 0]],
        bins=30,
        stacked=True,
        color=["seagreen", "firebrick"],
        label=[f"wins ({(pnl > 0).mean():.0%})", "losses"],
    )
    left.set_xlabel("PnL per session (quote currency, after costs)")
    left.set_ylabel("sessions")
    left.legend()
    # Win rate of consecutive blocks of sessions: how stable the hit rate is over the split.
    block = max(1, len(pnl) // 10)
    rates = [float((pnl[k : k + block] > 0).mean()) for k in range(0, len(pnl), block)]
    right.hist(rates, bins=np.linspace(0, 1, 11), color="steelblue")
    right.axvline(float((pnl > 0).mean()), color="black", ls="--", label="overall")
    right.set_xlabel(f"win rate per block of {block} sessions")
    right.legend()
    figure.tight_layout()
    figures = {"pnl_hist.png": png(figure, dpi=100)}

    order = np.argsort(pnl)
    chosen = [*order[::-1][:n_extremes], *order[:n_extremes]]
    figure, axes = plt.subplots(2, n_extremes, figsize=(4 * n_extremes, 6), squeeze=False)
    for axis, index in zip(axes.flat, chosen):
        record = records[index]
        axis.plot(record.closes, color="grey", lw=1)
        axis.axvline(record.context - 1, color="orange", ls="--", lw=1)
        for step, action in enumerate(record.actions):
            bar = record.context - 1 + step
            if action in MARKERS:
                marker, color, _ = MARKERS[action]
                axis.scatter(bar, record.closes[bar], marker=marker, color=color, zorder=3)
            else:
                axis.scatter(bar, record.closes[bar], marker=".", color="grey", s=8, zorder=3)
        axis.set_title(f"{record.key[0]} {record.key[1]:%Y-%m-%d %H:%M}\nPnL {record.pnl:+.1f}", fontsize=8)
    figure.suptitle("best (top) and worst (bottom) sessions: ^ long, v short, x close, . hold; -- signal")
    figure.tight_layout()
    figures["best_worst.png"] = png(figure, dpi=100)
    return figures


def weights_png(timestamps: Any, weights: np.ndarray, names: list[str], title: str = "agent") -> bytes:
    """Stacked weights over time (cash and every asset; one row of ``weights`` per timestamp, columns
    in ``names`` order) as PNG bytes: how a portfolio's capital was spread."""
    import pandas as pd

    plt = pyplot()
    times = pd.DatetimeIndex(timestamps)
    values = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    figure, axis = plt.subplots(figsize=(11, 4.5))
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")(np.arange(len(names)) % 20)
    axis.stackplot(times, values.T, labels=names, colors=colours, step="post", linewidth=0)
    axis.set_ylim(0.0, max(1.0, float(values.sum(axis=1).max(initial=1.0))))
    axis.set_ylabel("weight")
    axis.set_title(f"{title}: weights over time (long side, cash first)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", ncol=1 + len(names) // 25)
    figure.tight_layout()
    return png(figure, dpi=110)
