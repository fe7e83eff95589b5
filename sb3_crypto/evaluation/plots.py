"""Figures of the backtests (PNG, for reports and papers), drawn with matplotlib's file backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sb3_crypto.envs.futures import CLOSE, LONG, SHORT

if TYPE_CHECKING:
    from sb3_crypto.evaluation.rollout import BacktestResult
    from sb3_crypto.evaluation.sessions import SessionRecord


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_equity(results: list[BacktestResult], path: Path) -> Path:
    """Equity of every strategy (normalised to 1) above the agent's drawdown, with its fills marked."""
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
    top.set_ylabel("equity (start = 1)")
    top.legend(loc="upper left")
    drawdown = agent.equity / np.maximum.accumulate(agent.equity) - 1.0
    bottom.fill_between(times, drawdown, 0.0, color="firebrick", alpha=0.4)
    bottom.set_ylabel("agent drawdown")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


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
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


MARKERS = {LONG: ("^", "green", "long"), SHORT: ("v", "red", "short"), CLOSE: ("x", "black", "close")}


def plot_sessions(records: list[SessionRecord], out: Path, n_extremes: int = 3) -> list[Path]:
    """``pnl_hist.png`` (histograms of PnL per session and of the win rate per block of sessions) and
    ``best_worst.png`` (the best and worst sessions: price with the signal bar and hold / long /
    short / close markers)."""
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
    figure.savefig(out / "pnl_hist.png", dpi=100)
    plt.close(figure)

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
    figure.savefig(out / "best_worst.png", dpi=100)
    plt.close(figure)
    return [out / "pnl_hist.png", out / "best_worst.png"]
