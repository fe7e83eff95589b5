"""Performance metrics on per-bar simple returns, defined as in empyrical.

Every annualised metric takes an explicit ``periods_per_year``: crypto trades 365 days a year, so
use 365 for daily bars, 8760 for hourly bars and 525600 for minute bars
(:func:`sb3_crypto.data.periods_per_year` computes it from a bar spacing).
"""

from __future__ import annotations

import numpy as np


def _returns(returns: np.ndarray | list[float]) -> np.ndarray:
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"returns must be one-dimensional, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("returns contain NaN or inf")
    return values


def returns_from_equity(equity: np.ndarray | list[float]) -> np.ndarray:
    """Per-bar simple returns of an equity curve."""
    values = np.asarray(equity, dtype=np.float64)
    return values[1:] / values[:-1] - 1.0


def total_return(returns: np.ndarray | list[float]) -> float:
    """Compounded return over the whole series (fraction)."""
    return float(np.prod(1.0 + _returns(returns)) - 1.0)


def annual_return(returns: np.ndarray | list[float], periods_per_year: float) -> float:
    """Compound annual growth rate (empyrical ``annual_return``)."""
    values = _returns(returns)
    if values.size == 0:
        return float("nan")
    ending = np.prod(1.0 + values)
    return float(ending ** (periods_per_year / values.size) - 1.0)


def annual_volatility(returns: np.ndarray | list[float], periods_per_year: float) -> float:
    """Sample standard deviation (ddof=1) scaled by ``sqrt(periods_per_year)``."""
    values = _returns(returns)
    if values.size < 2:
        return float("nan")
    return float(values.std(ddof=1) * np.sqrt(periods_per_year))


def sharpe_ratio(returns: np.ndarray | list[float], periods_per_year: float, risk_free: float = 0.0) -> float:
    """Annualised Sharpe ratio: ``mean / std(ddof=1) * sqrt(periods_per_year)`` of excess returns."""
    values = _returns(returns) - risk_free
    if values.size < 2:
        return float("nan")
    std = values.std(ddof=1)
    if std == 0:
        return float("nan")
    return float(values.mean() / std * np.sqrt(periods_per_year))


def max_drawdown(returns: np.ndarray | list[float]) -> float:
    """Largest peak-to-trough fall of the equity curve, as a non-positive fraction (empyrical sign)."""
    values = _returns(returns)
    if values.size == 0:
        return float("nan")
    wealth = np.concatenate(([1.0], np.cumprod(1.0 + values)))
    peaks = np.maximum.accumulate(wealth)
    return float(np.min(wealth / peaks - 1.0))
