"""The training display of ``python -m sb3_crypto.train``: a tqdm bar with steps, steps/s and the
validation return in place of SB3's logger table (``--verbose 1`` restores the table)."""

from __future__ import annotations

import io

import gymnasium as gym
from stable_baselines3.common.callbacks import CallbackList, EvalCallback
from stable_baselines3.common.monitor import Monitor

import sb3_crypto  # noqa: F401
from sb3_crypto.sac import FastSAC
from sb3_crypto.train import main
from sb3_crypto.zoo import ExperimentManager
from sb3_crypto.zoo.progress import TrainingProgress


def test_bar_shows_steps_rate_and_validation_return() -> None:
    def make_env():
        return Monitor(gym.make("CryptoTrading-v0", window_size=16, episode_length=64))

    model = FastSAC("MlpPolicy", make_env(), learning_starts=100, batch_size=32, seed=0)
    evaluation = EvalCallback(make_env(), eval_freq=150, n_eval_episodes=1, verbose=0)
    out = io.StringIO()
    progress = TrainingProgress(evaluation, refresh_steps=50, file=out)
    model.learn(300, callback=CallbackList([evaluation, progress]))
    text = out.getvalue()
    assert "300/300" in text and "step/s" in text
    assert "val return=" in text and "best=" in text and "train return=" in text


def test_train_picks_the_display_unless_verbose_is_given(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr("sb3_crypto.train.run_with_argv", lambda entry, args: seen.append(list(args)))
    main(["--algo", "sac_fast", "--env", "CryptoTrading-v0"])
    assert ExperimentManager.progress_display and seen[-1][-2:] == ["--verbose", "0"]
    assert "--verbose" not in ExperimentManager.package_argv  # a resumed run picks the display again
    main(["--algo", "sac_fast", "--env", "CryptoTrading-v0", "--verbose", "1"])
    assert not ExperimentManager.progress_display and seen[-1].count("--verbose") == 1
    main(["--algo", "sac_fast", "--env", "CryptoTrading-v0", "-optimize"])
    assert not ExperimentManager.progress_display
    ExperimentManager.progress_display = False
