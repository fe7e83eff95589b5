"""Register the package's environment ids with Gymnasium.

Safe to call any number of times and from spawned subprocesses (``SubprocVecEnv`` with the
``spawn`` start method re-imports the package): an id already in the registry is left alone.
"""

from __future__ import annotations

import gymnasium as gym

#: Environment id -> entry point.
ENV_IDS: dict[str, str] = {
    "CryptoTrading-v0": "sb3_crypto.envs.trading:CryptoTradingEnv",
    "CryptoFuturesSession-v0": "sb3_crypto.envs.futures:CryptoFuturesSessionEnv",
    "CryptoDCA-v0": "sb3_crypto.envs.dca:CryptoDCAEnv",
    "CryptoSpot-v0": "sb3_crypto.envs.spot:CryptoSpotEnv",
}


def register_envs() -> list[str]:
    """Register every id not yet in the registry; returns the ids registered by this call."""
    added = []
    for env_id, entry_point in ENV_IDS.items():
        if env_id in gym.envs.registry:
            continue
        # Episodes end through the env's own truncation (episode_length), so no TimeLimit wrapper.
        gym.register(id=env_id, entry_point=entry_point, disable_env_checker=False)
        added.append(env_id)
    return added
