"""Window extractors and dotted-name policies across algorithms; every shipped RL Zoo config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from sb3_contrib import QRDQN, MaskablePPO, RecurrentPPO
from stable_baselines3 import DQN, PPO, SAC

import sb3_crypto  # noqa: F401
from sb3_crypto.policies import EXTRACTORS, POLICIES, WindowMlpExtractor
from sb3_crypto.rainbow import RainbowDQN
from sb3_crypto.zoo.samplers import merge_policy_kwargs

ROOT = Path(__file__).resolve().parents[2]
ALGOS = {
    "DQNPolicy": (DQN, "CryptoFuturesSession-v0", {"learning_starts": 16}),
    "QRDQNPolicy": (QRDQN, "CryptoFuturesSession-v0", {"learning_starts": 16}),
    "ActorCriticPolicy": (PPO, "CryptoFuturesSession-v0", {"n_steps": 32, "batch_size": 32}),
    "MaskablePolicy": (MaskablePPO, "CryptoFuturesSession-v0", {"n_steps": 32, "batch_size": 32}),
    "LstmPolicy": (RecurrentPPO, "CryptoFuturesSession-v0", {"n_steps": 32, "batch_size": 32}),
    "SACPolicy": (SAC, "CryptoTrading-v0", {"learning_starts": 16}),
}


@pytest.mark.parametrize("extractor", sorted(EXTRACTORS))
@pytest.mark.parametrize("suffix", sorted(ALGOS))
def test_every_extractor_with_every_algorithm(tmp_path: Path, extractor: str, suffix: str) -> None:
    algo, env_id, kwargs = ALGOS[suffix]
    env = gym.make(env_id)
    model = algo(POLICIES[extractor + suffix], env, seed=0, **kwargs)
    model.learn(64)
    extractors = {type(m) for m in model.policy.modules() if isinstance(m, EXTRACTORS[extractor])}
    assert extractors == {EXTRACTORS[extractor]}
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model")
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


def test_extractor_reads_the_declared_layout() -> None:
    env = gym.make("CryptoFuturesSession-v0", window_size=12, history=2)
    space = env.observation_space
    extractor = WindowMlpExtractor(space, features_dim=8)
    assert (extractor.window_size, extractor.n_channels, extractor.rest_dim) == (12, 7, 4 + 8)
    obs, _ = env.reset(seed=0)
    window, rest = extractor.split(th.as_tensor(obs[None]))
    expected_window, expected_rest = space.layout.split(obs)
    np.testing.assert_array_equal(window[0].numpy(), expected_window)
    np.testing.assert_array_equal(rest[0].numpy(), expected_rest)
    assert extractor(th.as_tensor(obs[None])).shape == (1, 8)
    plain = gym.spaces.Box(-1, 1, (20,), np.float32)
    with pytest.raises(ValueError, match="has no layout; pass window_size and n_channels"):
        WindowMlpExtractor(plain)
    assert WindowMlpExtractor(plain, window_size=4, n_channels=4).rest_dim == 4


ENV = {**os.environ, "SB3_CRYPTO_THREADS": "1", "PYTHONWARNINGS": "ignore"}
CONFIGS = [
    (path.stem, env_id)
    for path in sorted((ROOT / "hyperparams").glob("*.yml"))
    for env_id in yaml.safe_load(path.read_text())
]


@pytest.mark.parametrize(("algo", "env_id"), CONFIGS)
def test_every_shipped_config_trains_and_enjoys(tmp_path: Path, algo: str, env_id: str) -> None:
    """The documented commands, tiny budgets: train through RL Zoo, then load with enjoy."""
    params = ["-params", "learning_starts:64"] if algo in ("dqn", "qrdqn", "sac", "rainbow", "d3qn") else []
    train = [
        sys.executable,
        "-m",
        "sb3_crypto.train",
        "--algo",
        algo,
        "--env",
        env_id,
        "-n",
        "256",
        "--eval-freq",
        "128",
        "--eval-episodes",
        "2",
        "-f",
        "logs",
        "--seed",
        "0",
        *params,
    ]
    enjoy = [
        sys.executable,
        "-m",
        "sb3_crypto.enjoy",
        "--algo",
        algo,
        "--env",
        env_id,
        "-f",
        "logs",
        "--no-render",
        "-n",
        "64",
    ]
    for command in (train, enjoy):
        result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (tmp_path / "logs" / algo / f"{env_id}_1" / f"{env_id}.zip").is_file()


@pytest.mark.parametrize(
    ("algo", "algo_class", "policy"), [("dqn", DQN, "ConvDQNPolicy"), ("rainbow", RainbowDQN, "ConvRainbowPolicy")]
)
def test_optimize_keeps_the_configured_extractor(tmp_path: Path, algo: str, algo_class: type, policy: str) -> None:
    command = [
        sys.executable,
        "-m",
        "sb3_crypto.train",
        "--algo",
        algo,
        "--env",
        "CryptoFuturesSession-v0",
        *"-optimize --n-trials 1 -n 300 --n-evaluations 1 --eval-episodes 2 --no-optim-plots".split(),
        *"-f logs --seed 0 --optimization-log-path trials -params learning_starts:64".split(),
    ]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (best,) = (tmp_path / "trials").glob("trial_*/best_model.zip")
    model = algo_class.load(best)
    assert type(model.policy).__name__ == policy
    assert any(isinstance(m, EXTRACTORS["Conv"]) for m in model.policy.modules())


def test_sampled_policy_kwargs_merge_over_the_config() -> None:
    extractor = EXTRACTORS["Conv"]
    sampler = merge_policy_kwargs(
        lambda *args: {"gamma": 0.9, "policy_kwargs": {"net_arch": [8]}},
        {"features_extractor_class": extractor, "net_arch": [64]},
    )
    assert sampler() == {"gamma": 0.9, "policy_kwargs": {"features_extractor_class": extractor, "net_arch": [8]}}
