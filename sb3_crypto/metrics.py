"""Performance metrics on per-bar simple returns, named and defined as in empyrical.

Every annualised metric takes an explicit ``periods_per_year``: crypto trades 365 days a year, so
use 365 for daily bars, 8760 for hourly bars and 525600 for minute bars
(:func:`sb3_crypto.data.periods_per_year` computes it from a bar spacing). Returns are fractions
(0.01 = 1 %), per bar, NaN-free. Where a metric is undefined (too few bars, zero dispersion) the
result is ``nan``, as in empyrical; the test suite checks every shared metric against
empyrical-reloaded to 1e-9 relative.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def _returns(returns: np.ndarray | Sequence[float] | pd.Series) -> np.ndarray:
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"returns must be one-dimensional, got shape {values.shape}")
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"returns contain NaN or inf (first at position {bad})")
    return values


def returns_from_equity(equity: np.ndarray | Sequence[float]) -> np.ndarray:
    """Per-bar simple returns of an equity curve."""
    values = np.asarray(equity, dtype=np.float64)
    return values[1:] / values[:-1] - 1.0


def total_return(returns: np.ndarray | Sequence[float]) -> float:
    """Compounded return over the whole series (fraction)."""
    return float(np.prod(1.0 + _returns(returns)) - 1.0)


def annual_return(returns: np.ndarray | Sequence[float], periods_per_year: float) -> float:
    """Compound annual growth rate: ``(prod(1 + r)) ** (periods_per_year / n) - 1``."""
    values = _returns(returns)
    if values.size == 0:
        return float("nan")
    with np.errstate(over="ignore"):
        return float(np.prod(1.0 + values) ** (periods_per_year / values.size) - 1.0)


def annual_volatility(returns: np.ndarray | Sequence[float], periods_per_year: float) -> float:
    """Sample standard deviation (ddof=1) times ``sqrt(periods_per_year)``."""
    values = _returns(returns)
    if values.size < 2:
        return float("nan")
    return float(values.std(ddof=1) * np.sqrt(periods_per_year))


def sharpe_ratio(returns: np.ndarray | Sequence[float], periods_per_year: float, risk_free: float = 0.0) -> float:
    """``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year)``; nan with fewer than 2 bars.
    Identical returns have zero dispersion: +-inf (or nan when they are all zero), as in empyrical."""
    values = _returns(returns) - risk_free
    if values.size < 2:
        return float("nan")
    std = 0.0 if np.all(values == values[0]) else values.std(ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(values.mean(), std) * np.sqrt(periods_per_year))


def downside_risk(
    returns: np.ndarray | Sequence[float], periods_per_year: float, required_return: float = 0.0
) -> float:
    """Root mean square of the shortfalls below ``required_return``, annualised."""
    values = _returns(returns)
    if values.size == 0:
        return float("nan")
    shortfall = np.minimum(values - required_return, 0.0)
    return float(np.sqrt(np.mean(shortfall**2)) * np.sqrt(periods_per_year))


def sortino_ratio(
    returns: np.ndarray | Sequence[float], periods_per_year: float, required_return: float = 0.0
) -> float:
    """Annualised mean excess return over :func:`downside_risk` (inf with no shortfall, nan if < 2 bars)."""
    values = _returns(returns)
    if values.size < 2:
        return float("nan")
    mean = np.mean(values - required_return) * periods_per_year
    risk = downside_risk(values, periods_per_year, required_return)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(mean, risk))


def max_drawdown(returns: np.ndarray | Sequence[float]) -> float:
    """Largest peak-to-trough fall of the compounded curve, as a non-positive fraction."""
    values = _returns(returns)
    if values.size == 0:
        return float("nan")
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + values)))
    peaks = np.maximum.accumulate(wealth)
    return float(np.min(wealth / peaks - 1.0))


def calmar_ratio(returns: np.ndarray | Sequence[float], periods_per_year: float) -> float:
    """:func:`annual_return` over ``|max_drawdown|`` (nan without a drawdown)."""
    drawdown = max_drawdown(returns)
    if not drawdown < 0:
        return float("nan")
    ratio = annual_return(returns, periods_per_year) / abs(drawdown)
    return float("nan") if np.isinf(ratio) else float(ratio)


def alpha_beta(
    returns: np.ndarray | Sequence[float],
    benchmark_returns: np.ndarray | Sequence[float],
    periods_per_year: float,
    risk_free: float = 0.0,
) -> tuple[float, float]:
    """Annualised alpha and beta against a benchmark (beta = cov / var with population moments;
    alpha = ``(1 + mean(r - beta * b)) ** periods_per_year - 1`` on excess returns)."""
    values = _returns(returns) - risk_free
    benchmark = _returns(benchmark_returns) - risk_free
    if values.shape != benchmark.shape:
        raise ValueError(f"returns and benchmark differ in length: {values.size} vs {benchmark.size}")
    if values.size < 2:
        return float("nan"), float("nan")
    residual = benchmark - benchmark.mean()
    variance = np.mean(residual**2)
    beta = np.mean(residual * values) / variance if variance >= 1e-30 else float("nan")
    with np.errstate(over="ignore"):  # a huge per-bar alpha compounds to inf, as in empyrical
        alpha = np.float64(1.0 + np.mean(values - beta * benchmark)) ** periods_per_year - 1.0
    return float(alpha), float(beta)


def trade_statistics(trade_pnls: np.ndarray | Sequence[float]) -> dict[str, float]:
    """Statistics of closed trades (round trips) given their net PnL (quote currency).

    ``round_trips`` (how many closed trades), ``win_rate`` (share with PnL > 0), ``profit_factor``
    (gross wins / gross losses; inf without losses), ``average_win`` and ``average_loss`` (loss as a
    negative number); nan where undefined.
    """
    pnl = np.asarray(trade_pnls, dtype=np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    gross_loss = -losses.sum()
    if pnl.size == 0:
        factor = float("nan")
    elif gross_loss > 0:
        factor = wins.sum() / gross_loss
    else:
        factor = float("inf") if wins.size else float("nan")
    return {
        "round_trips": float(pnl.size),
        "win_rate": float((pnl > 0).mean()) if pnl.size else float("nan"),
        "profit_factor": float(factor),
        "average_win": float(wins.mean()) if wins.size else float("nan"),
        "average_loss": float(losses.mean()) if losses.size else float("nan"),
    }


def profitable_periods(equity: pd.Series, period: str) -> float:
    """Share of calendar periods (``"D"`` days, ``"M"`` months) whose equity ended above where it began.

    ``equity`` is indexed by bar timestamps; each period's return runs from the previous period's last
    value (or the first value) to its own last value.
    """
    if len(equity) < 2:
        return float("nan")
    index = pd.DatetimeIndex(equity.index)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)  # calendar periods in UTC
    keys = index.to_period(period)
    last = equity.groupby(keys).last()
    start = np.concatenate(([equity.iloc[0]], last.to_numpy()[:-1]))
    return float((last.to_numpy() > start).mean())


def summary(
    returns: np.ndarray | Sequence[float],
    periods_per_year: float,
    *,
    benchmark_returns: np.ndarray | Sequence[float] | None = None,
    trade_pnls: np.ndarray | Sequence[float] | None = None,
    positions: np.ndarray | Sequence[float] | None = None,
    commission: float | None = None,
    equity: pd.Series | None = None,
) -> dict[str, float]:
    """Every metric that the inputs allow, in one flat dict.

    :param trade_pnls: net PnL of every closed trade (round trip), for :func:`trade_statistics`
        (``round_trips``, ``win_rate``, ``profit_factor``, ...).
    :param positions: position held over each bar (for ``exposure``: share of bars in the market).
    :param commission: fees paid (reported as ``commission``).
    :param equity: timestamped equity curve (for ``profitable_days`` / ``profitable_months``).
    """
    out = {
        "total_return": total_return(returns),
        "annual_return": annual_return(returns, periods_per_year),
        "annual_volatility": annual_volatility(returns, periods_per_year),
        "sharpe": sharpe_ratio(returns, periods_per_year),
        "sortino": sortino_ratio(returns, periods_per_year),
        "max_drawdown": max_drawdown(returns),
        "calmar": calmar_ratio(returns, periods_per_year),
    }
    if benchmark_returns is not None:
        out["alpha"], out["beta"] = alpha_beta(returns, benchmark_returns, periods_per_year)
    if trade_pnls is not None:
        out.update(trade_statistics(trade_pnls))
    if positions is not None:
        held = np.asarray(positions, dtype=np.float64)
        out["exposure"] = float((held != 0).mean()) if held.size else float("nan")
    if commission is not None:
        out["commission"] = float(commission)
    if equity is not None:
        out["profitable_days"] = profitable_periods(equity, "D")
        out["profitable_months"] = profitable_periods(equity, "M")
    return out


#: S2's "production readiness" criteria: (metric, comparison, threshold).
READINESS_CRITERIA: dict[str, tuple[str, float]] = {
    "sharpe": (">", 1.2),
    "max_drawdown": (">", -0.15),
    "alpha": (">", 0.02),
    "win_rate": (">", 0.55),
    "calmar": (">", 0.8),
    "profitable_months": (">=", 0.70),
}


def production_readiness(
    summary: Mapping[str, float], criteria: Mapping[str, tuple[str, float]] | None = None, required: float = 0.8
) -> dict[str, Any]:
    """S2's check: each criterion passes or fails (a missing or nan metric fails); ready when the share
    of passed criteria is at least ``required``."""
    checks = {}
    for name, (operator, threshold) in (criteria or READINESS_CRITERIA).items():
        value = float(summary.get(name, float("nan")))
        passed = bool(value > threshold if operator == ">" else value >= threshold)
        checks[name] = {"value": value, "threshold": f"{operator} {threshold}", "passed": passed}
    share = sum(check["passed"] for check in checks.values()) / len(checks)
    return {"criteria": checks, "passed_share": share, "ready": share >= required}


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, trial_sharpe_variance: float) -> float:
    """Probability that the true Sharpe ratio exceeds the best one expected from ``n_trials`` tries of
    pure noise (Bailey & Lopez de Prado, 2014). Sharpe ratios here are per bar, not annualised.

    :param returns: per-bar returns of the selected strategy.
    :param n_trials: number of configurations tried (the selection it corrects for).
    :param trial_sharpe_variance: variance of the per-bar Sharpe ratios across those trials.
    """
    from statistics import NormalDist

    values = np.asarray(returns, dtype=np.float64)
    if values.size < 3 or n_trials < 1:
        raise ValueError("deflated_sharpe_ratio needs at least 3 returns and 1 trial")
    normal = NormalDist()
    sharpe = values.mean() / values.std(ddof=1)
    centred = values - values.mean()
    skew = np.mean(centred**3) / np.mean(centred**2) ** 1.5
    kurtosis = np.mean(centred**4) / np.mean(centred**2) ** 2
    euler = 0.5772156649015329
    if n_trials == 1:
        expected_max = 0.0
    else:
        expected_max = np.sqrt(trial_sharpe_variance) * (
            (1 - euler) * normal.inv_cdf(1 - 1 / n_trials) + euler * normal.inv_cdf(1 - 1 / (n_trials * np.e))
        )
    denominator = np.sqrt(1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2)
    return float(normal.cdf((sharpe - expected_max) * np.sqrt(values.size - 1) / denominator))


def portfolio_concentration(weights: np.ndarray | Sequence[Sequence[float]]) -> dict[str, float]:
    """Concentration of a portfolio over time, from its asset weights (one row per bar, cash left out).

    ``hhi``: mean Herfindahl-Hirschman index of the invested part (``sum((|w_k| / sum |w|)^2)``: 1 when
    one asset holds everything, ``1/N`` when ``N`` assets share it equally), over the bars with
    something invested; ``effective_assets``: the mean of its inverse (how many equal positions the
    portfolio is worth); ``max_weight``: the mean largest ``|w_k|``; ``invested``: the mean of
    ``sum |w|`` (1 - the cash weight for a long-only book). ``nan`` where nothing was ever invested.
    """
    held = np.abs(np.asarray(weights, dtype=np.float64))
    if held.ndim != 2:
        raise ValueError(f"weights must be two-dimensional (bars x assets), got shape {held.shape}")
    gross = held.sum(axis=1)
    invested = gross > 1e-12
    if not invested.any():
        nan = float("nan")
        return {"hhi": nan, "effective_assets": nan, "max_weight": 0.0, "invested": float(gross.mean())}
    shares = held[invested] / gross[invested, None]
    hhi = (shares**2).sum(axis=1)
    return {
        "hhi": float(hhi.mean()),
        "effective_assets": float((1.0 / hhi).mean()),
        "max_weight": float(held.max(axis=1).mean()),
        "invested": float(gross.mean()),
    }


def turnover(traded_value: np.ndarray | Sequence[float], equity: np.ndarray | Sequence[float]) -> float:
    """Mean turnover per bar: the value traded on a bar over the equity it was traded from, i.e.
    ``sum_k |dw_k|`` over the assets (buying the whole book from cash is 1, switching it from one
    asset to another is 2). Multiply by ``periods_per_year`` for the annual turnover."""
    traded = np.asarray(traded_value, dtype=np.float64)
    base = np.asarray(equity, dtype=np.float64)
    if traded.shape != base.shape or traded.ndim != 1:
        raise ValueError(f"traded_value and equity must be 1-d of one length, got {traded.shape} and {base.shape}")
    if not traded.size:
        return float("nan")
    return float(np.mean(traded / np.where(base > 0, base, np.nan)))
