"""Backtest a trained model on one split of its env, against the baselines that fit the env.

The env class says what a backtest of it measures (its ``evaluation`` attribute), and
:data:`BACKTESTS` maps that to the backtest to run: an equity curve against buy-and-hold, flat and
random; every session once against flat, long/short-and-hold, random and S3's supervised baseline;
every DCA cycle once against S1's four DCA baselines; a portfolio against equal-weight buy-and-hold,
the uniform constant rebalanced portfolio, the best asset in hindsight and OLMAR
(:mod:`.portfolio`). ``python -m sb3_crypto.backtest`` is the
command line over :func:`backtest`.

The results are computed first and the files written at the end, each atomically; an ``out`` folder
that already holds results is refused (before the backtest runs) unless ``overwrite=True``. Every
backtest also writes its report as one interactive page, ``report.html``, when plotly (the ``report``
extra) is installed, and says which extra to install when it is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

from sb3_crypto.algorithms.model_io import ModelEnvMismatch, check_model_fits_env
from sb3_crypto.envs.registration import env_class
from sb3_crypto.evaluation.baselines import compare_with_baselines
from sb3_crypto.evaluation.dca import evaluate_dca
from sb3_crypto.evaluation.html import plotly_available
from sb3_crypto.evaluation.portfolio import (
    PORTFOLIO_RESULT_FILES,
    compare_portfolio,
    format_portfolio_table,
    write_portfolio_results,
)
from sb3_crypto.evaluation.reports import (
    DCA_RESULT_FILES,
    HTML_SKIPPED,
    RESULT_FILES,
    SESSION_RESULT_FILES,
    format_session_table,
    format_table,
    write_dca_results,
    write_results,
    write_session_results,
)
from sb3_crypto.evaluation.sessions import backtest_sessions
from sb3_crypto.files import check_output_dir

Echo = Callable[[str], None]

#: The files a backtest writes into ``out``, by the env's ``evaluation``.
OUTPUT_FILES: dict[str, tuple[str, ...]] = {
    "equity_curve": RESULT_FILES,
    "sessions": SESSION_RESULT_FILES,
    "dca_cycles": DCA_RESULT_FILES,
    "portfolio": PORTFOLIO_RESULT_FILES,
}


@dataclass
class BacktestRun:
    """One backtest to run: the model, its env and split, and where the report goes."""

    model: Any
    env_id: str
    env_kwargs: dict[str, Any]
    split: str
    deterministic: bool
    out: Path | None
    meta: dict[str, Any]
    readiness: Mapping[str, tuple[str, float]] | None
    echo: Echo
    overwrite: bool = False


def _say_if_no_html(run: BacktestRun) -> None:
    """One line naming the extra to install when the report's HTML page could not be written."""
    if not plotly_available():
        run.echo(HTML_SKIPPED)


def _equity_curve(run: BacktestRun) -> Any:
    kwargs = {**run.env_kwargs, "split": run.split, "episode_length": None}
    results = compare_with_baselines(run.model, lambda: gym.make(run.env_id, **kwargs), deterministic=run.deterministic)
    first, last = results[0].timestamps[0], results[0].timestamps[-1]
    run.echo(f"Out-of-sample backtest on split {run.split!r}: {first} .. {last} ({len(results[0].equity) - 1} bars)")
    run.echo(format_table(results))
    if run.out is not None:
        write_results(results, run.out, run.meta, run.readiness, overwrite=run.overwrite)
        _say_if_no_html(run)
    return results


def _sessions(run: BacktestRun) -> Any:
    from sb3_contrib import MaskablePPO

    kwargs = {**run.env_kwargs, "split": run.split}
    records, summaries = backtest_sessions(run.model, kwargs, use_masks=isinstance(run.model, MaskablePPO))
    run.echo(f"Session backtest on split {run.split!r}: every session once, same fee and slippage")
    run.echo(format_session_table(summaries))
    if run.out is not None:
        write_session_results(records, summaries, run.out, run.meta, overwrite=run.overwrite)
        _say_if_no_html(run)
    return summaries


def _dca_cycles(run: BacktestRun) -> Any:
    results = evaluate_dca(run.model, **{**run.env_kwargs, "split": run.split})
    run.echo(f"DCA timing on split {run.split!r}: mean saving against the cycle average price per cycle")
    for name, value in results.items():
        run.echo(f"  {name:<14}{100 * value / run.env_kwargs.get('reward_scale', 1.0):>8.3f}%")
    if run.out is not None:
        scale = run.env_kwargs.get("reward_scale", 1.0)
        write_dca_results(results, run.out, run.meta, reward_scale=scale, overwrite=run.overwrite)
        _say_if_no_html(run)
    return results


def _portfolio(run: BacktestRun) -> Any:
    kwargs = {**run.env_kwargs, "split": run.split, "episode_length": None}
    results = compare_portfolio(run.model, lambda: gym.make(run.env_id, **kwargs), deterministic=run.deterministic)
    first, last = results[0].timestamps[0], results[0].timestamps[-1]
    run.echo(
        f"Portfolio backtest on split {run.split!r}: {first} .. {last} ({len(results[0].equity) - 1} bars), "
        "every baseline through the env (same fees, slippage, dead band); best_asset_hindsight uses hindsight"
    )
    run.echo(format_portfolio_table(results))
    if run.out is not None:
        write_portfolio_results(results, run.out, run.meta, run.readiness, overwrite=run.overwrite)
        _say_if_no_html(run)
    return results


#: An env class's ``evaluation`` -> the backtest that measures it.
BACKTESTS: dict[str, Callable[[BacktestRun], Any]] = {
    "equity_curve": _equity_curve,
    "sessions": _sessions,
    "dca_cycles": _dca_cycles,
    "portfolio": _portfolio,
}


def backtest(
    model: Any,
    env_id: str,
    env_kwargs: Mapping[str, Any] | None = None,
    *,
    split: str = "test",
    deterministic: bool = True,
    out: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
    readiness: Mapping[str, tuple[str, float]] | None = None,
    echo: Echo = print,
    overwrite: bool = False,
) -> Any:
    """Run the backtest that fits ``env_id`` on ``split``; print its table and, with ``out``, write
    ``metrics.json`` and the env's CSV files and figures there. Returns the results.

    An ``out`` that already holds any of those files raises
    :class:`~sb3_crypto.files.OutputExistsError` before anything runs, unless ``overwrite``.
    """
    kind = getattr(env_class(env_id), "evaluation", None)
    if kind not in BACKTESTS:
        raise ValueError(f"{env_id!r} is not one of the package's envs; the backtester knows {sorted(BACKTESTS)} envs")
    settings = dict(env_kwargs or {})
    meta = {**(meta or {}), "env": env_id, "split": split, "env_kwargs": settings}
    out = None if out is None else Path(out)
    if out is not None:
        check_output_dir(out, OUTPUT_FILES[kind], overwrite=overwrite)
    run = BacktestRun(model, env_id, settings, split, deterministic, out, meta, readiness, echo, overwrite)
    return BACKTESTS[kind](run)


__all__ = ["BACKTESTS", "OUTPUT_FILES", "BacktestRun", "ModelEnvMismatch", "backtest", "check_model_fits_env"]
