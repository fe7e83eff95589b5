"""Learning: SAC + gSDE with the shipped hyper-parameters learns the planted signal.

The market carries a planted trend signal (``synthetic_kwargs.momentum`` in ``hyperparams/sac.yml``),
so a right answer exists. After a short run the deterministic policy, walking the untouched test
split once with fees and slippage, must beat both buy-and-hold and staying flat.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from stable_baselines3 import SAC
from stable_baselines3.common.utils import LinearSchedule

import sb3_crypto  # noqa: F401
from sb3_crypto.evaluation.baselines import compare_with_baselines
from sb3_crypto.sac import FastSAC

CONFIG = Path(__file__).resolve().parents[2] / "hyperparams" / "sac.yml"


def sac_from_yaml(env: gym.Env, seed: int, cls: type[SAC] = SAC) -> tuple[SAC, int]:
    """Build SAC exactly as RL Zoo would from the YAML entry (schedules and policy_kwargs parsed)."""
    params = dict(yaml.safe_load(CONFIG.read_text())["CryptoTrading-v0"])
    n_timesteps = int(params.pop("n_timesteps"))
    params.pop("env_kwargs")
    rate = params.pop("learning_rate")
    if isinstance(rate, str):
        initial = float(rate.split("_")[1])
        params["learning_rate"] = LinearSchedule(initial, 0.0, 1.0)
    params["policy_kwargs"] = eval(params["policy_kwargs"])  # RL Zoo's own convention for this key
    return cls(env=env, seed=seed, verbose=0, **params), n_timesteps


@pytest.mark.slow
@pytest.mark.parametrize("cls", [SAC, FastSAC], ids=["sb3", "fast"])
def test_sac_gsde_beats_buy_and_hold_and_flat_out_of_sample(cls: type[SAC]) -> None:
    env_kwargs = yaml.safe_load(CONFIG.read_text())["CryptoTrading-v0"]["env_kwargs"]
    model, n_timesteps = sac_from_yaml(gym.make("CryptoTrading-v0", **env_kwargs), seed=0, cls=cls)
    assert model.use_sde
    model.learn(n_timesteps)
    results = compare_with_baselines(
        model, lambda: gym.make("CryptoTrading-v0", **{**env_kwargs, "split": "test", "episode_length": None})
    )
    summary = {result.name: result.summary() for result in results}
    agent = summary["agent"]
    assert agent["total_return"] > summary["buy_and_hold"]["total_return"]
    assert agent["total_return"] > summary["flat"]["total_return"] == 0.0
    assert agent["sharpe"] > max(summary["buy_and_hold"]["sharpe"], 0.5)
    assert agent["fills"] > 1  # it trades the signal, not a constant position
