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


#: Env keywords that walk hand-made bars whole, from bar 4, without costs (override any of them).
WHOLE_WALK = {
    "window_size": 4,
    "episode_length": None,
    "split": "all",
    "norm_warmup": 4,
    "split_fractions": (1.0, 0.0, 0.0),
    "fee": 0.0,
    "slippage": 0.0,
}


def hand_env(closes: list[float], opens: list[float] | None = None, **kwargs):
    """``CryptoTrading-v0`` over hand-made bars, walked whole from bar 4, without costs unless given."""
    import gymnasium as gym

    import sb3_crypto  # noqa: F401

    return gym.make("CryptoTrading-v0", data=bars(closes, opens), **{**WHOLE_WALK, **kwargs})


def record_walk(env, actions) -> list[tuple]:
    """``reset(seed=0)``, then each action until the episode ends: ``[(obs, reward, info), ...]``,
    the reset's first (reward 0)."""
    obs, info = env.reset(seed=0)
    record = [(obs, 0.0, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        record.append((obs, reward, info))
        if terminated or truncated:
            break
    return record


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


# ------------------------------------------------------------------ user feature functions for the spec
# Referenced from feature specs as "helpers:<name>" (tests/ is on sys.path through its conftest).
def close_feature(frame: pd.DataFrame) -> pd.DataFrame:
    """The close itself (causal): one channel named ``close``."""
    return frame[["close"]].copy()


def momentum_feature(frame: pd.DataFrame, span: int = 3) -> pd.DataFrame:
    """A causal two-channel feature: ``span``-bar log return and its exponential mean."""
    ret = np.log(frame["close"] / frame["close"].shift(span))
    return pd.DataFrame({"mom": ret, "mom_ema": ret.ewm(span=span, adjust=False).mean()}, index=frame.index)


def peek_next(frame: pd.DataFrame) -> pd.DataFrame:
    """Looks ahead: tomorrow's close."""
    return frame[["close"]].shift(-1)


def centered_mean(frame: pd.DataFrame) -> pd.DataFrame:
    """Looks ahead: a 5-bar moving average centred on the bar."""
    return frame[["close"]].rolling(5, center=True).mean()


def full_sample_zscore(frame: pd.DataFrame) -> pd.DataFrame:
    """Looks ahead: z-score against the mean and standard deviation of the whole sample."""
    close = frame["close"]
    return pd.DataFrame({"z": (close - close.mean()) / close.std()}, index=frame.index)


def resample_at_open(frame: pd.DataFrame) -> pd.DataFrame:
    """Looks ahead: the 4-hour close shown from the 4-hour bar's first hourly bar (the classic
    higher-timeframe bug)."""
    last = frame["close"].resample("4h").last()
    return pd.DataFrame({"close_4h": last.reindex(frame.index, method="ffill")}, index=frame.index)


def nan_in_middle(frame: pd.DataFrame) -> pd.DataFrame:
    """Causal but broken: NaN at row 100."""
    values = frame["close"].to_numpy(dtype=float).copy()
    if len(values) > 100:
        values[100] = np.nan
    return pd.DataFrame({"broken": values}, index=frame.index)


def inf_at_50(frame: pd.DataFrame) -> pd.DataFrame:
    values = np.zeros(len(frame))
    if len(frame) > 50:
        values[50] = np.inf
    return pd.DataFrame({"infinite": values}, index=frame.index)


def returns_list(frame: pd.DataFrame) -> list:
    return frame["close"].tolist()


def one_row_short(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["close"]].iloc[:-1]


def reindexed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["close"]].reset_index(drop=True)


def text_column(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"label": ["x"] * len(frame)}, index=frame.index)


def raises(frame: pd.DataFrame) -> pd.DataFrame:
    raise RuntimeError("boom")


NOT_CALLABLE = 42


def quiet_bars(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Hourly bars near 100 with small moves: open = previous close, high/low 0.2 % beyond the body
    (the margin tests move them by hand around a liquidation price)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
            "volume": np.ones(n),
        },
        index=index,
    )
