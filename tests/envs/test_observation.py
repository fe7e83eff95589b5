"""The observation builder reproduces every env's observation bit for bit from raw bars and an account.

For each registered env id an env walks (or cycles through) its test split with random actions; at
every decision the builder gets the raw bars up to that bar (all of them from the start of the data,
as features with unbounded memory would need; for sessions the session's bars so far) and the
account state read from the env, and must return the env's observation byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from sb3_crypto.envs.observation import (
    DCAAccount,
    ObservationBuilder,
    ObservationInputError,
    SessionAccount,
    SpotAccount,
    TradingAccount,
    bar_records,
    check_spec,
)
from sb3_crypto.envs.registration import ENV_IDS, env_class

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "coinmarketcap_daily_slice.csv"
SMALL = {"n_bars": 700, "seed": 3}
#: env id -> (settings of an env that walks or cycles through its test split, number of episodes)
CASES = {
    "CryptoTrading-v0": (
        {"window_size": 8, "episode_length": None, "split": "test", "synthetic_kwargs": SMALL, "fee": 0.001},
        1,
    ),
    "CryptoSpot-v0": ({"window_size": 4, "episode_length": None, "split": "test", "synthetic_kwargs": SMALL}, 1),
    "CryptoDCA-v0": (
        {
            "window_size": 10,
            "cycle_length": 8,
            "split": "test",
            "sequential": True,
            "synthetic_kwargs": SMALL | {"freq": "1D"},
        },
        6,
    ),
    "CryptoFuturesSession-v0": ({"split": "test", "sequential": True, "history": 3}, 4),
}


def test_every_registered_env_is_covered() -> None:
    """Every env that has an observation spec (all but the portfolio env, which has no serving yet)."""
    assert set(CASES) == {env_id for env_id in ENV_IDS if hasattr(env_class(env_id), "observation_spec")}


def random_action(env: gym.Env, rng: np.random.Generator):
    if isinstance(env.action_space, gym.spaces.Discrete):
        if env.action_space.n == 2:  # DCA: mostly wait, so that cycles last
            return int(rng.random() < 0.15)
        return int(rng.integers(env.action_space.n))
    return rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)


def account_of(env, steps: int, peak: float):
    """The account state a client would hold, read from the env's ledger and episode."""
    inner = env.unwrapped
    ledger = inner.ledger
    if isinstance(inner.account_state(), TradingAccount):
        return TradingAccount(
            cash=ledger.cash,
            position=ledger.position,
            entry_price=ledger.entry_price,
            peak_equity=peak,
            step=steps,
            episode_length=inner.n_decisions,
        )
    if isinstance(inner.account_state(), SpotAccount):
        return SpotAccount(cash=ledger.cash, coins=ledger.position)
    if isinstance(inner.account_state(), DCAAccount):
        return DCAAccount(step=steps)
    return SessionAccount(position=ledger.position, entry_price=ledger.entry_price, actions=inner.executed_actions)


def session_bars(inner, step: int) -> pd.DataFrame:
    """The raw bars of the current session so far: context bars plus ``step`` more, with timestamps."""
    sessions = inner.sessions
    values = sessions.bars[inner._index, : inner.context + step]
    signal = pd.Timestamp(sessions.signal_times[inner._index], tz="UTC")
    step_ns = pd.Timedelta(sessions.meta["freq"])
    index = pd.DatetimeIndex(
        [signal + step_ns * (row - inner.context + 1) for row in range(len(values))], name="timestamp"
    )
    return pd.DataFrame(values, index=index, columns=["open", "high", "low", "close", "volume", "vwap", "trades"])


def walk_and_compare(env: gym.Env, episodes: int, seed: int = 0, minimal: bool = False) -> int:
    """Step ``env`` with random actions through ``episodes`` episodes; at every decision compare the
    builder's observation with the env's. Returns the number of observations compared."""
    inner = env.unwrapped
    spec = check_spec(inner.observation_spec())
    builder = ObservationBuilder(spec)
    rng = np.random.default_rng(seed)
    compared = 0
    for episode in range(episodes):
        obs, info = env.reset(seed=seed if episode == 0 else None)
        steps, peak, done = 0, info.get("equity", 0.0), False
        while not done:
            account = account_of(env, steps, peak)
            if hasattr(inner, "sessions"):
                bars = session_bars(inner, steps)
            else:
                t = info["bar"]
                first = t + 1 - builder.bars_needed if minimal else 0
                bars = inner.market.frame.iloc[first : t + 1]
            built = builder.build(bars, account)
            assert built.observation.dtype == obs.dtype == np.float32
            assert built.observation.tobytes() == obs.tobytes(), (
                f"{spec['env_id']}: episode {episode}, step {steps}: the builder's observation differs at indices "
                f"{np.flatnonzero(built.observation != obs).tolist()}"
            )
            if hasattr(inner, "action_masks"):
                np.testing.assert_array_equal(built.action_masks, inner.action_masks())
            compared += 1
            obs, _, terminated, truncated, info = env.step(random_action(env, rng))
            steps += 1
            peak = max(peak, info.get("equity", 0.0))
            done = terminated or truncated
    return compared


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_builder_is_bit_for_bit_on_the_test_split(env_id: str) -> None:
    settings, episodes = CASES[env_id]
    env = gym.make(env_id, **settings)
    assert walk_and_compare(env, episodes) >= 20


@pytest.mark.parametrize("env_id", ["CryptoTrading-v0", "CryptoSpot-v0", "CryptoDCA-v0"])
def test_window_plus_lookback_bars_are_enough_for_finite_memory_features(env_id: str) -> None:
    """With the default features (each bar reads the previous one) the fewest bars give the same."""
    settings, episodes = CASES[env_id]
    assert walk_and_compare(gym.make(env_id, **settings), episodes, seed=1, minimal=True) >= 20


def test_close_only_real_daily_data() -> None:
    """The CoinMarketCap slice (close-only daily bars): the builder reads the close alone."""
    env = gym.make(
        "CryptoTrading-v0",
        data=str(FIXTURE),
        asset="BTCBitcoin",
        window_size=5,
        episode_length=None,
        split="all",
        norm_warmup=10,
    )
    spec = env.unwrapped.observation_spec()
    assert spec["bars"]["close_only"] and spec["bars"]["freq"] == "1d"
    assert spec["env_kwargs"]["data"] == str(FIXTURE)
    assert walk_and_compare(env, 1) >= 40


@pytest.fixture(scope="module")
def trading():
    """A trading env as training makes it (episodes of 64 decisions), its spec's builder and its raw bars."""
    env = gym.make("CryptoTrading-v0", **{**CASES["CryptoTrading-v0"][0], "episode_length": 64})
    inner = env.unwrapped
    return inner, ObservationBuilder(inner.observation_spec()), inner.market.frame


def test_statistics_come_from_the_spec_not_the_bars(trading) -> None:
    inner, builder, frame = trading
    bars = frame.iloc[inner.first_bar - 20 : inner.first_bar + 1]
    spec = inner.observation_spec()
    shifted = ObservationBuilder({**spec, "normalizer": {**spec["normalizer"], "mean": [0.0] * 5}})
    assert builder.observation(bars).tobytes() != shifted.observation(bars).tobytes()
    # ... and the bars' own statistics are never fitted: the same bars give the same observation
    # whatever comes before them.
    np.testing.assert_array_equal(builder.observation(bars), builder.observation(frame.iloc[: inner.first_bar + 1]))


def test_the_decision_and_fill_times(trading) -> None:
    _, builder, frame = trading
    built = builder.build(frame.iloc[100:140])
    assert built.decided_on_close_of == frame.index[139]
    assert built.fills_at_open_of == frame.index[139] + pd.Timedelta("1h")
    meaning = built.describe_action(np.array([0.5], dtype=np.float32))
    assert meaning["target_exposure"] == 0.5 and meaning["trades"] and "long" in meaning["meaning"]
    held = builder.build(frame.iloc[100:140], {"position": 1.0, "cash": 0.0}).describe_action(np.array([1.0]))
    assert not held["trades"] and "dead band" in held["meaning"]


def records(frame: pd.DataFrame) -> list[dict]:
    out = frame.reset_index().to_dict("records")
    for bar in out:
        bar["timestamp"] = bar["timestamp"].isoformat()
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b[:5], r"bars: 5 given, but at least 9 bars \(window_size 8 \+ feature lookback 1\) are needed"),
        (lambda b: b[:10] + b[11:], r"bars\[10\] \(.*\) comes 0 days 02:00:00 after bars\[9\].*consecutive 1h bars"),
        (lambda b: [*b[:3], {**b[3], "close": None}, *b[4:]], r"column 'close' has NaN at bars\[3\]"),
        (lambda b: [*b[:3], {**b[3], "low": -1.0}, *b[4:]], r"column 'low' has a non-positive price -1.0 at bars\[3\]"),
        (lambda b: [b[1], b[0], *b[2:]], r"1 row out of order: bars\[1\]"),
        (lambda b: [b[0], b[0], *b[1:]], r"duplicate timestamp: bars\[1\] .* repeats bars\[0\]"),
        (lambda b: [*b[:2], {**b[2], "price": 1.0}, *b[3:]], r"bars\[2\]: unknown field\(s\) price"),
        (lambda b: [*b[:2], {"close": 1.0}, *b[3:]], r"bars\[2\] has no timestamp"),
        (lambda b: "bars", r"bars must be a list of bars"),
    ],
)
def test_bad_bars_are_refused_naming_the_bar(trading, change, message: str) -> None:
    _, builder, frame = trading
    with pytest.raises(ObservationInputError, match=message):
        builder.build(change(records(frame.iloc[:40])))


@pytest.mark.parametrize(
    ("account", "message"),
    [
        ({"cash": "lots"}, r"account\.cash must be"),
        ({"shares": 1}, r"unknown field\(s\) shares.*cash, position, entry_price, peak_equity, step, episode_length"),
        ({"step": -1}, r"account\.step must be"),
        ({"step": 64}, r"account\.step must be below episode_length \(64\)"),
        ({"cash": -20_000.0}, r"equity .* must be positive"),
        ([1, 2], r"account must be a mapping"),
    ],
)
def test_bad_accounts_are_refused_naming_the_field(trading, account, message: str) -> None:
    _, builder, frame = trading
    with pytest.raises(ObservationInputError, match=message):
        builder.build(frame.iloc[:40], account)


def test_session_bars_must_be_the_session_so_far() -> None:
    env = gym.make("CryptoFuturesSession-v0", split="test", sequential=True)
    builder = ObservationBuilder(env.unwrapped.observation_spec())
    env.reset(seed=0)
    bars = session_bars(env.unwrapped, 9)
    with pytest.raises(ObservationInputError, match=r"29 given, but the session's bars so far: its 30 context"):
        builder.build(bars.iloc[:29])
    with pytest.raises(ObservationInputError, match=r"account\.actions must hold the 3 action"):
        builder.build(bars.iloc[:33], {"actions": [0, 1]})
    assert builder.build(bars.iloc[:33], {"actions": [1, 0, 0], "position": 0.2, "entry_price": 30_000.0})


def test_bar_records_round_trip(trading) -> None:
    _, builder, frame = trading
    part = frame.iloc[50:80]
    assert builder.observation(bar_records(part)).tobytes() == builder.observation(part).tobytes()
    assert list(bar_records(part, ["close"])[0]) == ["timestamp", "close"]


#: Indicators of every kind: TA-Lib (with unbounded memory), rolling statistics, a higher timeframe.
INDICATOR_SPEC = {
    "base": "zscore",
    "indicators": [
        {"name": "rsi", "period": 14},
        {"name": "macd", "fast": 12, "slow": 26, "signal": 9},
        {"name": "realized_vol", "period": 24},
        {"name": "returns", "k": 4},
        {"name": "rsi", "period": 6, "timeframe": "4h"},
    ],
}


@pytest.mark.parametrize("env_id", ["CryptoTrading-v0", "CryptoDCA-v0"])
def test_builder_is_bit_for_bit_with_indicator_features(env_id: str) -> None:
    """The feature spec travels with the settings: the builder recomputes the indicators on the bars it
    is given (all bars so far, as the env saw them) and applies the training statistics."""
    settings, episodes = CASES[env_id]
    settings = {**settings, "features": INDICATOR_SPEC, "synthetic_kwargs": {"n_bars": 1500, "seed": 3, "freq": "1h"}}
    env = gym.make(env_id, **settings)
    assert "rsi_6@4h" in env.unwrapped.observation_layout.channels
    assert walk_and_compare(env, episodes) >= 20
