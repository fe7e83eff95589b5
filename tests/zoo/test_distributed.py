"""Distributed tuning: two workers share one Optuna study; every trial recorded once, none duplicated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sb3_crypto.zoo.study import ensure_study, worker_seed

ENV = {**os.environ, "SB3_CRYPTO_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def worker(storage: str, cwd: Path, study_name: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "sb3_crypto.train",
        "--algo",
        "sac",
        "--env",
        "CryptoTrading-v0",
        "-optimize",
        "--storage",
        storage,
        "--study-name",
        study_name,
        "--n-trials",
        "2",
        "-n",
        "150",
        "--n-evaluations",
        "1",
        "--eval-episodes",
        "1",
        "--n-startup-trials",
        "10",
        "--no-optim-plots",
        "--seed",
        "3",
        "-f",
        "logs",
        "-params",
        "learning_starts:50",
        "--env-kwargs",
        "episode_length:32",
        "window_size:8",
        "synthetic_kwargs:dict(n_bars=2000,seed=1)",
    ]
    return subprocess.Popen(command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def postgres_url() -> str:
    """The server ``scripts/test_postgres.sh`` started (CI); the test fails loudly without one."""
    url = os.environ.get("SB3_CRYPTO_POSTGRES_URL")
    if not url:
        pytest.fail("SB3_CRYPTO_POSTGRES_URL is not set: run `bash scripts/test_postgres.sh`, which starts PostgreSQL")
    return url


@pytest.mark.parametrize("kind", ["journal", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_workers_share_a_study_without_duplicates(tmp_path: Path, kind: str) -> None:
    storages = {"journal": str(tmp_path / "study.log"), "sqlite": f"sqlite:///{tmp_path / 'study.db'}"}
    storage = postgres_url() if kind == "postgresql" else storages[kind]
    study_name = f"shared-{tmp_path.name}"  # a fresh study on a server that outlives one test
    for k in range(2):
        (tmp_path / f"w{k}").mkdir()
    workers = [worker(storage, tmp_path / f"w{k}", study_name) for k in range(2)]  # started together
    outputs = [process.communicate(timeout=600)[0] for process in workers]
    for process, output in zip(workers, outputs):
        assert process.returncode == 0, output[-3000:]
    if kind == "journal":
        backend = optuna.storages.journal.JournalFileBackend(storage)
        study = optuna.load_study(study_name=study_name, storage=optuna.storages.JournalStorage(backend))
    else:
        study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # every trial recorded once, none lost
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 4  # same --seed, yet no duplicated trial


def test_worker_seeds_differ_per_process_and_study_creation_is_idempotent(tmp_path: Path) -> None:
    assert worker_seed(3) == worker_seed(3)  # stable within a process
    storage = f"sqlite:///{tmp_path / 'x.db'}"
    ensure_study(storage, "s")
    ensure_study(storage, "s")  # a second worker finds it and loads it
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["s"]


def test_optimize_a_validation_metric_instead_of_the_mean_reward(tmp_path: Path) -> None:
    storage = str(tmp_path / "metric.log")
    command = [
        sys.executable,
        "-m",
        "sb3_crypto.train",
        "--algo",
        "ppo",
        "--env",
        "CryptoTrading-v0",
        "-optimize",
        "--optimize-metric",
        "sortino",
        "--storage",
        storage,
        "--study-name",
        "m",
        "--n-trials",
        "2",
        "-n",
        "128",
        "--n-evaluations",
        "1",
        "--eval-episodes",
        "1",
        "--no-optim-plots",
        "--seed",
        "0",
        "-f",
        "logs",
        "-params",
        "n_steps:64",
        "batch_size:64",
        "--env-kwargs",
        "episode_length:32",
        "window_size:8",
        "synthetic_kwargs:dict(n_bars=2000,seed=1)",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    backend = optuna.storages.journal.JournalFileBackend(storage)
    trials = optuna.load_study(study_name="m", storage=optuna.storages.JournalStorage(backend)).get_trials()
    assert len(trials) == 2
    for trial in trials:
        assert "mean_reward" in trial.user_attrs  # RL Zoo's own score is kept beside the metric
        assert trial.value != trial.user_attrs["mean_reward"]
        # the validation returns the audit's deflated Sharpe ratio and PBO are computed from
        assert trial.user_attrs["metric"] == "sortino" and trial.user_attrs["periods_per_year"] == 8760.0
        assert len(trial.user_attrs["validation_returns"]) > 100
        # what was tuned, so that an audit refuses a study of another algorithm or env
        assert (trial.user_attrs["algo"], trial.user_attrs["env_id"]) == ("ppo", "CryptoTrading-v0")
