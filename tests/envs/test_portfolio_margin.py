"""CryptoPortfolio-v0 as a perpetual-futures book: initial margin, liquidation of a long/short book inside a bar
and through a gap, the liquidation fee and taker fees, per-asset funding from data at its own times, the
long-only default left as it was, no look-ahead, and the backtest held flat after a liquidation."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import WHOLE_WALK, quiet_bars, record_walk

import sb3_crypto  # noqa: F401
from sb3_crypto.data import DataError
from sb3_crypto.envs.ledger import Ledger
from sb3_crypto.envs.margin import FundingCoverageWarning, MarginRules, equity, gross_notional
from sb3_crypto.envs.portfolio import CryptoPortfolioEnv

N = 40


frame = quiet_bars  # hourly bars near 100 with small moves (tests.helpers)


def panel(n: int = N, assets: int = 2) -> dict[str, pd.DataFrame]:
    return {f"A{k:02d}": frame(n, seed=k) for k in range(assets)}


def make(data: dict[str, pd.DataFrame], **kwargs: Any) -> CryptoPortfolioEnv:
    settings = {
        **WHOLE_WALK,
        "dead_band": 0.5,  # one order to open the book, then hold
        "allow_short": True,
        "max_gross_leverage": 10.0,
        **kwargs,
    }
    return CryptoPortfolioEnv(data, **settings)


def weights(env: CryptoPortfolioEnv, *assets: float) -> np.ndarray:
    """The action of asset weights ``assets`` (long/short: the action is the weight / max_gross_leverage)."""
    return np.array([0.0, *assets], dtype=np.float64) / env.max_gross_leverage


def set_bar(data: dict[str, pd.DataFrame], asset: str, row: int, **values: float) -> None:
    frame = data[asset]
    for column, value in values.items():
        frame.iloc[row, frame.columns.get_loc(column)] = value


BOOK = {"long": (6.0, 0.0), "short": (0.0, -6.0), "long_short": (5.0, -4.0)}


# ---------------------------------------------------------------------------------------------- liquidation
@pytest.mark.parametrize("book", list(BOOK))
def test_liquidation_inside_a_bar_fills_at_the_liquidation_prices(book: str) -> None:
    """Bar t + 2 opens normally; its adverse extremes (low of the long, high of the short) go twice as far
    as the move that meets maintenance: the book is closed at the prices where equity meets it, by hand."""
    fee, slippage, mm, lf = 0.0004, 0.0002, 0.006, 0.003
    kwargs = {"fee": fee, "slippage": slippage, "maintenance_margin": mm, "liquidation_fee": lf}
    data = panel()
    probe = make(data, **kwargs)
    _, info = probe.reset(seed=0)
    t = info["bar"]
    probe.step(weights(probe, *BOOK[book]))
    cash, held = probe.ledger.cash, probe.ledger.positions
    opens = [data[a]["close"].iloc[t + 1] for a in data]  # bar t + 2 opens at the previous close
    # equity - requirement at the opens, and its slope as prices move by a fraction d against each side
    at_open = cash + sum(q * o - mm * abs(q) * o for q, o in zip(held, opens))
    assert at_open > 0.0
    exposure = sum(abs(q) * o * (1.0 - math.copysign(mm, q)) for q, o in zip(held, opens) if q)
    d = 2.0 * at_open / exposure  # the extremes are twice the move that meets maintenance
    assert 0.0 < d < 0.5
    moved = copy(data)
    for k, (asset, q) in enumerate(zip(data, held)):
        o = opens[k]
        extreme = o * (1.0 - d) if q > 0 else o * (1.0 + d) if q < 0 else o
        set_bar(moved, asset, t + 2, open=o, low=min(o, extreme), high=max(o, extreme), close=o)
    env = make(moved, **kwargs)
    env.reset(seed=0)
    env.step(weights(env, *BOOK[book]))
    assert env.ledger.positions == held and env.ledger.cash == cash
    fees_before, fills_before = env.ledger.fees_paid, env.ledger.n_trades
    _, reward, terminated, truncated, info = env.step(weights(env, *BOOK[book]))
    assert terminated and not truncated and info["liquidated"]
    event = info["liquidation"]
    assert event["reason"] == "maintenance" and event["bar"] == t + 2
    assert event["fraction"] == pytest.approx(0.5, rel=1e-9)
    # by hand: halfway to the extremes, each position closed by a market order there
    prices = [o * (1.0 - d / 2) if q > 0 else o * (1.0 + d / 2) if q < 0 else o for q, o in zip(held, opens)]
    np.testing.assert_allclose(event["prices"], prices, rtol=1e-12)
    assert equity(cash, held, prices) == pytest.approx(mm * gross_notional(held, prices), rel=1e-9)
    if sum(1 for q in held if q) == 1:  # one position: the trading env's closed-form liquidation price
        k = next(k for k, q in enumerate(held) if q)
        assert prices[k] == pytest.approx(env.margin.liquidation_price(cash, held[k]), rel=1e-9)
    fills = [p * (1.0 - math.copysign(slippage, q)) for q, p in zip(held, prices) if q]
    notionals = [abs(q) * p for q, p in zip([q for q in held if q], fills)]
    taker = fee * sum(notionals)
    liquidation_fee = lf * sum(notionals)
    left = cash + sum(q * p for q, p in zip([q for q in held if q], fills)) - taker
    np.testing.assert_allclose(event["fill_prices"][[q != 0 for q in held]], fills, rtol=1e-12)
    assert event["fee"] == pytest.approx(taker, rel=1e-12)
    assert event["notional"] == pytest.approx(sum(notionals), rel=1e-12)
    assert event["liquidation_fee"] == pytest.approx(liquidation_fee, rel=1e-12)
    assert info["equity"] == pytest.approx(left - liquidation_fee, rel=1e-9) == event["equity"]
    assert info["equity"] > 0.0  # inside the bar: what maintenance held, less the closing costs
    assert env.ledger.fees_paid - fees_before == pytest.approx(taker + liquidation_fee, rel=1e-12)
    assert info["fees"] == pytest.approx(taker + liquidation_fee, rel=1e-12)
    assert env.ledger.n_trades - fills_before == sum(1 for q in held if q)  # the step's order was never sent
    assert env.ledger.positions == [0.0, 0.0] and info["weights"].tolist() == [1.0, 0.0, 0.0]
    previous = cash + sum(q * o for q, o in zip(held, opens))  # the close of t + 1 is the open of t + 2
    assert reward == pytest.approx(math.log(info["equity"] / previous), rel=1e-9)
    assert info["asset_pnl"].sum() == pytest.approx(info["equity"] - previous, rel=1e-9)
    with pytest.raises(RuntimeError, match="terminated"):
        env.step(weights(env, *BOOK[book]))


def copy(data: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {asset: frame.copy() for asset, frame in data.items()}


@pytest.mark.parametrize("book", list(BOOK))
def test_a_gap_through_maintenance_fills_at_the_opens_never_a_better_price(book: str) -> None:
    data = panel()
    probe = make(data)
    _, info = probe.reset(seed=0)
    t = info["bar"]
    probe.step(weights(probe, *BOOK[book]))
    cash, held = probe.ledger.cash, probe.ledger.positions
    rules = probe.margin
    gapped = copy(data)
    opens = []
    for asset, q in zip(data, held):
        o = float(data[asset]["close"].iloc[t + 1]) * (0.75 if q > 0 else 1.25 if q < 0 else 1.0)
        opens.append(o)
        set_bar(gapped, asset, t + 2, open=o, low=o * 0.99, high=o * 1.01, close=o)
    assert rules.breached(cash, held, opens)  # the opens are already beyond maintenance
    env = make(gapped)
    env.reset(seed=0)
    env.step(weights(env, *BOOK[book]))
    _, reward, terminated, _, info = env.step(weights(env, -2.0, 2.0))  # this order is never sent
    event = info["liquidation"]
    assert terminated and info["liquidated"] and event["reason"] == "gap" and event["fraction"] == 0.0
    np.testing.assert_array_equal(event["prices"], opens)  # the opens the market gave
    # a better price (where equity meets maintenance) lies between the previous close and the open
    assert equity(cash, held, opens) < rules.requirement(held, opens)
    left = cash + sum(q * o for q, o in zip(held, opens))
    assert left < 0.0  # the gap took more than the margin
    assert event["liquidation_fee"] == 0.0  # nothing left to take it from
    assert info["equity"] == pytest.approx(left, rel=1e-12) and env.ledger.positions == [0.0, 0.0]
    assert reward == -20.0
    assert env.ledger.n_trades == 2 * sum(1 for q in held if q)  # opened, then liquidated


def test_the_liquidation_fee_never_takes_more_than_is_left() -> None:
    """A gap leaves equity at half the maintenance requirement: the fee (as large as the requirement)
    takes what is left and no more."""
    data = panel()
    probe = make(data)
    _, info = probe.reset(seed=0)
    t = info["bar"]
    probe.step(weights(probe, 6.0, 0.0))
    cash, (q, _) = probe.ledger.cash, probe.ledger.positions
    mm = probe.margin.maintenance_margin
    o = -cash / (q * (1.0 - 0.5 * mm))  # cash + q o = 0.5 mm q o
    gapped = copy(data)
    set_bar(gapped, "A00", t + 2, open=o, low=o, high=o * 1.01, close=o)
    env = make(gapped)
    env.reset(seed=0)
    env.step(weights(env, 6.0, 0.0))
    _, reward, terminated, _, info = env.step(weights(env, 6.0, 0.0))
    event = info["liquidation"]
    assert terminated and event["reason"] == "gap" and event["prices"][0] == o
    left = cash + q * o
    assert left == pytest.approx(0.5 * mm * q * o, rel=1e-9) and left < 0.005 * q * o
    assert event["liquidation_fee"] == pytest.approx(left, rel=1e-9)
    assert info["equity"] == pytest.approx(0.0, abs=1e-9) and reward == -20.0


def test_initial_margin_caps_the_gross_exposure_of_orders_that_add_risk() -> None:
    fee, slippage = 0.001, 0.0005
    data = panel()
    env = make(data, initial_margin=0.25, fee=fee, slippage=slippage, dead_band=0.0)
    assert env.margin == MarginRules(0.25, 0.005, 0.005)
    _, info = env.reset(seed=0)
    t = info["bar"]
    _, _, _, _, info = env.step(weights(env, 6.0, -4.0))  # gross 10, the initial margin allows 4
    opens = [float(data[a]["open"].iloc[t + 1]) for a in data]
    ledger = env.ledger
    gross = gross_notional(ledger.positions, opens)
    assert gross == pytest.approx(equity(ledger.cash, ledger.positions, opens) / 0.25, rel=1e-9)
    # scaled together to gross 4 (2.4 long, 1.6 short of the equity), the costs cut the last order a little
    values = np.array(ledger.positions) * opens
    assert values[1] == pytest.approx(-1.6 * 10_000 / (1.0 - slippage), rel=1e-9)  # the sell, first: uncut
    assert 0.98 * 2.4 * 10_000 < values[0] < 2.4 * 10_000  # the buy, last: cut by the costs paid
    np.testing.assert_allclose(info["target_weights"][1:], [2.4, -1.6], rtol=1e-6)
    # reductions are never cut, and fill before the orders that add risk: 6/-4 -> 1/+3 turns A01 long
    _, _, _, _, info = env.step(weights(env, 0.5, 3.0))
    fills = ledger.fills[2:]
    assert [(f.asset, f.side) for f in fills] == [(0, -1), (1, 1)]
    assert ledger.positions[0] > 0 < ledger.positions[1]
    # an initial margin below the maintenance margin, or a default one that is, is refused by name
    with pytest.raises(ValueError, match=r"initial_margin=0.1 \(1 / max_gross_leverage, max_gross_leverage=10.0\)"):
        make(data, maintenance_margin=0.2)
    with pytest.raises(
        ValueError,
        match=r"maintenance_margin must exceed a liquidation fill's own costs.*\(fee=0.004, slippage=0.001\)",
    ):
        make(data, fee=[0.001, 0.004], slippage=0.001, maintenance_margin=0.004)


# ---------------------------------------------------------------------------------------------- funding
def events(data: dict[str, pd.DataFrame], t: int) -> dict[str, pd.DataFrame]:
    """A00: one event at the end of bar t + 2 (charged at its close) and one inside bar t + 4 (at its
    open); A01: one inside bar t + 3; both: one before and one after the data (dropped)."""
    times = data["A00"].index
    hour = pd.Timedelta("1h")

    def table(rows: list[tuple[pd.Timestamp, float]]) -> pd.DataFrame:
        return pd.DataFrame({"timestamp": [r[0] for r in rows], "funding_rate": [r[1] for r in rows]})

    return {
        "A00": table(
            [
                (times[0] - hour, 0.4),
                (times[t + 3], 0.001),
                (times[t + 4] + 0.3 * hour, -0.002),
                (times[-1] + 2 * hour, 0.4),
            ]
        ),
        "A01": table([(times[0] - hour, 0.4), (times[t + 3] + 0.5 * hour, 0.003), (times[-1] + 2 * hour, 0.4)]),
    }


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_funding_per_asset_at_its_times_on_the_positions_held_then(side: float) -> None:
    data = panel()
    _, info = make(data).reset(seed=0)
    t = info["bar"]
    env = make(data, funding=events(data, t))
    assert {a: (f.events, f.before, f.after) for a, f in env.funding.items()} == {"A00": (2, 1, 1), "A01": (1, 1, 1)}
    env.reset(seed=0)
    ledger = env.ledger
    paid, positions, pnl = [], [], []
    for _ in range(6):  # long A00 and short A01 (side 1), or the other way round
        before = ledger.funding_paid
        equity_before = ledger.cash + sum(q * c for q, c in zip(ledger.positions, env.market.mark[env._t]))
        _, _, _, _, info = env.step(weights(env, 3.0 * side, -3.0 * side))
        paid.append(ledger.funding_paid - before)
        positions.append(ledger.positions)
        pnl.append((info["asset_pnl"].sum(), info["equity"] - equity_before))
    opens = {a: f["open"].to_numpy() for a, f in data.items()}
    closes = {a: f["close"].to_numpy() for a, f in data.items()}
    # step i holds bar t + 1 + i: A00's event at the end of bar t + 2 at its close, inside bar t + 4 at
    # its open; A01's inside bar t + 3 at its open
    assert paid[1] == pytest.approx(positions[1][0] * closes["A00"][t + 2] * 0.001, rel=1e-12)
    assert paid[2] == pytest.approx(positions[2][1] * opens["A01"][t + 3] * 0.003, rel=1e-12)
    assert paid[3] == pytest.approx(positions[3][0] * opens["A00"][t + 4] * -0.002, rel=1e-12)
    assert paid[0] == paid[4] == paid[5] == 0.0
    # positive rate: longs pay, shorts receive; negative rate: the other way round
    assert np.sign(paid[1]) == side and np.sign(paid[2]) == -side and np.sign(paid[3]) == -side
    assert ledger.funding_paid == pytest.approx(sum(paid), rel=1e-12)
    for total, change in pnl:  # funding is in each asset's PnL: they still sum to the change of equity
        assert total == pytest.approx(change, rel=1e-9, abs=1e-9)


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
def test_a_long_funding_file_with_an_asset_column_and_the_constant_fallback(tmp_path) -> None:
    data = panel(assets=3)
    _, info = make(data).reset(seed=0)
    t = info["bar"]
    by_asset = events(data, t)
    long = pd.concat([frame.assign(symbol=asset) for asset, frame in by_asset.items()], ignore_index=True)
    long = pd.concat(
        [long, pd.DataFrame({"timestamp": [data["A00"].index[5]], "funding_rate": [0.1], "symbol": ["XYZ"]})]
    )
    path = tmp_path / "funding.csv"
    long.to_csv(path, index=False)
    from_dict = make(data, funding=by_asset, funding_rate=0.0001)
    with pytest.warns(FundingCoverageWarning, match=r"no funding rows for A02; .*constant funding_rate"):
        from_file = make(data, funding=str(path), funding_rate=0.0001)
    assert from_file.settings["funding"] == str(path)  # a path: YAML-serialisable
    runs = []
    for env in (from_dict, from_file):
        env.reset(seed=0)
        paid = []
        for _ in range(5):
            before = env.ledger.funding_paid
            env.step(weights(env, 2.0, -2.0, -2.0))
            paid.append(env.ledger.funding_paid - before)
        runs.append((paid, env.ledger.positions))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-12)
    # A02 (no series) pays the constant on its absolute notional at every close; the others pay their events
    paid, held = runs[0]
    constant = abs(held[2]) * data["A02"]["close"].iloc[t + 1] * 0.0001
    assert paid[0] == pytest.approx(constant, rel=1e-9)
    assert paid[1] == pytest.approx(
        abs(held[2]) * data["A02"]["close"].iloc[t + 2] * 0.0001 + held[0] * data["A00"]["close"].iloc[t + 2] * 0.001,
        rel=1e-9,
    )


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
def test_bad_funding_is_named_by_asset_line_and_column(tmp_path) -> None:
    data = panel()
    path = tmp_path / "funding.csv"

    def load(text: str, **kwargs: Any) -> CryptoPortfolioEnv:
        path.write_text(text)
        return make(data, funding=str(path), **kwargs)

    good = "symbol,timestamp,funding_rate\nA00,2024-01-01T08:00:00Z,0.0001\nA01,2024-01-01T08:00:00Z,-0.0002\n"
    assert set(load(good).funding) == {"A00", "A01"}
    with pytest.raises(DataError, match=r"funding file .* \[A01\]: column 'funding_rate' has rate 2.0 at line 4"):
        load(
            "symbol,timestamp,funding_rate\nA00,2024-01-01T08:00:00Z,0.0001\nA01,2024-01-01T07:00:00Z,0\nA01,2024-01-01T08:00:00Z,2\n"
        )
    with pytest.raises(DataError, match=r"\[A00\]: column 'timestamp': line 3 .* is earlier than line 2"):
        load("symbol,timestamp,funding_rate\nA00,2024-01-01T08:00:00Z,0.0001\nA00,2024-01-01T07:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"column 'symbol' has no asset name at line 3"):
        load("symbol,timestamp,funding_rate\nA00,2024-01-01T08:00:00Z,0.0001\n,2024-01-01T09:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"no asset column .*columns are \['timestamp', 'funding_rate'\]"):
        load("timestamp,funding_rate\n2024-01-01T08:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"column 'symbol' names none of the assets \(A00, A01\); it names 'BTC'"):
        load("symbol,timestamp,funding_rate\nBTC,2024-01-01T08:00:00Z,0.0001\n")
    with pytest.raises(ValueError, match=r"funding covers every asset, so funding_rate=0.0001 would charge nothing"):
        load(good, funding_rate=0.0001)
    with pytest.raises(DataError, match=r"funding: 'BTC' is not an asset of this env; the assets are A00, A01"):
        make(data, funding={"A00": str(path), "BTC": str(path)})
    with pytest.raises(DataError, match=r"funding\['A01'\]: .*missing.csv: file not found"):
        make(data, funding={"A01": str(tmp_path / "missing.csv")})
    with pytest.raises(TypeError, match=r"funding: a single series of rates is one asset's"):
        make(data, funding=pd.Series([1e-4], index=data["A00"].index[:1]))
    with pytest.raises(TypeError, match=r"funding must be a funding file path, a dict"):
        make(data, funding=[0.0001])


# ---------------------------------------------------------------------------------------------- defaults
def test_the_long_only_default_is_the_plain_ledger_with_no_margin_or_funding() -> None:
    """Long-only without margin keywords: no margin, no funding, and the rewards of a fixed action sequence
    are those of the bare multi-asset Ledger rebalancing at the next opens (nothing else charged)."""
    kwargs = {"synthetic_kwargs": {"n_assets": 3, "n_bars": 300}, "window_size": 8, "episode_length": 60}
    env = CryptoPortfolioEnv(**kwargs)
    assert env.margin is None and not env._perp and env.funding == {}
    assert CryptoPortfolioEnv(**kwargs, allow_short=True).margin == MarginRules(1.0, 0.005, 0.005)  # shorts: margin
    rng = np.random.default_rng(7)
    actions = [rng.uniform(-1, 1, 4).astype(np.float32) for _ in range(60)]
    _, info = env.reset(seed=3)
    market = env.market
    ledger = Ledger(10_000.0, 0.001, 0.0005, allow_short=False, n_assets=3)
    held = np.array([1.0, 0.0, 0.0, 0.0])
    previous = 10_000.0
    for action in actions:
        t = info["bar"]
        target = env.weights_for(action)
        change = np.abs(target[1:] - held[1:])
        orders = (change >= 0.01) & (change > 0.0)
        ledger.rebalance_weights(target[1:].tolist(), market.open[t + 1].tolist(), t + 1, orders.tolist())
        value = np.array(ledger.positions) * market.close[t + 1]
        now = ledger.cash + value.sum()
        _, reward, terminated, truncated, info = env.step(action)
        assert reward == math.log(now / previous) and info["equity"] == now
        held, previous = np.concatenate(([ledger.cash / now], value / now)), now
        if terminated or truncated:
            break
    assert truncated and ledger.funding_paid == env.ledger.funding_paid == 0.0
    # margin keywords in long-only mode: margin applies but never binds (nothing is borrowed)
    margined = CryptoPortfolioEnv(**kwargs, maintenance_margin=0.01)
    assert margined.margin == MarginRules(1.0, 0.01, 0.005)
    margined.reset(seed=3)
    for action in actions:
        _, reward, terminated, truncated, _ = margined.step(action)
        if terminated or truncated:
            break
    assert margined.ledger.fills == env.ledger.fills and not terminated


# ---------------------------------------------------------------------------------------------- look-ahead
@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
@pytest.mark.parametrize("k", [15, 24])
def test_perturbing_one_asset_after_k_changes_nothing_before_k(k: int) -> None:
    """A01 crashes from bar k on in one copy (the book is long A01: liquidated there, not before); margin,
    funding of both assets and liquidation read nothing after the bar stepped through."""
    data = panel(60)
    crashed = copy(data)
    crashed["A01"].iloc[k:, :4] = crashed["A01"].iloc[k:, :4].to_numpy() * 0.6
    start = data["A00"].index[0] + pd.Timedelta("30min")
    hours = pd.date_range(start, data["A00"].index[-1], freq="90min")  # inside and on bar ends
    funding = {
        a: pd.Series(np.random.default_rng(s).normal(0.0, 0.001, len(hours)), index=hours) for s, a in enumerate(data)
    }
    rng = np.random.default_rng(0)
    actions = [np.array([0.0, rng.uniform(-0.4, 0.2), rng.uniform(0.5, 0.8)]) for _ in range(60)]
    runs = []
    for bars in (data, crashed):
        env = make(bars, fee=0.0005, slippage=0.0002, funding=funding, dead_band=0.05)
        runs.append(record_walk(env, actions))
    a, b = runs
    before = [i for i, (_, _, info) in enumerate(a) if info["bar"] < k]
    assert len(before) > 8
    for i in before:
        np.testing.assert_array_equal(a[i][0], b[i][0])
        assert a[i][1] == b[i][1]
        assert a[i][2]["equity"] == b[i][2]["equity"] and a[i][2]["cash"] == b[i][2]["cash"]
        np.testing.assert_array_equal(a[i][2]["asset_pnl"], b[i][2]["asset_pnl"])
    liquidated = [info for _, _, info in b if info.get("liquidated")]
    assert liquidated and liquidated[0]["bar"] == k and liquidated[0]["liquidation"]["reason"] == "gap"
    assert not any(info.get("liquidated") for _, _, info in a)


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
def test_check_env_with_margin_and_funding() -> None:
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    data = panel()
    rates = pd.Series(1e-4, index=pd.date_range(data["A00"].index[0], data["A00"].index[-1], freq="8h"))
    env = make(data, funding={"A00": rates, "A01": rates}, fee=0.001, slippage=0.0005, max_gross_leverage=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env)


def test_a_liquidated_portfolio_backtest_stays_flat_to_the_end_of_the_pass() -> None:
    from sb3_crypto.evaluation.rollout import run_policy

    data = panel(80)
    crash = 40
    for asset in data:  # both gap down 20 %: a 6x long book is liquidated at the open of the crash
        data[asset].iloc[crash:, :4] = data[asset].iloc[crash:, :4].to_numpy() * 0.8
    env = make(data, max_gross_leverage=6.0)
    action = np.array([0.0, 0.5, 0.5])
    result = run_policy(lambda obs: action, env)
    ended = result.extra["ended"]
    assert ended == {"bar": crash, "liquidated": True}
    start = env.first_bar
    total = len(data["A00"]) - start  # the reset's bar, then every bar to the last
    assert len(result.equity) == len(result.timestamps) == len(result.extra["close"]) == total
    assert result.timestamps[-1] == data["A00"].index[-1]
    tail = result.equity[crash - start :]
    assert np.all(tail == tail[0]) and tail[0] < 0.0  # flat after the liquidation (a gap: ruined)
    np.testing.assert_array_equal(result.extra["close"][-1], [data[a]["close"].iloc[-1] for a in data])


def test_random_books_only_a_gap_leaves_equity_below_zero() -> None:
    """Volatile bars with gaps, random leveraged long/short books: a liquidation inside a bar leaves equity
    >= 0, and every bar that did not liquidate kept maintenance with each position at its adverse extreme."""
    reasons = set()
    capped = 0
    rng = np.random.default_rng(0)
    n = 120
    data = {}
    common = rng.normal(0.0, 0.1, n)  # gaps the assets share: they hit a book's net exposure
    for k in range(3):
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.05, n)))
        open_ = np.concatenate(([100.0], close[:-1])) * np.exp(common + rng.normal(0.0, 0.02, n))  # gaps
        wick = np.exp(np.abs(rng.normal(0.0, 0.05, (2, n))))
        bars = frame(n, seed=k)
        bars.iloc[:, :4] = np.column_stack(
            (open_, np.maximum(open_, close) * wick[0], np.minimum(open_, close) / wick[1], close)
        )
        data[f"A{k:02d}"] = bars
    for episode in range(12):
        env = make(data, max_gross_leverage=float(rng.uniform(5, 10)), fee=0.0005, slippage=0.0003, dead_band=0.1)
        env.reset(seed=episode)
        rules, ledger = env.margin, env.ledger
        held = ledger.positions
        while True:
            _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4))
            bar = info["bar"]
            if info.get("liquidated"):
                reasons.add(info["liquidation"]["reason"])
                if info["liquidation"]["reason"] == "maintenance":
                    assert info["equity"] >= -1e-9
            elif any(ledger.positions):
                worst = [
                    data[a]["low"].iloc[bar] if q > 0 else data[a]["high"].iloc[bar]
                    for a, q in zip(data, ledger.positions)
                ]
                assert not rules.breached(ledger.cash, ledger.positions, worst)
                opens = [data[a]["open"].iloc[bar] for a in data]
                added = any(abs(q) > abs(p) * (1 + 1e-12) for q, p in zip(ledger.positions, held))
                if added:  # an order added risk: within the initial margin at the fills' opens, after costs
                    limit = equity(ledger.cash, ledger.positions, opens) / rules.initial_margin
                    assert gross_notional(ledger.positions, opens) <= limit * (1 + 1e-9)
                    capped += 1
            held = ledger.positions
            if terminated or truncated:
                break
    assert reasons == {"gap", "maintenance"} and capped > 20  # both kinds happened: the test has teeth
