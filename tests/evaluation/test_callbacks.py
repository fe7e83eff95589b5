"""Risk-metric and early-stopping callbacks, directly and from RL Zoo YAML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure

import sb3_crypto  # noqa: F401
from sb3_crypto.evaluation.callbacks import EarlyStoppingCallback, RiskMetricsCallback

SMALL = {"window_size": 8, "episode_length": 64, "synthetic_kwargs": {"n_bars": 3000, "seed": 3}}


def test_risk_metrics_are_logged_and_best_model_saved(tmp_path: Path) -> None:
    env = gym.make("CryptoTrading-v0", **SMALL)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0)
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    callback = RiskMetricsCallback(eval_freq=64, metric="sortino", best_model_save_path=str(tmp_path / "best"))
    model.learn(192, callback=callback)
    assert len(callback.history) == 3
    assert callback._eval_kwargs["split"] == "validation" and callback._eval_kwargs["episode_length"] is None
    assert callback._eval_kwargs["synthetic_kwargs"] == SMALL["synthetic_kwargs"]  # the training market
    for key in ("sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "commission", "fills", "round_trips"):
        assert key in callback.last_metrics
    assert callback.last_metrics["round_trips"] <= callback.last_metrics["fills"]
    header = (tmp_path / "log" / "progress.csv").read_text().splitlines()[0]
    assert "risk/sharpe" in header and "risk/max_drawdown" in header and "risk/round_trips" in header
    assert [p.name for p in (tmp_path / "best").iterdir()] == ["best_model.zip"]  # saved atomically
    assert callback.best_value == np.nanmax([h["sortino"] for h in callback.history])  # nan never wins


def test_early_stopping_stops_after_patience() -> None:
    env = gym.make("CryptoTrading-v0", **SMALL)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0)
    callback = EarlyStoppingCallback(eval_freq=32, patience=2, min_delta=1e9)  # nothing counts as improving
    model.learn(10_000, callback=callback)
    assert callback.stopped_early and callback.stale == callback.patience
    # Training ends at the evaluation that ran out of patience (a nan metric never counts as better).
    assert model.num_timesteps == 32 * len(callback.history) <= 32 * 4
    with pytest.raises(ValueError, match="patience"):
        EarlyStoppingCallback(patience=0)


def test_session_metrics_with_masks() -> None:
    env = gym.make("CryptoFuturesSession-v0")
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0)
    callback = RiskMetricsCallback(eval_freq=64)
    model.learn(64, callback=callback)
    assert {"win_rate", "mean_pnl", "sharpe", "profit_factor"} <= set(callback.last_metrics)
    assert callback.last_metrics["sessions"] == env.unwrapped.__class__(split="validation").n_sessions
    assert "round_trips" not in callback.last_metrics  # flat sessions are no round trips


def test_callbacks_from_rl_zoo_yaml(tmp_path: Path) -> None:
    config = {
        "CryptoTrading-v0": {
            "n_timesteps": 256,
            "policy": "MlpPolicy",
            "n_steps": 64,
            "batch_size": 64,
            "env_kwargs": SMALL,
            "callback": [
                {
                    "sb3_crypto.evaluation.callbacks.RiskMetricsCallback": {
                        "eval_freq": 128,
                        "metric": "sharpe",
                        "best_model_save_path": "risk_best",
                    }
                },
                {"stable_baselines3.common.callbacks.CheckpointCallback": {"save_freq": 128, "save_path": "ckpt"}},
            ],
        }
    }
    (tmp_path / "ppo.yml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable,
        "-m",
        "sb3_crypto.train",
        "--algo",
        "ppo",
        "--env",
        "CryptoTrading-v0",
        "-conf",
        "ppo.yml",
        "-f",
        "logs",
        "--seed",
        "0",
        "--eval-freq",
        "-1",
        "--verbose",
        "1",  # SB3's table (the metrics it prints) instead of the progress bar
    ]
    environment = {**os.environ, "SB3_CRYPTO_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    first = tmp_path / "logs" / "ppo" / "CryptoTrading-v0_1"
    for run in (1, 2):
        result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "| risk/" in result.stdout and "sortino" in result.stdout  # SB3 prints keys grouped by prefix
        # The YAML's relative paths land inside the run's folder, so a second run writes beside the first.
        folder = tmp_path / "logs" / "ppo" / f"CryptoTrading-v0_{run}"
        assert (folder / "risk_best" / "best_model.zip").is_file()
        assert sorted(p.name for p in (folder / "ckpt").iterdir()) == [
            "rl_model_128_steps.zip",
            "rl_model_256_steps.zip",
        ]
        if run == 1:
            saved = {p: p.read_bytes() for p in first.rglob("*.zip")}
    assert not (tmp_path / "risk_best").exists() and not (tmp_path / "ckpt").exists()
    assert all(path.read_bytes() == content for path, content in saved.items())  # the first run is untouched


@pytest.mark.parametrize(("threshold", "final_stage"), [(-1e9, 2), (1e9, 0)])
def test_curriculum_advances_when_the_metric_passes(threshold: float, final_stage: int) -> None:
    from sb3_crypto.evaluation.callbacks import CurriculumCallback

    env = gym.make("CryptoTrading-v0", **SMALL)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0)
    stages = [{"synthetic_kwargs": {"n_bars": 3000, "seed": 3, "annual_vol": v}} for v in (0.3, 0.6, 0.9)]
    callback = CurriculumCallback(stages, threshold, eval_freq=32, metric="total_return")
    model.learn(160, callback=callback)
    assert callback.stage == final_stage
    market = model.get_env().get_attr("market")[0]
    assert market.frame.attrs["source"].startswith("synthetic(seed=3")
    volatility = np.std(np.diff(np.log(market.close))) * np.sqrt(8760)
    assert volatility == pytest.approx(stages[final_stage]["synthetic_kwargs"]["annual_vol"], rel=0.5)
    assert callback._eval_kwargs["synthetic_kwargs"] == stages[final_stage]["synthetic_kwargs"]
    assert callback._eval_kwargs["split"] == "validation"


def test_reconfigure_keeps_the_spaces() -> None:
    env = gym.make("CryptoTrading-v0", **SMALL)
    env.unwrapped.reconfigure(window_size=4)
    with pytest.raises(ValueError, match="may not change the observation or action space"):
        env.reset(seed=0)
