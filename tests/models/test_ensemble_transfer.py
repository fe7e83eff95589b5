"""Ensembles on hand-set models; shape-aware transfer for SAC and PPO (S2)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN, PPO, SAC

import sb3_crypto  # noqa: F401
from sb3_crypto.common.transfer import load_weights
from sb3_crypto.evaluation.rollout import run_policy
from sb3_crypto.policies.ensemble import EnsemblePolicy


class Fixed:
    """A stand-in model that always predicts the same action."""

    def __init__(self, action, observation_space, action_space) -> None:
        self.action = np.asarray(action)
        self.observation_space = observation_space
        self.action_space = action_space

    def predict(self, observation, deterministic=True, **kwargs):
        return self.action, None


BOX_OBS = gym.spaces.Box(-1, 1, (3,), np.float32)


def test_weighted_mean_action_for_continuous_spaces() -> None:
    space = gym.spaces.Box(-1, 1, (1,), np.float32)
    ensemble = EnsemblePolicy([Fixed([1.0], BOX_OBS, space), Fixed([-0.5], BOX_OBS, space)], weights=[3, 1])
    action, _ = ensemble.predict(np.zeros(3, np.float32))
    np.testing.assert_allclose(action, [0.75 * 1.0 + 0.25 * -0.5])


def test_weighted_vote_and_mean_q_for_discrete_spaces() -> None:
    space = gym.spaces.Discrete(3)
    ensemble = EnsemblePolicy(
        [Fixed(2, BOX_OBS, space), Fixed(1, BOX_OBS, space), Fixed(1, BOX_OBS, space)], weights=[0.5, 0.2, 0.2]
    )
    assert ensemble.predict(np.zeros(3, np.float32))[0] == 2  # 0.5 beats 0.2 + 0.2
    env = gym.make("CartPole-v1")
    first, second = DQN("MlpPolicy", env, seed=0), DQN("MlpPolicy", env, seed=1)
    obs = np.array([0.1, 0.0, -0.1, 0.2], dtype=np.float32)
    with th.no_grad():
        q1 = first.q_net(th.as_tensor(obs[None])).numpy()
        q2 = second.q_net(th.as_tensor(obs[None])).numpy()
    mean_q = EnsemblePolicy([first, second], weights=[1, 3], mode="mean_q")
    np.testing.assert_allclose(mean_q.q_values(obs), 0.25 * q1 + 0.75 * q2, rtol=1e-6)
    assert mean_q.predict(obs)[0] == int((0.25 * q1 + 0.75 * q2).argmax())
    masked = mean_q.predict(obs, action_masks=np.array([True, False]))[0]
    assert masked == 0
    with pytest.raises(ValueError, match="mean_q"):
        EnsemblePolicy([Fixed(0, BOX_OBS, space)], mode="mean_q")
    with pytest.raises(ValueError, match="one non-negative weight per model"):
        EnsemblePolicy([first, second], weights=[1.0])


def test_ensemble_runs_in_the_backtester() -> None:
    env = gym.make("CryptoTrading-v0", split="test", episode_length=None)
    members = [SAC("MlpPolicy", env, seed=s) for s in (0, 1)]
    result = run_policy(EnsemblePolicy(members), env)
    assert len(result.equity) == env.unwrapped.n_decisions + 1


@pytest.mark.parametrize("algo", [SAC, PPO])
def test_transfer_learning_for_sac_and_ppo(tmp_path: Path, algo) -> None:
    env = gym.make("CryptoTrading-v0", window_size=16)
    source = algo("MlpPolicy", env, policy_kwargs={"net_arch": [32, 32]}, seed=0)
    source.save(tmp_path / "source")
    target = algo("MlpPolicy", env, policy_kwargs={"net_arch": [32, 16]}, seed=1)
    with pytest.raises(ValueError, match="saved weights do not fit"):
        load_weights(target, tmp_path / "source")
    report = load_weights(target, tmp_path / "source", partial=True)
    assert report.copied and report.mismatched
    name = report.copied[0]
    th.testing.assert_close(target.policy.state_dict()[name], source.policy.state_dict()[name])
