"""Perpetual-futures realism: margin, liquidation (inside a bar and through a gap), the liquidation fee
and funding from data, checked by hand computation on hand-made bars, plus no look-ahead."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import WHOLE_WALK, quiet_bars, record_walk

import sb3_crypto  # noqa: F401
from sb3_crypto.data import DataError
from sb3_crypto.envs.margin import FundingCoverageWarning, FundingSeries, MarginRules
from sb3_crypto.envs.trading import CryptoTradingEnv

N = 40


frame = quiet_bars  # hourly bars near 100 with small moves (tests.helpers)


def make(data: pd.DataFrame, **kwargs) -> CryptoTradingEnv:
    settings = {**WHOLE_WALK, "dead_band": 0.99, **kwargs}  # dead band: one order to open, then hold
    return CryptoTradingEnv(data, **settings)


def step(env: CryptoTradingEnv, value: float) -> tuple[np.ndarray, float, bool, bool, dict]:
    return env.step(np.array([value], dtype=np.float32))


def set_bar(data: pd.DataFrame, row: int, *, open_: float, low: float, high: float, close: float) -> None:
    data.iloc[row, :4] = [open_, high, low, close]


# ---------------------------------------------------------------------------------------------- liquidation
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_liquidation_inside_a_bar_fills_at_the_liquidation_price(side: float) -> None:
    fee, slippage, mm, lf = 0.0004, 0.0002, 0.005, 0.003
    data = frame()
    env = make(data, leverage=10, fee=fee, slippage=slippage, maintenance_margin=mm, liquidation_fee=lf)
    _, info = env.reset(seed=0)
    t = info["bar"]
    ledger = env.ledger
    step(env, side)  # opens ~10x at the open of t + 1
    cash, position = ledger.cash, ledger.position
    assert abs(position) * data["open"].iloc[t + 1] == pytest.approx(10 * 10_000, rel=0.01)
    liq = cash / (position * (mm - 1.0)) if side > 0 else cash / (-position * (1.0 + mm))
    assert liq == pytest.approx(env.margin.liquidation_price(cash, position), rel=1e-12)
    # bar t + 2 opens normally and its adverse extreme goes 5 % beyond the liquidation price
    o = float(data["close"].iloc[t + 1])
    assert (o > liq) if side > 0 else (o < liq)
    extreme = liq * (0.95 if side > 0 else 1.05)
    data = data.copy()
    set_bar(data, t + 2, open_=o, low=min(o, extreme), high=max(o, extreme), close=o)
    env = make(data, leverage=10, fee=fee, slippage=slippage, maintenance_margin=mm, liquidation_fee=lf)
    env.reset(seed=0)
    step(env, side)
    ledger = env.ledger
    fees_before = ledger.fees_paid
    _, reward, terminated, truncated, info = step(env, side)
    assert terminated and not truncated and info["liquidated"]
    event = info["liquidation"]
    assert event["reason"] == "maintenance" and event["bar"] == t + 2
    assert event["price"] == pytest.approx(liq, rel=1e-12)
    # by hand: a market order at the liquidation price, taker fee, then the liquidation fee
    fill = liq * (1.0 - side * slippage)
    taker = abs(position) * fill * fee
    cash_after = cash + position * fill - taker
    liquidation_fee = lf * abs(position) * fill
    assert event["fill_price"] == pytest.approx(fill, rel=1e-12)
    assert event["fee"] == pytest.approx(taker, rel=1e-12)
    assert event["liquidation_fee"] == pytest.approx(liquidation_fee, rel=1e-12)
    assert info["equity"] == pytest.approx(cash_after - liquidation_fee, rel=1e-9)
    assert ledger.fees_paid - fees_before == pytest.approx(taker + liquidation_fee, rel=1e-12)
    assert ledger.position == 0.0 and info["exposure"] == 0.0
    assert info["equity"] > 0.0  # no gap: liquidation leaves what maintenance held, less its costs
    assert reward == pytest.approx(math.log(info["equity"] / (cash + position * o)), rel=1e-9)
    with pytest.raises(RuntimeError, match="terminated"):
        step(env, side)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_a_gap_through_the_liquidation_price_fills_at_the_open(side: float) -> None:
    data = frame()
    env = make(data, leverage=10)
    _, info = env.reset(seed=0)
    t = info["bar"]
    step(env, side)
    cash, position = env.ledger.cash, env.ledger.position
    liq = env.margin.liquidation_price(cash, position)
    gap = liq * (0.8 if side > 0 else 1.2)  # the bar opens 20 % beyond the liquidation price
    data = data.copy()
    set_bar(data, t + 2, open_=gap, low=gap * 0.99, high=gap * 1.01, close=gap)
    env = make(data, leverage=10)
    env.reset(seed=0)
    step(env, side)
    _, reward, terminated, _, info = step(env, side)
    event = info["liquidation"]
    assert terminated and info["liquidated"] and event["reason"] == "gap"
    assert event["price"] == gap  # the open the market gave, not the better liquidation price
    assert (event["price"] < liq) if side > 0 else (event["price"] > liq)
    equity = cash + position * gap
    assert equity < 0.0  # the gap took more than the margin
    assert event["liquidation_fee"] == 0.0  # nothing left to take it from
    assert info["equity"] == pytest.approx(equity, rel=1e-12) and env.ledger.position == 0.0
    assert reward == -20.0  # ruin
    assert env.ledger.n_trades == 2  # the order of the gapped step was not sent


def test_no_liquidation_without_leverage_or_margin_keywords() -> None:
    env = make(frame(), leverage=1.0)
    assert env.margin is None and not env._perp
    env = make(frame(), leverage=1.0, maintenance_margin=0.01)
    assert env.margin == MarginRules(1.0, 0.01, 0.005)
    assert make(frame(), leverage=4).margin == MarginRules(0.25, 0.005, 0.005)


def test_initial_margin_caps_the_order() -> None:
    data = frame()
    fee, slippage = 0.001, 0.0005
    env = make(data, leverage=10, initial_margin=0.25, fee=fee, slippage=slippage)
    _, info = env.reset(seed=0)
    t = info["bar"]
    step(env, 1.0)  # asks for 10x, the initial margin allows 4x
    ledger = env.ledger
    o = float(data["open"].iloc[t + 1])
    notional = ledger.position * o
    equity = ledger.cash + notional
    assert notional == pytest.approx(equity / 0.25, rel=1e-12)
    # by hand: u units at o (1 + s) with the fee leave equity E - u o (s + f (1 + s)) = u o * 0.25
    units = 10_000.0 / (o * (0.25 + slippage + fee * (1 + slippage)))
    assert ledger.position == pytest.approx(units, rel=1e-12)
    # a reduction is never cut
    rules = env.margin
    assert rules.cap_units(ledger.cash, (ledger.position,), (o,), 0, -units / 2, slippage=slippage, fee=fee) == (
        -units / 2
    )


def test_liquidation_prices_of_a_book_of_several_positions() -> None:
    rules = MarginRules(0.2, 0.01, 0.0)
    cash, positions = -10_000.0, (300.0, -50.0)  # long 300 @ 100, short 50 @ 200: equity 10,000
    opens, lows, highs = (100.0, 200.0), (70.0, 190.0), (105.0, 260.0)
    found = rules.liquidation(cash, positions, opens, lows, highs)
    assert found is not None and not found.gapped and 0.0 < found.fraction < 1.0
    equity = cash + sum(q * p for q, p in zip(positions, found.prices))
    assert equity == pytest.approx(rules.requirement(positions, found.prices), rel=1e-12)
    assert found.prices[0] < opens[0] and found.prices[1] > opens[1]  # each moved against its side
    assert rules.liquidation(cash, positions, opens, opens, opens) is None
    gapped = rules.liquidation(cash, positions, (60.0, 200.0), (60.0, 200.0), (60.0, 200.0))
    assert gapped is not None and gapped.gapped and gapped.prices == (60.0, 200.0)
    # one asset: the same as the closed form
    single = rules.liquidation(-9_000.0, (100.0,), (100.0,), (50.0,), (100.0,))
    assert single is not None and single.prices[0] == pytest.approx(rules.liquidation_price(-9_000.0, 100.0))
    # the closed form the env steps with agrees with the book's, for longs and shorts, gaps or not
    rng = np.random.default_rng(1)
    for _ in range(200):
        cash, position = rng.uniform(-20_000, 30_000), rng.uniform(-150, 150)
        o = rng.uniform(80, 120)
        low, high = o * rng.uniform(0.7, 1.0), o * rng.uniform(1.0, 1.3)
        book = rules.liquidation(cash, (position,), (o,), (low,), (high,))
        one = rules.liquidation_of_one(cash, position, o, low, high)
        assert (book is None) == (one is None)
        if one is not None:
            assert one[0] == pytest.approx(book.prices[0], rel=1e-9) and one[1] == book.gapped


# ---------------------------------------------------------------------------------------------- funding
def funding_frame(data: pd.DataFrame, events: list[tuple[pd.Timestamp, float]]) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": [e[0] for e in events], "funding_rate": [e[1] for e in events]})


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_funding_is_charged_at_its_times_on_the_position_held_then(side: float) -> None:
    data = frame()
    probe = make(data)
    _, info = probe.reset(seed=0)
    t = info["bar"]
    times = data.index
    hour = pd.Timedelta("1h")
    events = [
        (times[0] - hour, 0.5),  # before the data: dropped
        (times[t + 3], 0.001),  # the end of bar t + 2 (its close), still on the first position
        (times[t + 4] + pd.Timedelta("20min"), -0.002),  # inside bar t + 4: its open, the flipped position
        (times[-1] + 5 * hour, 0.5),  # after the data: dropped
    ]
    env = make(data, allow_short=True, funding=funding_frame(data, events), dead_band=0.5)
    assert (env.funding.events, env.funding.before, env.funding.after) == (2, 1, 1)
    env.reset(seed=0)
    ledger = env.ledger
    paid = []
    positions = []
    for action in (side, side, -side, -side, -side, -side):
        before = ledger.funding_paid
        step(env, action)
        paid.append(ledger.funding_paid - before)
        positions.append(ledger.position)
    opens, closes = data["open"].to_numpy(), data["close"].to_numpy()
    # steps 0..5 hold bars t + 1 .. t + 6; the position of step 2 (bar t + 3) was filled at T[t + 3],
    # after the event at T[t + 3], which is charged on the position held through bar t + 2
    assert paid[1] == pytest.approx(positions[1] * closes[t + 2] * 0.001, rel=1e-12)
    assert paid[3] == pytest.approx(positions[3] * opens[t + 4] * -0.002, rel=1e-12)
    assert paid[0] == paid[2] == paid[4] == paid[5] == 0.0
    assert np.sign(positions[1]) == side and np.sign(positions[3]) == -side
    # positive rate: longs pay, shorts receive; negative rate: the other way round
    assert np.sign(paid[1]) == side and np.sign(paid[3]) == side
    assert ledger.funding_paid == pytest.approx(paid[1] + paid[3], rel=1e-12)


def test_constant_funding_rate_stays_the_fallback() -> None:
    data = frame()
    for kwargs in ({}, {"leverage": 2}):
        env = make(data, funding_rate=0.0001, **kwargs)
        assert env.funding is None
        _, info = env.reset(seed=0)
        t = info["bar"]
        ledger = env.ledger
        for k in range(4):
            cash = ledger.cash
            step(env, -1.0)  # short: a constant funding rate is a cost on |notional| either way
            if k:
                assert cash - ledger.cash == pytest.approx(
                    abs(ledger.position) * data["close"].iloc[t + 1 + k] * 0.0001, rel=1e-9
                )
    with pytest.raises(ValueError, match=r"funding .* or funding_rate .* not both"):
        make(data, funding_rate=0.0001, funding=funding_frame(data, [(data.index[10], 0.001)]))


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
def test_bad_funding_files_are_named_by_line_and_column(tmp_path) -> None:
    data = frame()
    path = tmp_path / "funding.csv"

    def load(text: str) -> CryptoTradingEnv:
        path.write_text(text)
        return make(data, funding=str(path))

    good = "timestamp,funding_rate\n2024-01-01T08:00:00Z,0.0001\n2024-01-01T16:00:00Z,-0.0002\n"
    env = load(good)
    assert env.funding.events == 2 and env.funding.at_open.sum() + env.funding.at_close.sum() == pytest.approx(-1e-4)
    assert env.settings["funding"] == str(path)  # a path: YAML-serialisable
    with pytest.raises(DataError, match=r"line 3 .*repeats the time .* of line 2"):
        load("timestamp,funding_rate\n2024-01-01T08:00:00Z,0.0001\n2024-01-01T08:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"'timestamp': line 3 \(.*\) is earlier than line 2"):
        load("timestamp,funding_rate\n2024-01-01T16:00:00Z,0.0001\n2024-01-01T08:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"column 'funding_rate' has a non-numeric or non-finite rate 'x' at line 3"):
        load("timestamp,funding_rate\n2024-01-01T08:00:00Z,0.0001\n2024-01-01T16:00:00Z,x\n")
    with pytest.raises(DataError, match=r"column 'funding_rate' has a missing rate .* at line 2"):
        load("timestamp,funding_rate\n2024-01-01T08:00:00Z,\n2024-01-01T16:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"column 'funding_rate' has rate 2.0 at line 2"):
        load("timestamp,funding_rate\n2024-01-01T08:00:00Z,2\n")
    with pytest.raises(DataError, match=r"column 'timestamp' has an unparseable time 'soon' at line 2"):
        load("timestamp,funding_rate\nsoon,0.0001\n")
    with pytest.raises(DataError, match=r"no funding rate column .*columns are \['timestamp', 'price'\]"):
        load("timestamp,price\n2024-01-01T08:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"none of its 1 funding times .* falls on the bars"):
        load("timestamp,funding_rate\n2023-01-01T08:00:00Z,0.0001\n")
    with pytest.raises(DataError, match=r"funding: .*missing.csv: file not found"):
        make(data, funding=str(tmp_path / "missing.csv"))
    with pytest.raises(TypeError, match="funding must be a funding file path"):
        make(data, funding=[0.0001])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FundingCoverageWarning)
        with pytest.raises(FundingCoverageWarning, match="charged no funding"):
            load("fundingTime,fundingRate\n1704096000000,0.0001\n")  # Binance's columns, epoch ms; 08:00 only


def test_funding_series_on_daily_bars_prices_inside_at_the_open_and_at_the_end_at_the_close() -> None:
    starts = pd.date_range("2024-01-01", periods=3, freq="1D", tz="UTC")
    times = pd.date_range("2024-01-01 08:00", periods=6, freq="8h", tz="UTC")  # 08, 16, 00, 08, 16, 00
    series = FundingSeries.load(pd.Series(np.arange(1, 7) * 1e-4, index=times))
    laid = series.on_bars(starts)
    np.testing.assert_allclose(laid.at_open, [3e-4, 9e-4, 0.0])
    np.testing.assert_allclose(laid.at_close, [3e-4, 6e-4, 0.0])
    assert (laid.events, laid.before, laid.after) == (6, 0, 0)


# ---------------------------------------------------------------------------------------------- look-ahead
@pytest.mark.parametrize("k", [15, 22, 30])
def test_no_look_ahead_in_margin_funding_or_liquidation(k: int) -> None:
    """Bars from k on crash in one copy (liquidating there): everything before bar k is identical."""
    data = frame(60, seed=3)
    crashed = data.copy()
    crashed.iloc[k:, :4] = crashed.iloc[k:, :4].to_numpy() * 0.7
    hours = pd.date_range(data.index[0] + pd.Timedelta("30min"), data.index[-1], freq="90min")  # inside and on bar ends
    rates = pd.Series(np.random.default_rng(k).normal(0.0, 0.001, len(hours)), index=hours)
    rng = np.random.default_rng(0)
    actions = rng.uniform(0.6, 1.0, 60)  # long 4.8x to 8x: a 30 % crash liquidates
    runs = []
    for bars in (data, crashed):
        env = make(bars, leverage=8, fee=0.0005, slippage=0.0002, funding=rates, dead_band=0.05)
        runs.append(record_walk(env, (np.array([value], dtype=np.float32) for value in actions)))
    a, b = runs
    before = [i for i, (_, _, info) in enumerate(a) if info["bar"] < k]
    assert len(before) > 3
    for i in before:
        np.testing.assert_array_equal(a[i][0], b[i][0])
        assert a[i][1] == b[i][1]
        assert a[i][2] == b[i][2]
    # the crash liquidates on bar k in the crashed copy, and not before
    liquidated = [info for _, _, info in b if info.get("liquidated")]
    assert liquidated and liquidated[0]["bar"] == k


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
def test_observer_drops_the_funding_series() -> None:
    data = frame()
    env = make(data, funding=pd.Series([1e-4], index=[data.index[10]]), leverage=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FundingCoverageWarning)
        observer = CryptoTradingEnv.observer(data.iloc[:20], env.settings, env.market.normalizer)
    assert observer.funding is None and observer.margin == env.margin
    spec = env.observation_spec()  # a model's zip carries it: the frame of rates is not written
    assert spec["env_kwargs"]["funding"] is None and spec["env_kwargs"]["leverage"] == 3


@pytest.mark.filterwarnings("ignore::sb3_crypto.envs.margin.FundingCoverageWarning")
def test_check_env_with_margin_and_funding() -> None:
    from gymnasium.utils.env_checker import check_env

    data = frame()
    rates = pd.Series(1e-4, index=pd.date_range(data.index[0], data.index[-1], freq="8h"))
    check_env(make(data, leverage=5, funding=rates, fee=0.001, slippage=0.0005), skip_render_check=True)


def test_random_books_only_a_gap_leaves_equity_below_zero() -> None:
    """Volatile bars, random leveraged actions: every liquidation inside a bar leaves equity >= 0, and
    every bar that did not liquidate kept maintenance at its adverse extreme."""
    reasons = set()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n = 200
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, n)))
        open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.03, n))  # gaps
        wick = np.exp(np.abs(rng.normal(0.0, 0.04, (2, n))))
        data = frame(n)
        data.iloc[:, :4] = np.column_stack(
            (open_, np.maximum(open_, close) * wick[0], np.minimum(open_, close) / wick[1], close)
        )
        for episode in range(20):
            env = make(data, leverage=float(rng.uniform(2, 40)), fee=0.0005, slippage=0.0003, dead_band=0.05)
            env.reset(seed=episode)
            rules, ledger = env.margin, env.ledger
            for _ in range(n):
                _, _, terminated, truncated, info = step(env, float(rng.uniform(-1, 1)))
                bar = info["bar"]
                if info.get("liquidated"):
                    reasons.add(info["liquidation"]["reason"])
                    if info["liquidation"]["reason"] == "maintenance":
                        assert info["equity"] >= -1e-9
                elif ledger.position:
                    worst = data["low"].iloc[bar] if ledger.position > 0 else data["high"].iloc[bar]
                    assert not rules.breached(ledger.cash, (ledger.position,), (worst,))
                if terminated or truncated:
                    break
    assert reasons == {"gap", "maintenance"}  # both kinds happened: the test has teeth


def test_a_liquidated_backtest_stays_flat_to_the_end_of_the_split() -> None:
    from sb3_crypto.evaluation.baselines import compare_with_baselines

    data = frame(120)
    crash = 60
    data.iloc[crash:, :4] = data.iloc[crash:, :4].to_numpy() * 0.8  # gaps down 20 %: 10x longs are liquidated
    results = compare_with_baselines(lambda obs: np.array([1.0], dtype=np.float32), lambda: make(data, leverage=10))
    lengths = {len(result.equity) for result in results}
    assert len(lengths) == 1  # every curve covers the same bars, the random baseline's mean included
    agent = results[0]
    ended = agent.extra["ended"]
    assert ended["liquidated"] and ended["bar"] == crash
    stamps = list(data.index[crash:])
    assert agent.timestamps[-len(stamps) :] == stamps
    assert np.all(agent.equity[-len(stamps) :] == agent.equity[-len(stamps)])  # flat after the liquidation
    assert "ended" not in results[2].extra  # flat never trades, never ends early


def test_held_to_the_end_extends_per_step_arrays() -> None:
    from sb3_crypto.evaluation.rollout import BacktestResult, held_to_the_end, rollout

    data = frame(120)
    data.iloc[60:, :4] = data.iloc[60:, :4].to_numpy() * 0.8
    env = make(data, leverage=10)
    episode = rollout(env, lambda obs, start: np.array([1.0], dtype=np.float32), seed=0)[0]
    n = len(episode.infos)
    bars = [info["bar"] for info in episode.infos]
    result = BacktestResult(
        "agent",
        np.array([info["equity"] for info in episode.infos]),
        [info["timestamp"] for info in episode.infos],
        0.0,
        0,
        8760.0,
        {"close": data["close"].to_numpy()[bars], "exposure": np.ones(n), "fills": []},
    )
    held = held_to_the_end(result, episode, env)
    total = len(data) - bars[0]  # from the reset's bar to the last bar
    assert len(held.equity) == len(held.timestamps) == len(held.extra["close"]) == len(held.extra["exposure"]) == total
    np.testing.assert_array_equal(held.extra["close"], data["close"].to_numpy()[bars[0] :])
    assert np.all(held.extra["exposure"][n:] == 0.0) and held.extra["fills"] == []
