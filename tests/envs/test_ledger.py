"""The accounting core: hand-computed fills and properties over random action sequences."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sb3_crypto  # noqa: F401
from sb3_crypto.data import synthetic_ohlcv
from sb3_crypto.envs import Ledger


def test_long_round_trip_by_hand() -> None:
    ledger = Ledger(10_000.0, fee_rate=0.001, slippage=0.0005)
    assert ledger.trade(2.0, 1000.0, bar=1)
    buy = ledger.last_fill
    assert buy is not None and buy.bar == 1 and buy.side == 1
    assert buy.price == pytest.approx(1000.5)  # buys pay up by the slippage
    assert buy.fee == pytest.approx(2 * 1000.5 * 0.001)
    assert ledger.cash == pytest.approx(10_000 - 2001.0 - 2.001)
    assert ledger.entry_price == pytest.approx(1000.5)
    ledger.trade(-2.0, 1100.0, bar=2)
    sell = ledger.last_fill
    assert sell is not None and sell.side == -1
    assert sell.price == pytest.approx(1099.45)  # sells receive less by the slippage
    assert sell.realized_pnl == pytest.approx(2 * (1099.45 - 1000.5))
    expected_cash = 10_000 - 2001.0 - 2.001 + 2198.9 - 2198.9 * 0.001
    assert ledger.cash == pytest.approx(expected_cash)
    assert ledger.position == 0.0 and ledger.entry_price == 0.0
    assert ledger.fees_paid == pytest.approx(2.001 + 2.1989)
    assert ledger.equity(1234.0) == pytest.approx(expected_cash)  # flat: price no longer matters
    assert ledger.n_trades == 2


def test_short_round_trip_and_flip_by_hand() -> None:
    ledger = Ledger(1000.0, fee_rate=0.0004, slippage=0.0005)
    ledger.trade(-1.0, 100.0)  # short 1 at 99.95
    assert ledger.cash == pytest.approx(1000 + 99.95 - 99.95 * 0.0004)
    assert ledger.unrealized_pnl(90.0) == pytest.approx(9.95)
    assert ledger.position_return(90.0) == pytest.approx(1 - 90 / 99.95)
    ledger.trade(3.0, 90.0)  # cover 1 and go long 2 at 90.045
    fill = ledger.last_fill
    assert fill is not None and fill.realized_pnl == pytest.approx(99.95 - 90.045)
    assert ledger.position == pytest.approx(2.0)
    assert ledger.entry_price == pytest.approx(90.045)


def test_spot_ledger_never_shorts_or_overspends() -> None:
    ledger = Ledger(1000.0, fee_rate=0.001, allow_short=False)
    units = ledger.units_for_exposure(1.0, 50.0)
    ledger.trade(units, 50.0)
    assert ledger.cash >= -1e-9
    assert ledger.exposure(50.0) == pytest.approx(1.0, abs=0.002)
    ledger.trade(-100.0, 50.0)  # selling more than held is cut to the holding
    assert ledger.position == 0.0
    assert not ledger.trade(-1.0, 50.0)  # nothing left to sell: no fill
    assert ledger.units_for_exposure(-1.0, 50.0) == 0.0


def test_funding_is_charged_on_notional() -> None:
    ledger = Ledger(1000.0, fee_rate=0.0, funding_rate=0.0001)
    ledger.trade(-2.0, 100.0)
    assert ledger.charge_funding(110.0) == pytest.approx(2 * 110 * 0.0001)
    assert ledger.funding_paid == pytest.approx(0.022)


def test_invalid_ledger_settings() -> None:
    with pytest.raises(ValueError, match="fee_rate"):
        Ledger(fee_rate=-0.1)
    with pytest.raises(ValueError, match="slippage"):
        Ledger(slippage=float("nan"))
    with pytest.raises(ValueError, match="units must be finite"):
        Ledger().trade(float("inf"), 100.0)


@settings(max_examples=60, deadline=None)
@given(
    trades=st.lists(
        st.tuples(st.floats(-5, 5, allow_nan=False), st.floats(50, 150, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    fee=st.floats(0, 0.01),
    slippage=st.floats(0, 0.01),
)
def test_ledger_conservation(trades: list[tuple[float, float]], fee: float, slippage: float) -> None:
    """Equity = initial cash + realised + unrealised - fees, whatever the sequence of fills."""
    ledger = Ledger(1000.0, fee_rate=fee, slippage=slippage)
    for units, price in trades:
        ledger.trade(units, price)
        assert ledger.fees_paid >= 0
        mark = price
        expected = 1000.0 + ledger.realized_pnl + ledger.unrealized_pnl(mark) - ledger.fees_paid
        assert ledger.equity(mark) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(-4, 4, allow_nan=False), st.floats(1, 200, allow_nan=False)), min_size=1, max_size=40
    ),
    fee=st.floats(0, 0.5),
    slippage=st.floats(0, 0.9),
    allow_short=st.booleans(),
    max_leverage=st.sampled_from([0.5, 1.0, 3.0]),
    initial_position=st.sampled_from([0.0, 1.0, 25.0]),
)
def test_rebalance_is_units_for_exposure_then_trade(
    steps: list[tuple[float, float]],
    fee: float,
    slippage: float,
    allow_short: bool,
    max_leverage: float,
    initial_position: float,
) -> None:
    """The step path's one-call rebalance leaves the ledger exactly as the two public methods do
    (every field, every fill, bit for bit), including ruined accounts and targets beyond the cap."""
    settings_ = {"allow_short": allow_short, "max_leverage": max_leverage, "initial_position": initial_position}
    one, two = (Ledger(1000.0, fee_rate=fee, slippage=slippage, **settings_) for _ in range(2))
    for bar, (target, price) in enumerate(steps):
        traded = one.rebalance(target, price, bar)
        units = two.units_for_exposure(target, price)
        assert traded == (bool(units) and two.trade(units, price, bar))
        for name in Ledger.__slots__:
            assert getattr(one, name) == getattr(two, name), name


def test_trade_refuses_non_finite_units() -> None:
    for units in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="units must be finite"):
            Ledger().trade(units, 100.0)


MARKET = synthetic_ohlcv(1500, seed=11)


@settings(max_examples=25, deadline=None)
@given(
    actions=st.lists(st.floats(-1, 1, allow_nan=False), min_size=5, max_size=80),
    allow_short=st.booleans(),
    scheme=st.sampled_from(["target", "direction_size_confidence"]),
)
def test_env_accounting_properties(actions: list[float], allow_short: bool, scheme: str) -> None:
    env = gym.make(
        "CryptoTrading-v0",
        data=MARKET,
        episode_length=len(actions),
        allow_short=allow_short,
        action_scheme=scheme,
        funding_rate=0.00001,
        window_size=8,
    )
    base = env.unwrapped
    _, info = env.reset(seed=len(actions))
    fees = 0.0
    for value in actions:
        action = np.full(env.action_space.shape, value, dtype=np.float32)
        _, reward, terminated, truncated, info = env.step(action)
        price = base.market.close[info["bar"]]
        assert info["position"] == base.ledger.position
        assert info["equity"] == pytest.approx(base.ledger.cash + info["position"] * price, rel=1e-12)
        assert info["fees_paid"] >= fees  # fees never negative
        fees = info["fees_paid"]
        if not allow_short:
            assert info["position"] >= 0.0
        assert math.isfinite(reward)
        if terminated or truncated:
            break
    assert truncated
