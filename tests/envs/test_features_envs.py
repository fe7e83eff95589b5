"""Feature specs in every env: clean env checkers, observations matching the layout, no look-ahead,
the session env's documented refusal and the deprecated ``extra_features``."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_crypto  # noqa: F401
from sb3_crypto.data import LeakError, synthetic_ohlcv
from sb3_crypto.envs.registration import env_class

HOURLY = synthetic_ohlcv(3000, seed=11)
DAILY = synthetic_ohlcv(1500, freq="1D", seed=12)
INDICATORS = [
    {"name": "rsi", "period": 14},
    {"name": "macd", "fast": 12, "slow": 26, "signal": 9},
    {"name": "atr", "period": 14},
    {"name": "bollinger_width", "period": 20, "k": 2},
    {"name": "realized_vol", "period": 24},
    {"name": "volume_zscore", "period": 48},
    {"name": "returns", "k": 4},
    {"function": "helpers:momentum_feature", "kwargs": {"span": 6}, "lookback": 7},
]
HOURLY_SPEC = {"base": "zscore", "indicators": [*INDICATORS, {"name": "rsi", "period": 14, "timeframe": "4h"}]}
DAILY_SPEC = {"base": "none", "indicators": [*INDICATORS, {"name": "rsi", "period": 5, "timeframe": "1w"}]}
CHANNELS = (
    "rsi_14",
    "macd_12_26_9",
    "macd_signal_12_26_9",
    "macd_hist_12_26_9",
    "atr_14",
    "bollinger_width_20_2",
    "realized_vol_24",
    "volume_zscore_48",
    "returns_4",
    "mom",
    "mom_ema",
)
#: env id -> (settings, the layout's channels with that env's spec)
CASES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "CryptoTrading-v0": (
        {"data": HOURLY, "window_size": 16, "episode_length": 64, "features": HOURLY_SPEC},
        ("open_return", "high_return", "low_return", "close_return", "log_volume", *CHANNELS, "rsi_14@4h"),
    ),
    "CryptoSpot-v0": (
        {"data": HOURLY, "window_size": 4, "episode_length": 64, "features": {**HOURLY_SPEC, "base": "pct_change"}},
        ("open_pct", "high_pct", "low_pct", "close_pct", "volume_pct", *CHANNELS, "rsi_14@4h"),
    ),
    "CryptoDCA-v0": (
        {"data": DAILY, "window_size": 10, "cycle_length": 10, "features": DAILY_SPEC},
        ("log_close_vs_current", *CHANNELS, "rsi_5@1w"),
    ),
}


def make(env_id: str, **changes: Any) -> gym.Env:
    settings, _ = CASES[env_id]
    return gym.make(env_id, **{**settings, **changes})


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_env_checkers_are_clean_with_a_feature_spec(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make(env_id)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_observations_match_the_layout_and_are_finite(env_id: str) -> None:
    env = make(env_id)
    layout = env.unwrapped.observation_layout
    assert layout.channels == CASES[env_id][1]
    assert env.observation_space.shape == (layout.size,)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        assert obs.shape == (layout.size,) and env.observation_space.contains(obs) and np.isfinite(obs).all()
        window, _ = layout.split(obs)
        assert window.shape == (layout.window_size, layout.n_channels)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    market = env.unwrapped.market
    assert env.unwrapped.first_bar >= market.features_start + layout.window_size - 1


def test_trading_window_rows_are_the_normalised_channels() -> None:
    env = make("CryptoTrading-v0", episode_length=None, split="all")
    obs, info = env.reset(seed=0)
    layout = env.unwrapped.observation_layout
    t = info["bar"]
    window, _ = layout.split(obs)
    np.testing.assert_array_equal(window, env.unwrapped.market.features[t - layout.window_size + 1 : t + 1])


def test_dca_window_rows_hold_the_relative_close_then_the_spec_channels() -> None:
    env = make("CryptoDCA-v0", sequential=True)
    obs, info = env.reset(seed=0)
    unwrapped = env.unwrapped
    layout = unwrapped.observation_layout
    t = info["bar"]
    window, rest = layout.split(obs)
    closes = np.log(unwrapped.market.close[t - 9 : t + 1])
    np.testing.assert_allclose(window[:, 0], np.clip((closes - closes[-1]) * 10, -10, 10), rtol=1e-6)
    np.testing.assert_array_equal(window[:, 1:], unwrapped.market.features[t - 9 : t + 1])
    assert rest.shape == (2,) and unwrapped.obs_bound == 10.0
    plain = gym.make("CryptoDCA-v0", data=DAILY, window_size=10, cycle_length=10)  # S1's one channel, as before
    assert plain.unwrapped.observation_layout.channels == ("log_close_vs_current",)
    assert plain.unwrapped.market.warmup_end == 2 and unwrapped.market.warmup_end == round(0.1 * 1050)


def perturbed(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The same bars up to ``k``, a different path after it."""
    changed = frame.copy()
    scale = np.exp(np.cumsum(np.random.default_rng(k).normal(0, 0.03, len(frame) - k)))
    changed.iloc[k:, :4] = changed.iloc[k:, :4].to_numpy() * scale[:, None]
    changed.iloc[k:, 4] *= 4.0
    return changed


def policy(obs: np.ndarray, space: gym.Space) -> Any:
    """A deterministic function of the observation, so any leaked future changes later actions."""
    x = math.tanh(float(np.nan_to_num(obs).sum()) * 0.01)
    if isinstance(space, gym.spaces.Discrete):
        return int((x + 1.0) * 0.5 * (space.n - 1) + 0.5) % space.n
    return np.full(space.shape, x, dtype=np.float32)


def trace(env: gym.Env) -> list[tuple[Any, np.ndarray, float | None]]:
    obs, info = env.reset(seed=0)
    out = [(info["timestamp"], obs, None)]
    for _ in range(400):
        obs, reward, terminated, truncated, info = env.step(policy(obs, env.action_space))
        out.append((info["timestamp"], obs, reward))
        if terminated or truncated:
            obs, info = env.reset()
            out.append((info["timestamp"], obs, None))
    return out


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_no_look_ahead_with_a_feature_spec(env_id: str) -> None:
    """Data equal up to bar k: identical observations (and rewards) for every bar before k."""
    settings, _ = CASES[env_id]
    frame = settings["data"]
    changes = {"sequential": True} if env_id == "CryptoDCA-v0" else {"episode_length": None}
    a = make(env_id, split="all", **changes)
    first = a.unwrapped.first_bar
    k = first + 150
    b = make(env_id, split="all", data=perturbed(frame, k), **changes)
    boundary = frame.index[k]
    compared = 0
    for (ts_a, obs_a, reward_a), (ts_b, obs_b, reward_b) in zip(trace(a), trace(b)):
        assert ts_a == ts_b
        if ts_a >= boundary:  # the first observation holding bar k differs (the test has teeth)
            assert not np.array_equal(obs_a, obs_b)
            break
        np.testing.assert_array_equal(obs_a, obs_b)
        if env_id != "CryptoDCA-v0":  # DCA marks its reward at the cycle's end (tested in test_dca_spot)
            assert reward_a == reward_b
        compared += 1
    assert compared > 100


def test_a_peeking_user_feature_is_refused_when_the_env_is_built() -> None:
    spec = {"indicators": [{"function": "helpers:peek_next", "name": "tomorrow"}]}
    with pytest.raises(LeakError, match=r"^feature 'tomorrow' .* looks ahead: channel 'tomorrow_close' at bar "):
        gym.make("CryptoTrading-v0", data=HOURLY, features=spec)
    with pytest.raises(LeakError, match=r"^feature 'tomorrow'"):
        gym.make("CryptoDCA-v0", data=DAILY, features=spec)


def test_the_session_env_refuses_indicator_specs_and_says_why() -> None:
    cls = env_class("CryptoFuturesSession-v0")
    base = {"synthetic_kwargs": {"n_bars": 20_000}}
    plain = cls(**base).observation_layout
    assert (
        cls(**base, features={"base": "zscore"}).observation_layout
        == plain
        == cls(**base, features="zscore").observation_layout
    )
    for features in (
        {"indicators": [{"name": "rsi"}]},
        "pct_change",
        {"base": "none", "indicators": [{"name": "rsi"}]},
    ):
        with pytest.raises(ValueError, match=r"^features: CryptoFuturesSessionEnv observes S3's session arrays"):
            cls(**base, features=features)


def test_extra_features_is_deprecated_and_keeps_its_zero_slots() -> None:
    with pytest.warns(DeprecationWarning, match=r"extra_features=\['spread'\] only adds observation slots that are"):
        env = gym.make("CryptoTrading-v0", data=HOURLY, window_size=8, extra_features=["spread"])
    layout = env.unwrapped.observation_layout
    assert layout.extra == ("spread",)
    obs, _ = env.reset(seed=0)
    for _ in range(50):  # before, the slot showed the next bars' features (a look-ahead)
        assert obs[-1] == 0.0
        obs = env.step(env.action_space.sample())[0]
    with pytest.warns(DeprecationWarning, match="extra_features"):
        spot = gym.make("CryptoSpot-v0", data=HOURLY, extra_features=["a", "b"])
    obs, _ = spot.reset(seed=0)
    assert spot.unwrapped.observation_layout.extra == ("a", "b") and obs[-2:].tolist() == [0.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym.make("CryptoTrading-v0", data=HOURLY, window_size=8)  # no warning without it


@pytest.mark.parametrize("extractor", ["Mlp", "Conv", "Attention"])
def test_window_extractors_read_the_wider_layout(extractor: str) -> None:
    from stable_baselines3 import PPO

    from sb3_crypto import policies

    env = make("CryptoTrading-v0")
    policy_class = getattr(policies, f"{extractor}ActorCriticPolicy")
    model = PPO(policy_class, env, n_steps=32, batch_size=32, device="cpu")
    assert model.policy.features_extractor.n_channels == len(CASES["CryptoTrading-v0"][1]) == 17
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
