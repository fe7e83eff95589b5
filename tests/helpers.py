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
