"""Register the package's environment ids with Gymnasium.

Safe to call any number of times and from spawned subprocesses (``SubprocVecEnv`` with the
``spawn`` start method re-imports the package): an id already in the registry is left alone.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

#: Environment id -> entry point.
ENV_IDS: dict[str, str] = {
    "CryptoTrading-v0": "sb3_crypto.envs.trading:CryptoTradingEnv",
    "CryptoFuturesSession-v0": "sb3_crypto.envs.futures:CryptoFuturesSessionEnv",
    "CryptoDCA-v0": "sb3_crypto.envs.dca:CryptoDCAEnv",
    "CryptoSpot-v0": "sb3_crypto.envs.spot:CryptoSpotEnv",
    "CryptoPortfolio-v0": "sb3_crypto.envs.portfolio:CryptoPortfolioEnv",
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


def env_class(env_id: str) -> type | None:
    """The class behind a registered env id; ``None`` when the id is unknown or its entry point is
    not a class (a factory function, or a module that fails to import)."""
    spec = gym.envs.registry.get(env_id)
    if spec is None:
        return None
    entry_point = spec.entry_point
    if isinstance(entry_point, str):
        try:
            entry_point = gym.envs.registration.load_env_creator(entry_point)
        except (ImportError, AttributeError):
            return None
    return entry_point if isinstance(entry_point, type) else None


def evaluation_kwargs(env_id: str, env_kwargs: dict[str, Any], *, whole_split: bool = False) -> dict[str, Any]:
    """Evaluation settings derived from training settings: the **validation split** of the same market.

    What else changes is stated by the env class itself (no dispatch on id strings): an env whose
    ``sequential_evaluation`` is true visits every episode of the split once, in order
    (``sequential=True``); any other package env walks the whole split as one episode when
    ``whole_split`` (``episode_length=None``). Envs that are not the package's (no ``evaluation``
    attribute) keep their settings unchanged.
    """
    kwargs = dict(env_kwargs)
    cls = env_class(env_id)
    if getattr(cls, "evaluation", None) is None:
        return kwargs
    kwargs["split"] = "validation"
    if cls.sequential_evaluation:  # type: ignore[union-attr]
        kwargs["sequential"] = True
    elif whole_split:
        kwargs["episode_length"] = None
    return kwargs
