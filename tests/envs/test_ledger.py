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


# ---------------------------------------------------------------------------------------------- several assets
def test_multi_asset_fills_by_hand_with_per_asset_fees_and_slippage() -> None:
    ledger = Ledger(10_000.0, fee_rate=[0.001, 0.002, 0.0], slippage=[0.0005, 0.001, 0.0], n_assets=3)
    assert ledger.fee_rates == [0.001, 0.002, 0.0] and ledger.slippages == [0.0005, 0.001, 0.0]
    assert ledger.trade(2.0, 1000.0, bar=5, asset=0)
    assert ledger.trade(10.0, 50.0, bar=5, asset=1)
    assert ledger.trade(-4.0, 20.0, bar=5, asset=2)  # a short of asset 2 (allow_short by default)
    buy0, buy1, short2 = ledger.fills
    assert (buy0.asset, buy1.asset, short2.asset) == (0, 1, 2)
    assert buy0.price == pytest.approx(1000.5) and buy0.fee == pytest.approx(2 * 1000.5 * 0.001)
    assert buy1.price == pytest.approx(50.05) and buy1.fee == pytest.approx(10 * 50.05 * 0.002)
    assert short2.price == 20.0 and short2.fee == 0.0 and short2.side == -1
    cash = 10_000 - 2001.0 - 2.001 - 500.5 - 1.001 + 80.0
    assert ledger.cash == pytest.approx(cash)
    assert ledger.positions == [2.0, 10.0, -4.0]
    assert ledger.entry_prices == pytest.approx([1000.5, 50.05, 20.0])
    assert ledger.position == 2.0 and ledger.entry_price == pytest.approx(1000.5)  # asset 0: the single-asset API
    prices = [1100.0, 40.0, 25.0]
    assert ledger.equity(prices) == pytest.approx(cash + 2200.0 + 400.0 - 100.0)
    assert ledger.values(prices) == pytest.approx([2200.0, 400.0, -100.0])
    assert ledger.unrealized_pnl(40.0, asset=1) == pytest.approx(10 * (40.0 - 50.05))
    assert ledger.position_return(25.0, asset=2) == pytest.approx(-(25.0 / 20.0 - 1.0))
    # Partly close asset 1 at a loss and cover asset 2 at a loss: realised PnL per asset, fees per asset.
    ledger.trade(-4.0, 40.0, bar=6, asset=1)  # sells at 39.96
    ledger.close(25.0, bar=6, asset=2)
    assert ledger.positions == pytest.approx([2.0, 6.0, 0.0])
    assert ledger.entry_prices == pytest.approx([1000.5, 50.05, 0.0])  # a partial close keeps the entry
    assert ledger.realized_pnl_by_asset() == pytest.approx([0.0, 4 * (39.96 - 50.05), 4 * (20.0 - 25.0)])
    assert ledger.fees_by_asset() == pytest.approx([2.001, 1.001 + 4 * 39.96 * 0.002, 0.0])
    assert ledger.fees_by_asset(since=3) == pytest.approx([0.0, 4 * 39.96 * 0.002, 0.0])
    assert ledger.realized_pnl == pytest.approx(sum(ledger.realized_pnl_by_asset()))
    assert ledger.fees_paid == pytest.approx(sum(ledger.fees_by_asset()))
    cash += 4 * 39.96 * (1 - 0.002) - 4 * 25.0
    assert ledger.cash == pytest.approx(cash)
    assert ledger.equity(prices) == pytest.approx(cash + 2200.0 + 240.0)


def test_multi_asset_ledger_refuses_single_asset_sizing_and_bad_input() -> None:
    ledger = Ledger(1000.0, n_assets=2)
    with pytest.raises(ValueError, match="2 assets need 2 prices"):
        ledger.equity(100.0)
    with pytest.raises(ValueError, match="rebalance_weights"):
        ledger.units_for_exposure(0.5, 100.0)
    with pytest.raises(ValueError, match=r"asset must be an index in \[0, 2\), got 2"):
        ledger.trade(1.0, 100.0, asset=2)
    with pytest.raises(ValueError, match="fee_rate needs one rate per asset"):
        Ledger(fee_rate=[0.001], n_assets=2)
    with pytest.raises(ValueError, match="slippage must be a fraction"):
        Ledger(slippage=[0.0, 1.5], n_assets=2)
    with pytest.raises(ValueError, match="n_assets must be an integer >= 1"):
        Ledger(n_assets=0)


def test_rebalance_weights_sells_first_and_never_borrows_long_only() -> None:
    ledger = Ledger(1000.0, fee_rate=0.01, slippage=0.0, allow_short=False, n_assets=2)
    assert ledger.rebalance_weights([0.5, 0.5], [10.0, 20.0], bar=1) == 2
    # Both buys together would cost 1000 * 1.01 > 1000 of cash: scaled down by 1 / 1.01.
    assert ledger.positions == pytest.approx([50.0 / 1.01, 25.0 / 1.01])
    assert ledger.cash == pytest.approx(0.0, abs=1e-9)
    # Rotate everything into asset 1: the sell of asset 0 is filled first and pays for the buy.
    equity = ledger.equity([10.0, 20.0])
    ledger.rebalance_weights([0.0, 1.0], [10.0, 20.0], bar=2)
    sell, buy = ledger.fills[-2:]
    assert (sell.asset, sell.side, buy.asset, buy.side) == (0, -1, 1, 1)
    assert ledger.position == 0.0 and ledger.cash >= 0.0
    cash_after_sell = 50.0 / 1.01 * 10.0 * 0.99
    assert ledger.positions[1] == pytest.approx(25.0 / 1.01 + cash_after_sell / (20.0 * 1.01))
    fees = 50.0 / 1.01 * 10.0 * 0.01 + cash_after_sell / 1.01 * 0.01
    assert ledger.equity([10.0, 20.0]) == pytest.approx(equity - fees)
    # Assets not flagged keep their units.
    ledger.rebalance_weights([0.5, 0.0], [10.0, 20.0], bar=3, trade=[True, False])
    assert ledger.fills[-1].asset == 0 and ledger.positions[1] > 0


def test_rebalance_weights_long_short_hits_the_weights_by_hand() -> None:
    ledger = Ledger(1000.0, fee_rate=0.0, slippage=0.001, n_assets=2)
    ledger.rebalance_weights([1.2, -0.4], [10.0, 50.0])
    assert ledger.positions == pytest.approx([1200.0 / 10.01, -400.0 / 49.95])
    assert ledger.cash == pytest.approx(1000.0 - 1200.0 + 400.0)  # borrows 200, the short raises 400


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
            st.lists(st.floats(0.5, 2.0), min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=8,
    ),
    fee=st.floats(0.0, 0.01),
    slippage=st.floats(0.0, 0.01),
)
def test_multi_asset_conservation(steps: list, fee: float, slippage: float) -> None:
    """Long-only random rebalances: cash never negative, and equity = initial cash + PnL of every
    fill marked at the last prices - fees (nothing created or lost by the bookkeeping)."""
    ledger = Ledger(1000.0, fee_rate=fee, slippage=slippage, allow_short=False, n_assets=3)
    prices = [10.0, 20.0, 30.0]
    for raw, moves in steps:
        total = sum(raw) + 1.0
        weights = [w / total for w in raw]
        ledger.rebalance_weights(weights, prices)
        assert ledger.cash >= -1e-9 and min(ledger.positions) >= 0.0
        prices = [p * m for p, m in zip(prices, moves, strict=True)]
    cash_flow = sum(-f.side * f.units * f.price for f in ledger.fills)
    marked = sum(q * p for q, p in zip(ledger.positions, prices, strict=True))
    assert ledger.equity(prices) == pytest.approx(1000.0 + cash_flow - ledger.fees_paid + marked, rel=1e-9, abs=1e-6)
