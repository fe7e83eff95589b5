"""RL Zoo integration: the documented commands train, enjoy, optimise and backtest for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from stable_baselines3.common.vec_env import SubprocVecEnv

import sb3_crypto
from sb3_crypto import zoo
from sb3_crypto.algorithms.model_io import load_observation_spec
from sb3_crypto.envs import trading
from sb3_crypto.zoo.cli import with_defaults

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "SB3_CRYPTO_THREADS": "1", "PYTHONWARNINGS": "ignore"}
SMALL_ENV = [
    "--env-kwargs",
    "episode_length:64",
    "window_size:8",
    "synthetic_kwargs:dict(n_bars=3000,seed=1)",
]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_with_defaults_fills_package_defaults() -> None:
    argv = with_defaults(["--algo", "sac", "--env", "CryptoTrading-v0"])
    assert argv[argv.index("-conf") + 1] == str(zoo.HYPERPARAMS_DIR / "sac.yml")
    assert argv[argv.index("--num-threads") + 1] == "1"
    assert "sb3_crypto" in argv
    kept = with_defaults(["--algo", "sac", "-conf", "mine.yml", "--num-threads", "2"])
    assert kept.count("-conf") == 1 and "mine.yml" in kept and kept.count("--num-threads") == 1


def test_eval_env_gets_yaml_kwargs_on_validation_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RL Zoo 2.9 drops YAML env_kwargs for the eval env; the package's manager passes them on."""
    created: list[dict] = []
    original = trading.CryptoTradingEnv.__init__

    def spy(self, *args, **kwargs):
        created.append(dict(kwargs))
        original(self, *args, **kwargs)

    monkeypatch.setattr(trading.CryptoTradingEnv, "__init__", spy)
    monkeypatch.chdir(tmp_path)
    from sb3_crypto.train import main

    main(
        [
            *"--algo sac --env CryptoTrading-v0 -n 200 --eval-freq 100 --eval-episodes 1 --save-freq 100 -f".split(),
            str(tmp_path / "logs"),
            *"--seed 0 -params learning_starts:50".split(),
        ]
    )
    splits = {kwargs.get("split", "train") for kwargs in created}
    assert splits == {"train", "validation"}
    validation = next(k for k in created if k.get("split") == "validation")
    assert validation["synthetic_kwargs"]["momentum"] > 0  # the YAML market, not a default env
    run = tmp_path / "logs" / "sac" / "CryptoTrading-v0_1"
    assert (run / "evaluations.npz").is_file()
    # Every model the run saves carries the observation spec of the training env.
    training = gym.make("CryptoTrading-v0", **{k: v for k, v in created[0].items() if k != "split"})
    expected = training.unwrapped.observation_spec()
    for name in ("CryptoTrading-v0.zip", "best_model.zip", "rl_model_100_steps.zip", "rl_model_200_steps.zip"):
        spec = load_observation_spec(run / name)
        assert spec is not None, name
        assert spec["normalizer"] == expected["normalizer"] and spec["env_kwargs"].get("split", "train") == "train", (
            name
        )
        assert spec["env_kwargs"]["synthetic_kwargs"] == created[0]["synthetic_kwargs"]


def test_documented_zoo_commands(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    # The README's plain RL Zoo command, from the repository root.
    run(
        [
            *"-m rl_zoo3.train --algo sac --env CryptoTrading-v0 --gym-packages sb3_crypto".split(),
            *"-conf hyperparams/sac.yml -n 300 --eval-freq -1 -f".split(),
            str(logs),
            *"--seed 1 --num-threads 1 -params learning_starts:100".split(),
            *SMALL_ENV,
        ],
        cwd=ROOT,
    )
    model = logs / "sac" / "CryptoTrading-v0_1" / "CryptoTrading-v0.zip"
    assert model.is_file()
    enjoy = run(
        [
            *"-m rl_zoo3.enjoy --algo sac --env CryptoTrading-v0 --gym-packages sb3_crypto -f".split(),
            str(logs),
            *"--no-render -n 100 --num-threads 1".split(),
        ],
        cwd=tmp_path,
    )
    assert "Loading" in enjoy.stdout
    out = tmp_path / "backtest"
    report = run(
        [
            "-m",
            "sb3_crypto.backtest",
            "--model",
            str(model),
            "--out",
            str(out),
            "--readiness",
            '{"sharpe": [">", 100.0]}',
        ],
        cwd=tmp_path,
    )
    assert "buy_and_hold" in report.stdout and "flat" in report.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"agent", "buy_and_hold", "flat", "random"}
    for name in ("equity.csv", "trades.csv", "equity.png"):
        assert (out / name).is_file()
    assert metrics["results"]["flat"]["total_return"] == 0.0
    readiness = metrics["production_readiness"]
    assert list(readiness["criteria"]) == ["sharpe"] and readiness["ready"] is False  # thresholds from the CLI
    equity = pd.read_csv(out / "equity.csv", index_col=0)
    # Buy-and-hold through the env: one fill at the first open, then marked at each close.
    env = gym.make(
        "CryptoTrading-v0",
        split="test",
        episode_length=None,
        window_size=8,
        synthetic_kwargs={"n_bars": 3000, "seed": 1},
    )
    base = env.unwrapped
    first = base.first_bar
    price = base.market.open[first + 1] * (1 + base.ledger.slippage)
    units = 10_000 / (price * (1 + base.ledger.fee_rate))
    last = base.market.close[base.last_bar + 1]
    assert equity["buy_and_hold"].iloc[-1] == pytest.approx(
        10_000 - units * price * (1 + base.ledger.fee_rate) + units * last
    )


@pytest.mark.parametrize("algo", ["sac", "sac_fast"])
def test_optimize_runs_trials(tmp_path: Path, algo: str) -> None:
    result = run(
        [
            *f"-m sb3_crypto.train --algo {algo} --env CryptoTrading-v0 -optimize --n-trials 2 -n 200".split(),
            *"--n-evaluations 1 --eval-episodes 1 --n-startup-trials 1 --no-optim-plots -f".split(),
            str(tmp_path / "logs"),
            *"--seed 0 -params learning_starts:50".split(),
            *SMALL_ENV,
        ],
        cwd=tmp_path,
    )
    assert re.search(r"Number of finished trials:\s+2", result.stdout)
    (report,) = (tmp_path / "logs" / algo).glob("report_CryptoTrading-v0_2-trials-*.csv")
    assert len(pd.read_csv(report)) == 2


def _make_env() -> gym.Env:
    return gym.make("sb3_crypto:CryptoTrading-v0", episode_length=16)


def test_registration_in_spawned_subprocesses() -> None:
    vec = SubprocVecEnv([_make_env, _make_env], start_method="spawn")
    try:
        obs = vec.reset()
        assert obs.shape == (2, *gym.make("CryptoTrading-v0").observation_space.shape)
        obs, rewards, _dones, infos = vec.step(np.zeros((2, 1), dtype=np.float32))
        assert np.isfinite(rewards).all() and "equity" in infos[0]
    finally:
        vec.close()
    spec = gym.spec("CryptoTrading-v0")
    assert spec.entry_point == sb3_crypto.ENV_IDS["CryptoTrading-v0"]


def test_enjoy_checks_the_model_against_its_env_before_running(tmp_path: Path) -> None:
    """A model that cannot act in the env enjoy would make is refused in one line naming both spaces."""
    import yaml
    from stable_baselines3 import PPO

    run = tmp_path / "logs" / "ppo" / "CryptoTrading-v0_1"
    (run / "CryptoTrading-v0").mkdir(parents=True)
    settings = {"window_size": 8, "episode_length": 32, "synthetic_kwargs": {"n_bars": 3000, "seed": 1}}
    PPO("MlpPolicy", gym.make("CryptoTrading-v0", **settings), n_steps=32, device="cpu").save(
        run / "CryptoTrading-v0.zip"
    )
    (run / "CryptoTrading-v0" / "config.yml").write_text(yaml.dump({"env_kwargs": settings}))
    base = [sys.executable, "-m", "sb3_crypto.enjoy", "--algo", "ppo", "--env", "CryptoTrading-v0", "-f", "logs"]
    base += ["--no-render", "-n", "20"]

    def enjoy(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *extra], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)

    wrong = enjoy("--env-kwargs", "window_size:16")
    assert wrong.returncode == 2, wrong.stderr[-2000:]
    message = wrong.stderr.strip().splitlines()[-1]
    assert "error:" in message and "Box" in message and "window_size" in message and "--env-kwargs" in message
    missing = enjoy("--exp-id", "7")
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert enjoy().returncode == 0
