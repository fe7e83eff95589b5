"""The observation spec travels inside the model's zip: written with the model or added later,
read back, and ignored by SB3's own loader."""

from __future__ import annotations

import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_crypto
from sb3_crypto.algorithms.model_io import (
    OBSERVATION_SPEC_ENTRY,
    load_observation_spec,
    observation_spec_of,
    save_model_with_spec,
    save_observation_spec,
)

SETTINGS = {"window_size": 8, "episode_length": 32, "synthetic_kwargs": {"n_bars": 1500, "seed": 2}}


def make() -> gym.Env:
    return gym.make("CryptoTrading-v0", **SETTINGS)


def test_spec_in_the_zip_round_trips_and_sb3_still_loads(tmp_path: Path) -> None:
    vec = DummyVecEnv([make])
    model = PPO("MlpPolicy", vec, n_steps=32, batch_size=32, device="cpu")
    path = save_model_with_spec(model, tmp_path / "agent")
    assert path == tmp_path / "agent.zip"
    spec = load_observation_spec(path)
    assert spec == make().unwrapped.observation_spec() == observation_spec_of(vec)
    assert spec["env_id"] == "CryptoTrading-v0" and spec["env_kwargs"] == SETTINGS
    assert spec["bars"]["needed"] == 9 and spec["account_state"]["type"] == "TradingAccount"
    with zipfile.ZipFile(path) as archive:
        assert OBSERVATION_SPEC_ENTRY in archive.namelist()
    loaded = PPO.load(path, device="cpu")
    obs = make().reset(seed=0)[0]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_spec_added_to_a_plain_model_and_replaced(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", make(), n_steps=32, batch_size=32, device="cpu")
    model.save(tmp_path / "plain.zip")
    assert load_observation_spec(tmp_path / "plain") is None  # ".zip" may be left out, as SB3 allows
    save_observation_spec(tmp_path / "plain.zip", make())
    first = load_observation_spec(tmp_path / "plain.zip")
    other = gym.make("CryptoTrading-v0", **{**SETTINGS, "fee": 0.002})
    save_observation_spec(tmp_path / "plain.zip", other)  # replaces the entry, keeps the model
    with zipfile.ZipFile(tmp_path / "plain.zip") as archive:
        assert archive.namelist().count(OBSERVATION_SPEC_ENTRY) == 1
    assert load_observation_spec(tmp_path / "plain.zip")["env_kwargs"]["fee"] == 0.002 != first["env_kwargs"].get("fee")
    PPO.load(tmp_path / "plain.zip", device="cpu")
    with pytest.raises(ValueError, match="has no observation spec"):
        save_observation_spec(tmp_path / "plain.zip", gym.make("CartPole-v1"))
    with pytest.raises(FileNotFoundError, match="no model file at"):
        save_observation_spec(tmp_path / "missing.zip", make())


def test_models_of_other_envs_are_saved_without_a_spec(tmp_path: Path) -> None:
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu")
    path = save_model_with_spec(model, tmp_path / "cartpole.zip")
    assert load_observation_spec(path) is None
    PPO.load(path, device="cpu")


def test_settings_given_positionally_and_frames_as_data(tmp_path: Path) -> None:
    frame = make().unwrapped.market.frame
    env = sb3_crypto.CryptoTradingEnv(frame, window_size=8, episode_length=32)
    spec = env.observation_spec()
    assert spec["env_id"] == "CryptoTrading-v0"
    assert spec["env_kwargs"] == {"data": None, "window_size": 8, "episode_length": 32}
    assert spec["data_source"].startswith("synthetic(seed=2")  # the frame's own attrs["source"]
    assert spec["normalizer"] == make().unwrapped.observation_spec()["normalizer"]
