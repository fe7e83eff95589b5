"""Metrics against empyrical-reloaded (the reference definitions) and hand computations."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pandas as pd
import pytest

from sb3_crypto import metrics

SERIES = {
    "random": np.random.default_rng(0).normal(0.001, 0.02, 500),
    "fat_tailed": np.random.default_rng(1).standard_t(3, 300) * 0.01,
    "flat": np.zeros(50),
    "constant_gain": np.full(40, 0.002),
    "all_losses": -np.abs(np.random.default_rng(2).normal(0.01, 0.005, 60)),
    "one_bar": np.array([0.015]),
    "two_bars": np.array([0.01, -0.02]),
}
PERIODS = (365, 8760, 525600)


def same(ours: float, theirs: float) -> None:
    if math.isnan(theirs):
        assert math.isnan(ours)
    elif math.isinf(theirs):
        assert ours == theirs
    else:
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning:empyrical")  # empyrical's own overflow (inf)
@pytest.mark.parametrize("name", sorted(SERIES))
@pytest.mark.parametrize("periods", PERIODS)
def test_shared_metrics_match_empyrical(name: str, periods: int) -> None:
    r = SERIES[name]
    same(metrics.annual_return(r, periods), empyrical.annual_return(r, annualization=periods))
    same(metrics.annual_volatility(r, periods), empyrical.annual_volatility(r, annualization=periods))
    same(metrics.sharpe_ratio(r, periods), empyrical.sharpe_ratio(r, annualization=periods))
    same(metrics.downside_risk(r, periods), empyrical.downside_risk(r, annualization=periods))
    with np.errstate(divide="ignore", invalid="ignore"):
        same(metrics.sortino_ratio(r, periods), empyrical.sortino_ratio(r, annualization=periods))
    same(metrics.max_drawdown(r), empyrical.max_drawdown(r))
    same(metrics.calmar_ratio(r, periods), empyrical.calmar_ratio(r, annualization=periods))
    benchmark = np.resize(SERIES["fat_tailed"], r.size)
    alpha, beta = metrics.alpha_beta(r, benchmark, periods)
    expected_alpha, expected_beta = empyrical.alpha_beta(r, benchmark, annualization=periods)
    same(beta, expected_beta)
    same(alpha, expected_alpha)


def test_metrics_by_hand() -> None:
    r = np.array([0.1, -0.5, 0.2])
    assert metrics.total_return(r) == pytest.approx(1.1 * 0.5 * 1.2 - 1)
    assert metrics.max_drawdown(r) == pytest.approx(-0.5)
    assert metrics.annual_return(r, 3) == pytest.approx(1.1 * 0.5 * 1.2 - 1)  # 3 bars = one year
    np.testing.assert_allclose(metrics.returns_from_equity([100, 110, 55]), [0.1, -0.5])
    with pytest.raises(ValueError, match="NaN or inf \\(first at position 1\\)"):
        metrics.sharpe_ratio([0.1, float("nan")], 365)


def test_trade_statistics_and_profitable_periods() -> None:
    stats = metrics.trade_statistics([10.0, -5.0, 20.0, -5.0])
    assert stats == {
        "round_trips": 4.0,
        "win_rate": 0.5,
        "profit_factor": 3.0,
        "average_win": 15.0,
        "average_loss": -5.0,
    }
    assert metrics.trade_statistics([1.0])["profit_factor"] == math.inf
    assert math.isnan(metrics.trade_statistics([])["win_rate"])
    index = pd.date_range("2024-01-30", periods=5, freq="1D", tz="UTC")
    equity = pd.Series([100.0, 101.0, 99.0, 98.0, 103.0], index=index)  # Jan 30..Feb 3
    # days: 101 > 100, 99 < 101, 98 < 99, 103 > 98 (the first day compares with itself: not up)
    assert metrics.profitable_periods(equity, "D") == pytest.approx(2 / 5)
    # months: January ends at 101 (> 100), February ends at 103 (> 101)
    assert metrics.profitable_periods(equity, "M") == 1.0
    summary = metrics.summary(
        np.diff(equity.to_numpy()) / equity.to_numpy()[:-1],
        365,
        trade_pnls=[10.0, -5.0],
        positions=[0, 1, 1, 0],
        commission=2.5,
        equity=equity,
    )
    assert summary["exposure"] == 0.5 and summary["commission"] == 2.5 and summary["win_rate"] == 0.5
    assert summary["profitable_months"] == 1.0
