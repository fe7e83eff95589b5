"""S1's DCA timing and S4's spot environment: hand computations, baselines, no look-ahead, LSTM run."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from sb3_contrib import RecurrentPPO

import sb3_crypto  # noqa: F401
from sb3_crypto.envs.dca import BUY, WAIT, CryptoDCAEnv
from sb3_crypto.envs.spot import BUY_HALF, HOLD, SELL_HALF, CryptoSpotEnv
from sb3_crypto.evaluation.dca import evaluate_dca

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def daily_closes(values: list[float]) -> pd.DataFrame:
    index = pd.date_range("2021-01-01", periods=len(values), freq="1D", tz="UTC")
    return pd.DataFrame({"date": index, "price": values})


PRICES = [100.0 + 10 * np.sin(i / 3.0) + i * 0.2 for i in range(80)]


def dca(**kwargs) -> CryptoDCAEnv:
    settings = {
        "data": daily_closes(PRICES),
        "cycle_length": 5,
        "window_size": 4,
        "split": "all",
        "sequential": True,
        **kwargs,
    }
    return CryptoDCAEnv(**settings)


def test_dca_purchase_against_each_baseline_by_hand() -> None:
    env = dca()
    _, info = env.reset(seed=0)
    start = info["bar"]
    fills = np.array(PRICES[start + 1 : start + 6])  # close-only data: the next open is the next close
    average = fills.mean()
    _, reward, terminated, _, info = env.step(WAIT)
    assert reward == 0.0 and not terminated
    _, reward, terminated, _, info = env.step(BUY)  # decided on day 2's close, filled on day 3
    assert terminated and info["bought_on"] == 2
    assert info["buy_price"] == pytest.approx(fills[1])
    assert reward == pytest.approx((average - fills[1]) / average)
    assert info["marked_at"] == env.timestamp(start + 5)  # reward marked once the cycle is over

    results = evaluate_dca(lambda obs: BUY, data=daily_closes(PRICES), cycle_length=5, window_size=4, split="all")
    first_day, last_day = [], []
    probe = dca()
    for _ in range(probe.n_cycles):
        _, info = probe.reset()
        s = info["bar"]
        cycle = np.array(PRICES[s + 1 : s + 6])
        first_day.append((cycle.mean() - cycle[0]) / cycle.mean())
        last_day.append((cycle.mean() - cycle[-1]) / cycle.mean())
    assert results["first_day"] == pytest.approx(np.mean(first_day))
    assert results["agent"] == pytest.approx(results["first_day"])  # the agent always buys at once
    assert results["last_day"] == pytest.approx(np.mean(last_day))
    assert results["average_price"] == 0.0
    assert min(first_day + last_day) <= results["random_day"] <= max(first_day + last_day)


def test_dca_last_day_is_forced_and_actions_validated() -> None:
    env = dca()
    env.reset(seed=0)
    for _ in range(4):
        _, _, terminated, _, info = env.step(WAIT)
        assert not terminated
    _, _, terminated, _, info = env.step(WAIT)
    assert terminated and info["forced"] and info["bought_on"] == 5
    with pytest.raises(ValueError, match="0 \\(wait\\) or 1 \\(buy\\)"):
        env.step(2)


def test_dca_observation_never_sees_later_prices() -> None:
    k = 50
    changed = list(PRICES)
    changed[k:] = [p * 1.7 for p in changed[k:]]
    envs = [dca(data=daily_closes(p)) for p in (PRICES, changed)]
    for _ in range(envs[0].n_cycles):
        obs = [env.reset()[0] for env in envs]
        infos = [env._info() for env in envs]
        if infos[0]["bar"] < k:
            np.testing.assert_array_equal(obs[0], obs[1])
        results = [env.step(BUY) for env in envs]
        marked = results[0][4]["marked_at"]
        if marked < envs[0].timestamp(k):
            assert results[0][1] == results[1][1]  # rewards of cycles over before bar k agree
    window = dca().reset(seed=0)[0][:4]
    assert window[-1] == 0.0  # the window is relative to today's close: nothing after it


def test_dca_runs_on_the_coinmarketcap_layout() -> None:
    env = gym.make(
        "CryptoDCA-v0",
        data=str(FIXTURES / "coinmarketcap_daily_slice.csv"),
        asset="BTCBitcoin",
        cycle_length=7,
        window_size=7,
        split="all",
    )
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9,)
    terminated = False
    while not terminated:
        obs, reward, terminated, _, info = env.step(0)
    assert info["forced"] and np.isfinite(reward)


def spot(closes: list[float], **kwargs) -> CryptoSpotEnv:
    index = pd.date_range("2022-01-01", periods=len(closes), freq="1h", tz="UTC")
    opens = [closes[0], *closes[:-1]]
    frame = pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(opens, closes),
            "low": np.minimum(opens, closes),
            "close": closes,
            "volume": np.ones(len(closes)),
        },
        index=index,
    )
    settings = {"episode_length": None, "split": "all", **kwargs}
    return CryptoSpotEnv(frame, **settings)


@pytest.mark.parametrize("mode", ["excess", "absolute"])
def test_spot_half_steps_and_rewards_by_hand(mode: str) -> None:
    closes = [100.0, 100.0, 110.0, 120.0, 90.0, 95.0, 95.0]
    env = spot(closes, reward=mode)
    obs, info = env.reset(seed=0)
    assert info["bar"] == 0 and info["equity"] == pytest.approx(10_100.0)
    np.testing.assert_allclose(obs[-2:], [1.0, 1.0])  # cash / 10 000, coins
    fee = 0.00075
    _, r1, _, _, info = env.step(BUY_HALF)  # 5 000 spent at the next open (100), fee included
    coins = 1 + 5_000 / (100 * (1 + fee))
    assert info["position"] == pytest.approx(coins) and info["cash"] == pytest.approx(5_000)
    value1 = 5_000 + coins * 100
    _, r2, _, _, info = env.step(HOLD)  # 100 -> 110
    value2 = 5_000 + coins * 110
    _, r3, _, _, info = env.step(SELL_HALF)  # sell half at the open 110, mark at 120
    cash3 = 5_000 + coins / 2 * 110 * (1 - fee)
    value3 = cash3 + coins / 2 * 120
    assert info["cash"] == pytest.approx(cash3) and info["position"] == pytest.approx(coins / 2)
    held = {1: 0.0, 2: 10.0, 3: 10.0}  # the initial coin's gain per step (excess mode subtracts it)
    expected = [value1 - 10_100, value2 - value1, value3 - value2]
    for step, (got, want) in enumerate(zip((r1, r2, r3), expected), start=1):
        assert got == pytest.approx(want - (held[step] if mode == "excess" else 0.0))
    _, r4, _, _, info = env.step(HOLD)  # 120 -> 90: selling before the drop pays off in excess mode
    drop = coins / 2 * (90 - 120)
    assert r4 == pytest.approx(drop - (-30.0 if mode == "excess" else 0.0))
    if mode == "excess":
        assert r4 > drop


def test_spot_ends_below_ten_percent_and_validates() -> None:
    env = spot([100.0, 100.0, 5.0, 5.0, 5.0, 5.0], initial_cash=0.0)
    env.reset(seed=0)
    env.step(HOLD)
    _, _, terminated, truncated, info = env.step(HOLD)
    assert terminated and not truncated and info["equity"] < 0.1 * info["start_value"]
    with pytest.raises(ValueError, match="0 \\(hold\\), 1 \\(buy\\) or 2 \\(sell\\)"):
        env.step(3)
    with pytest.raises(ValueError, match="reward must be one of"):
        spot([1.0] * 10, reward="sharpe")


def test_spot_observation_is_causal() -> None:
    base = list(100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 300)))
    changed = base[:200] + [p * 1.2 for p in base[200:]]
    traces = []
    for closes in (base, changed):
        env = spot(closes, window_size=8)
        obs, info = env.reset(seed=0)
        out = [(info["bar"], obs, None)]
        while True:
            obs, reward, terminated, truncated, info = env.step(BUY_HALF if info["bar"] % 3 else SELL_HALF)
            out.append((info["bar"], obs, reward))
            if terminated or truncated:
                break
        traces.append(out)
    for (bar, obs_a, r_a), (_, obs_b, r_b) in zip(*traces):
        if bar < 200:
            np.testing.assert_array_equal(obs_a, obs_b)
            assert r_a == r_b


def test_recurrent_ppo_runs_end_to_end_on_spot(tmp_path: Path) -> None:
    env = gym.make("CryptoSpot-v0", episode_length=64)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        n_steps=64,
        batch_size=64,
        n_epochs=3,
        learning_rate=5e-4,
        gamma=0.98,
        gae_lambda=0.95,
        clip_range=0.1,
        seed=0,
    )
    model.learn(256)
    model.save(tmp_path / "lstm")
    loaded = RecurrentPPO.load(tmp_path / "lstm")
    evaluation = gym.make("CryptoSpot-v0", split="test", episode_length=None)
    obs, _ = evaluation.reset(seed=0)
    state, start, steps = None, np.array([True]), 0
    done = False
    while not done:
        action, state = loaded.predict(obs, state=state, episode_start=start, deterministic=True)
        obs, _, terminated, truncated, info = evaluation.step(action)
        start = np.array([False])
        done = terminated or truncated
        steps += 1
    assert steps > 100 and state is not None and np.isfinite(info["equity"])
