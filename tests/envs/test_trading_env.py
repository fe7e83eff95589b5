"""CryptoTrading-v0: API conformance, no look-ahead, timing, costs, rewards and risk limits."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from helpers import hand_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_crypto
from sb3_crypto.data import synthetic_ohlcv
from sb3_crypto.envs import S2_REWARD_WEIGHTS

SMALL = synthetic_ohlcv(3000, seed=21)


def make(**kwargs) -> gym.Env:
    kwargs.setdefault("data", SMALL)
    return gym.make("CryptoTrading-v0", **kwargs)


def act(env: gym.Env, value: float) -> tuple[float, dict]:
    """One step with a constant action; returns (reward, info)."""
    _, reward, _, _, info = env.step(np.full(env.action_space.shape, value, dtype=np.float32))
    return reward, info


def step_until(env: gym.Env, bar: int, value: float) -> dict:
    """Reset, then hold ``value`` until the observation's latest bar is ``bar``."""
    _, info = env.reset(seed=0)
    while info["bar"] < bar:
        _, info = act(env, value)
    return info


@pytest.mark.parametrize("env_id", sorted(sb3_crypto.ENV_IDS))
def test_env_checkers_on_every_registered_id(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action_scheme": "direction_size_confidence"},
        {"allow_short": False, "reward": "excess"},
        {"reward": "multi", "max_drawdown": 0.1, "stop_loss": 0.05, "max_position": 0.5},
    ],
)
def test_env_checkers_on_options(kwargs: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make(**kwargs)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_registration_is_idempotent() -> None:
    assert sb3_crypto.register_envs() == []
    assert "CryptoTrading-v0" in gym.envs.registry


def obs_policy(obs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A deterministic function of the observation: any leaked future feeds back into actions."""
    value = math.tanh(float(obs[:-4].sum()) * 0.05 + 3.0 * float(obs[-4]))
    return np.full(shape, value, dtype=np.float32)


def rollout(env: gym.Env, seed: int = 0) -> tuple[list, list, list]:
    obs, info = env.reset(seed=seed)
    observations, rewards, stamps = [obs], [], [info["timestamp"]]
    while True:
        obs, reward, terminated, truncated, info = env.step(obs_policy(obs, env.action_space.shape))
        observations.append(obs)
        rewards.append(reward)
        stamps.append(info["timestamp"])
        if terminated or truncated:
            return observations, rewards, stamps


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "all"},
        {"split": "train", "reward": "excess"},
        {"split": "all", "reward": "multi", "max_drawdown": 0.05, "stop_loss": 0.02},
        {"split": "all", "action_scheme": "direction_size_confidence", "allow_short": False},
    ],
)
@pytest.mark.parametrize("k", [800, 1700, 2600])
def test_no_look_ahead(kwargs: dict, k: int) -> None:
    """Data equal up to bar k and different after: identical observations before bar k's timestamp
    and identical rewards for every step filled and marked before it."""
    future = SMALL.copy()
    rng = np.random.default_rng(k)
    scale = np.exp(np.cumsum(rng.normal(0, 0.02, len(future) - k)))
    future.iloc[k:, :4] = future.iloc[k:, :4].to_numpy() * scale[:, None]
    future.iloc[k:, 4] *= 7.0
    env_kwargs = {"episode_length": None, "window_size": 24, **kwargs}
    obs_a, rew_a, ts_a = rollout(make(data=SMALL, **env_kwargs))
    obs_b, rew_b, ts_b = rollout(make(data=future, **env_kwargs))
    boundary = SMALL.index[k]
    assert ts_a == ts_b  # same bars visited
    before = [i for i, ts in enumerate(ts_a) if ts < boundary]
    assert before, "the test must compare some steps"
    for i in before:
        np.testing.assert_array_equal(obs_a[i], obs_b[i])
        if i > 0:  # reward of step i is marked on the close of the bar at ts_a[i]
            assert rew_a[i - 1] == rew_b[i - 1]
    # The perturbation is visible once the bar is in the window (the test has teeth).
    after = [i for i, ts in enumerate(ts_a) if ts >= boundary]
    if after:
        assert not np.array_equal(obs_a[after[0]], obs_b[after[0]])
    else:
        assert kwargs["split"] == "train" and k >= 2100  # the episode ends before bar k


def test_timestamp_is_latest_bar_in_observation() -> None:
    env = make(episode_length=None, split="all", window_size=4, norm_warmup=10)
    obs, info = env.reset(seed=0)
    base = env.unwrapped
    t = info["bar"]
    assert info["timestamp"] == SMALL.index[t]
    window, account = base.observation_layout.split(obs)
    np.testing.assert_array_equal(window, base.market.features[t - 3 : t + 1])
    assert account.shape == (4,)


def test_fill_at_next_open_with_slippage_and_fee() -> None:
    closes = [100.0] * 40 + [110.0, 120.0, 130.0]
    opens = [100.0] * 40 + [105.0, 115.0, 125.0]
    env = hand_env(closes, opens, fee=0.001, slippage=0.002, initial_cash=1000.0)
    info = step_until(env, 39, 0.0)
    assert info["bar"] == 39 and info["position"] == 0.0
    reward, info = act(env, 1.0)  # decided on the close of bar 39
    fill = env.unwrapped.ledger.last_fill
    assert fill.bar == 40
    assert fill.price == pytest.approx(105.0 * 1.002)  # open of bar 40, plus slippage
    units = 1000.0 / (105.0 * 1.002 * 1.001)  # all cash, fee included (no leverage)
    assert fill.units == pytest.approx(units)
    assert info["equity"] == pytest.approx(1000.0 - units * 105.0 * 1.002 * 1.001 + units * 110.0)
    assert reward == pytest.approx(math.log(info["equity"] / 1000.0))


def test_excess_and_multi_rewards_by_hand() -> None:
    closes = [100.0 * 1.01**i for i in range(60)]
    env = hand_env(closes, reward="excess")
    env.reset(seed=0)
    act(env, 0.0)
    reward, _ = act(env, 0.0)
    assert reward == pytest.approx(-math.log(1.01))  # flat while the asset rose 1 %
    multi = hand_env(closes, reward="multi", fee=0.001)
    multi.reset(seed=0)
    reward, info = act(multi, 1.0)
    parts = info["reward_components"]
    assert set(parts) == set(S2_REWARD_WEIGHTS)
    assert reward == pytest.approx(sum(S2_REWARD_WEIGHTS[k] * v for k, v in parts.items()))
    assert parts["cost"] < 0  # a fee was paid for the entry
    equity_return = info["equity"] / 10_000 - 1
    assert parts["excess_return"] == pytest.approx(100 * (equity_return - 0.01))


def test_same_seed_same_trajectory_and_different_seed_differs() -> None:
    def trace(seed: int) -> tuple[np.ndarray, list[float]]:
        env = make()
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        rewards = []
        for _ in range(50):
            obs, reward, *_ = env.step(env.action_space.sample())
            rewards.append(reward)
        return obs, rewards

    a, b, c = trace(3), trace(3), trace(4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert a[1] != c[1]


def test_whole_split_walk_and_info_keys() -> None:
    env = make(split="test", episode_length=None)
    base = env.unwrapped
    _, info = env.reset(seed=0)
    required = {"timestamp", "equity", "position", "fees_paid", "trades", "exposure", "bar"}
    assert required <= set(info)
    assert info["bar"] == base.market.splits["test"][0]
    steps = 0
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(np.array([0.3], dtype=np.float32))
        steps += 1
        done = terminated or truncated
    assert required <= set(info)
    assert info["bar"] == base.market.splits["test"][1] - 1  # last bar of the split
    assert steps == base.market.splits["test"][1] - base.market.splits["test"][0] - 1


def test_invalid_actions_and_config_raise_clear_errors() -> None:
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(1,\)"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="action must be finite"):
        env.step(np.array([np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="reward must be one of"):
        make(reward="sharpe")
    with pytest.raises(ValueError, match="action_scheme"):
        make(action_scheme="discrete")
    with pytest.raises(ValueError, match="unknown split"):
        make(split="holdout")
    with pytest.raises(ValueError, match="dead_band"):
        make(dead_band=-0.1)
    with pytest.raises(ValueError, match="stop_loss"):
        make(stop_loss=0.0)
    with pytest.raises(ValueError, match="window_size"):
        make(window_size=0)
    with pytest.raises(ValueError, match="synthetic_kwargs given but data is not 'synthetic'"):
        make(synthetic_kwargs={"seed": 1})


def test_dead_band_and_action_mappings() -> None:
    env = make(dead_band=0.2, allow_short=False)
    base = env.unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.0], dtype=np.float32))  # +1 -> fully long
    assert info["exposure"] == pytest.approx(1.0, abs=0.05)
    trades = info["trades"]
    _, _, _, _, info = env.step(np.array([0.8], dtype=np.float32))  # 0.9 target: inside the band
    assert info["trades"] == trades
    _, _, _, _, info = env.step(np.array([-1.0], dtype=np.float32))  # -1 -> flat without shorting
    assert info["position"] == 0.0
    np.testing.assert_allclose(base.action_for_exposure(0.0), [-1.0])
    s2 = make(action_scheme="direction_size_confidence")
    s2.reset(seed=0)
    _, _, _, _, info = s2.step(np.array([0.5, 1.0, 1.0], dtype=np.float32))  # buy size*conf*0.5
    assert info["exposure"] == pytest.approx(0.5, abs=0.03)
    _, _, _, _, info = s2.step(np.array([0.0, 1.0, 1.0], dtype=np.float32))  # |direction| <= 0.3: hold
    assert info["trades"] == 1
    _, _, _, _, info = s2.step(np.array([-0.9, 1.0, -1.0], dtype=np.float32))  # confidence 0: no change
    assert info["trades"] == 1


def test_stop_loss_closes_at_next_open() -> None:
    env = hand_env([100.0] * 30 + [97.0, 94.0, 93.0, 92.0], stop_loss=0.05)
    info = step_until(env, 29, 1.0)
    assert info["position"] > 0
    _, info = act(env, 1.0)  # close 97: -3 %, keep
    assert info["position"] > 0 and "stop_loss" not in info
    _, info = act(env, 1.0)  # close 94: -6 %, still held (decided on this close)
    assert info["position"] > 0
    _, info = act(env, 1.0)  # forced out at the next open, 94
    assert info.get("stop_loss") is True and info["position"] == 0.0
    assert env.unwrapped.ledger.last_fill.price == pytest.approx(94.0)


def test_max_position_and_max_drawdown_limit_risk() -> None:
    env = make(max_position=0.5)
    env.reset(seed=0)
    _, info = act(env, 1.0)
    assert info["exposure"] == pytest.approx(0.5, abs=0.03)
    dd = hand_env([100.0] * 20 + [90.0, 80.0, 85.0, 90.0, 95.0], max_drawdown=0.05)
    info = step_until(dd, 20, 0.5)
    assert info["drawdown"] > 0.05
    exposure = info["exposure"]
    _, info = act(dd, 1.0)  # more risk refused
    assert info.get("risk_limited") is True
    assert info["exposure"] <= exposure + 1e-9
    _, info = act(dd, -1.0)  # cannot flip short either
    assert info["position"] >= 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"features": {"indicators": [{"name": "rsi"}, {"name": "macd"}]}}, {"allow_short": False, "leverage": 2.0}],
)
def test_the_step_builds_the_observation_as_observation_does(kwargs: dict) -> None:
    """The step inlines _observation (the hot path): both must give the same vector for the same state."""
    env = make(window_size=16, episode_length=None, split="all", **kwargs)
    unwrapped = env.unwrapped
    env.action_space.seed(1)
    env.reset(seed=1)
    for _ in range(500):
        obs, _, terminated, _, info = env.step(env.action_space.sample())
        if terminated:
            break
        state = (info["equity"], info["position"], info["exposure"], info["drawdown"])
        np.testing.assert_array_equal(obs, unwrapped._observation(info["bar"], *state))
