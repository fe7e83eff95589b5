"""Reports of the backtests: plain-text tables, ``metrics.json``, CSV files and the figures.

Writing a report computes every file's content first (tables, JSON, figures), then writes the
files one by one, each atomically (:mod:`sb3_crypto.files`). ``metrics.json`` is strict
JSON: undefined numbers (a Sharpe ratio without dispersion, ...) are ``null``. A folder that
already holds a report's files is refused unless ``overwrite=True``.

Trade counts: ``fills`` counts every executed order, ``round_trips`` the closed trades (fills that
realised PnL); the win rate, profit factor and average win / loss are over the round trips.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sb3_crypto import metrics
from sb3_crypto.evaluation.plots import equity_png, session_pngs
from sb3_crypto.files import check_output_dir, claim_output_dir, to_strict_json, write_bytes

if TYPE_CHECKING:
    from sb3_crypto.evaluation.rollout import BacktestResult
    from sb3_crypto.evaluation.sessions import SessionRecord


#: The files of :func:`write_results` (equity-curve backtests).
RESULT_FILES = ("metrics.json", "equity.csv", "trades.csv", "equity.png")
#: The files of :func:`write_session_results`.
SESSION_RESULT_FILES = ("metrics.json", "sessions.csv", "trades.csv", "pnl_hist.png", "best_worst.png")


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


def write_results(
    results: list[BacktestResult],
    out: Path,
    meta: Mapping[str, Any],
    readiness_criteria: Mapping[str, tuple[str, float]] | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Write ``metrics.json`` (every strategy, the readiness check of the agent), ``equity.csv``,
    ``trades.csv`` (the agent's fills) and ``equity.png`` into ``out``; refuse (``OutputExistsError``)
    when ``out`` holds any of them already, unless ``overwrite``."""
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
    _write_all(Path(out), files, overwrite=overwrite)


def write_session_results(
    records: dict[str, list[SessionRecord]],
    summaries: dict[str, dict[str, float]],
    out: Path,
    meta: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> None:
    """``metrics.json``, ``sessions.csv`` (PnL of every strategy per session), ``trades.csv`` (the
    agent's fills) and the plots; refuses an ``out`` that holds any of them, unless ``overwrite``."""
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
    _write_all(Path(out), files, overwrite=overwrite)
