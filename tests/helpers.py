"""Helpers shared by test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def bars(closes: list[float], opens: list[float] | None = None) -> pd.DataFrame:
    """Hand-made hourly bars: open = previous close unless given, high/low 1 % beyond the body."""
    closes_arr = np.asarray(closes, dtype=float)
    opens_arr = np.asarray(opens if opens is not None else [closes[0], *closes[:-1]], dtype=float)
    index = pd.date_range("2022-01-01", periods=len(closes), freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": opens_arr,
            "high": np.maximum(opens_arr, closes_arr) * 1.01,
            "low": np.minimum(opens_arr, closes_arr) * 0.99,
            "close": closes_arr,
            "volume": np.ones(len(closes)),
        },
        index=index,
    )


def hand_env(closes: list[float], opens: list[float] | None = None, **kwargs):
    """``CryptoTrading-v0`` over hand-made bars, walked whole from bar 4, without costs unless given."""
    import gymnasium as gym

    import sb3_crypto  # noqa: F401

    settings = {
        "window_size": 4,
        "episode_length": None,
        "split": "all",
        "norm_warmup": 4,
        "split_fractions": (1.0, 0.0, 0.0),
        "fee": 0.0,
        "slippage": 0.0,
        **kwargs,
    }
    return gym.make("CryptoTrading-v0", data=bars(closes, opens), **settings)


SESSION = "CryptoFuturesSession-v0"
TRADING = "CryptoTrading-v0"
TRADING_KWARGS = {"window_size": 16, "episode_length": 64}


def make(env_id: str):
    """An env factory: the session env as registered, a small trading env."""
    import gymnasium as gym

    import sb3_crypto  # noqa: F401

    return lambda: gym.make(env_id, **(TRADING_KWARGS if env_id == TRADING else {}))


def _kinds() -> dict:
    from sb3_contrib import QRDQN, MaskablePPO, RecurrentPPO
    from stable_baselines3 import DQN, PPO, SAC

    import sb3_crypto
    from sb3_crypto.policies import AttentionActorCriticPolicy, ConvRainbowPolicy, MlpSACPolicy

    replay = {"learning_starts": 32}
    rollout = {"n_steps": 64, "batch_size": 32}
    # name -> (algorithm, policy, env id, algorithm kwargs, training steps)
    return {
        "dqn": (DQN, "MlpPolicy", SESSION, replay, 200),
        "qrdqn": (QRDQN, "MlpPolicy", SESSION, replay, 200),
        "rainbow_c51_conv": (sb3_crypto.RainbowDQN, ConvRainbowPolicy, SESSION, replay, 200),
        "d3qn": (sb3_crypto.D3QN, "MlpPolicy", SESSION, replay, 200),
        "sac_gsde": (SAC, MlpSACPolicy, TRADING, {"use_sde": True, **replay}, 100),
        "ppo_attention_box": (PPO, AttentionActorCriticPolicy, TRADING, rollout, 64),
        "ppo_discrete": (PPO, "MlpPolicy", SESSION, rollout, 64),
        "ppo_mask": (MaskablePPO, "MlpPolicy", SESSION, rollout, 64),
        "ppo_lstm": (RecurrentPPO, "MlpLstmPolicy", TRADING, rollout, 64),
    }


#: One briefly-trained model of every policy kind the package exports (names only; see ``train``).
KINDS = (
    "dqn",
    "qrdqn",
    "rainbow_c51_conv",
    "d3qn",
    "sac_gsde",
    "ppo_attention_box",
    "ppo_discrete",
    "ppo_mask",
    "ppo_lstm",
)


def train(name: str):
    """``(model, env_id)``: a model of kind ``name`` trained for a few hundred steps (uncached; tests
    get shared copies through the ``trained`` fixture of ``conftest.py``)."""
    algo, policy, env_id, kwargs, steps = _kinds()[name]
    model = algo(policy, make(env_id)(), seed=0, device="cpu", **kwargs)
    model.learn(steps)
    return model, env_id


def algorithm_of(name: str) -> type:
    """The algorithm class of kind ``name``."""
    return _kinds()[name][0]
