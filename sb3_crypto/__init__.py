"""sb3_crypto: Stable-Baselines3 extension for reinforcement-learning crypto trading.

Importing the package registers its Gymnasium environment ids (``CryptoTrading-v0``, ...), so
``gym.make`` and ``python -m rl_zoo3.train --gym-packages sb3_crypto`` find them.
"""

from sb3_crypto.data import DataError, build_market, load_ohlcv, synthetic_ohlcv
from sb3_crypto.envs import CryptoTradingEnv, Ledger, ObservationLayout
from sb3_crypto.envs.registration import ENV_IDS, register_envs
from sb3_crypto.rainbow import D3QN, RainbowDQN
from sb3_crypto.sac import FastSAC
from sb3_crypto.version import __version__

register_envs()

__all__ = [
    "D3QN",
    "ENV_IDS",
    "CryptoTradingEnv",
    "DataError",
    "FastSAC",
    "Ledger",
    "ObservationLayout",
    "RainbowDQN",
    "__version__",
    "build_market",
    "load_ohlcv",
    "register_envs",
    "synthetic_ohlcv",
]
