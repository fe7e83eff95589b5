"""Optuna search spaces for the package's algorithms, and the merge that keeps a config's policy settings.

RL Zoo replaces the whole ``policy_kwargs`` with the sampled one, dropping e.g. a features extractor
set in YAML; :func:`merge_policy_kwargs` merges the sampled keys over the config's instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

RAINBOW_NET_ARCH = {"small": [64, 64], "medium": [256, 256], "s0": [512, 256, 128]}


def sample_rainbow_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:
    """Optuna search space for RainbowDQN / D3QN (already converted to constructor arguments)."""
    del n_actions, n_envs, additional_args
    return {
        "gamma": 1.0 - trial.suggest_float("one_minus_gamma", 1e-3, 0.05, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "batch_size": 2 ** trial.suggest_int("batch_size_pow", 5, 8),
        "n_steps": trial.suggest_categorical("n_steps", [1, 3, 5]),
        "alpha": trial.suggest_float("alpha", 0.2, 0.8),
        "beta0": trial.suggest_float("beta0", 0.2, 0.6),
        "target_update_interval": trial.suggest_categorical("target_update_interval", [100, 500, 1000, 2000]),
        "train_freq": trial.suggest_categorical("train_freq", [1, 4, 8]),
        "policy_kwargs": {"net_arch": RAINBOW_NET_ARCH[trial.suggest_categorical("net_arch", list(RAINBOW_NET_ARCH))]},
    }


def convert_rainbow_params(params: dict[str, Any]) -> dict[str, Any]:
    """Turn a stored trial's raw parameters back into constructor arguments (``--trial-id``)."""
    out = {k: v for k, v in params.items() if k not in ("one_minus_gamma", "batch_size_pow", "net_arch")}
    out["gamma"] = 1.0 - params["one_minus_gamma"]
    out["batch_size"] = 2 ** params["batch_size_pow"]
    out["policy_kwargs"] = {"net_arch": RAINBOW_NET_ARCH[params["net_arch"]]}
    return out


def merge_policy_kwargs(sampler: Callable[..., dict[str, Any]], base: dict[str, Any] | None) -> Callable:
    """Wrap a sampler so its ``policy_kwargs`` are merged over ``base`` instead of replacing it."""

    def sample(*args: Any, **kwargs: Any) -> dict[str, Any]:
        params = sampler(*args, **kwargs)
        if isinstance(base, dict) and "policy_kwargs" in params:
            params["policy_kwargs"] = {**base, **params["policy_kwargs"]}
        return params

    return sample
