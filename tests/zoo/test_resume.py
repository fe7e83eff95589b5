"""True resume: a training run killed with SIGKILL continues from its newest checkpoint.

The killed-and-resumed run must end like an uninterrupted one with the same settings: the same
final step count, checkpoints numbered on from where it stopped, the replay buffer of the same size
holding the same number of transitions, the learning-rate schedule at the same point, and one
monitor log appended to rather than replaced.

Why the parameters are not compared: a checkpoint holds the model, the optimiser, the replay buffer
and the step counter, but not the environment's episode in progress (its bar cursor and ledger) nor
the random generators' state. A resumed run therefore starts a new episode where the uninterrupted
run continued the old one, and every transition, batch and gradient after the kill differs.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ENV = {**os.environ, "SB3_CRYPTO_THREADS": "1", "PYTHONWARNINGS": "ignore"}
STEPS, SAVE_FREQ, KILL_AFTER = 900, 300, 600
COMMON = [
    "--seed",
    "0",
    "-n",
    str(STEPS),
    "--save-freq",
    str(SAVE_FREQ),
    "--eval-freq",
    "-1",
    "--save-replay-buffer",
]
TRADING = ["--env-kwargs", "episode_length:64", "window_size:8", "synthetic_kwargs:dict(n_bars=3000,seed=1)"]
#: algorithm -> (env id, its options): a continuous and a discrete (prioritized replay) learner.
ALGOS = {
    "sac": ("CryptoTrading-v0", ["-params", "learning_starts:100", "buffer_size:5000", *TRADING]),
    "rainbow": ("CryptoFuturesSession-v0", ["-params", "learning_starts:100", "buffer_size:5000", "train_freq:4"]),
    # VecNormalize: its running statistics are checkpointed and continued too.
    "sac-normalize": (
        "CryptoTrading-v0",
        ["-params", "learning_starts:100", "buffer_size:5000", "normalize:True", *TRADING],
    ),
}


def _train(args: list[str], folder: Path) -> subprocess.Popen:
    logs = [] if args[0] == "--resume" else ["-f", str(folder / "logs")]
    command = [sys.executable, "-m", "sb3_crypto.train", *args, *logs]
    return subprocess.Popen(command, cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    return output


def _algorithm(case: str) -> str:
    return case.split("-")[0]


def _run_dir(folder: Path, case: str) -> Path:
    (run,) = (folder / "logs" / _algorithm(case)).glob(f"{ALGOS[case][0]}_*")
    return run


def _final(run: Path, case: str):
    from sb3_crypto.algorithms import ALGORITHMS

    model = ALGORITHMS[_algorithm(case)].load(run / f"{ALGOS[case][0]}.zip", device="cpu")
    model.load_replay_buffer(run / "replay_buffer.pkl")
    return model


def _rates(model) -> list[float]:
    """The learning rate of every optimiser of the policy (SAC has one per actor and critic)."""
    optimizers = [m.optimizer for m in (model.policy, *model.policy.children()) if hasattr(m, "optimizer")]
    assert optimizers
    return [group["lr"] for optimizer in optimizers for group in optimizer.param_groups]


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_a_killed_run_resumes_to_the_same_end_as_an_uninterrupted_one(tmp_path: Path, algo: str) -> None:
    env_id, options = ALGOS[algo]
    args = ["--algo", _algorithm(algo), "--env", env_id, *options, *COMMON]
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole_dir.mkdir()
    killed_dir.mkdir()
    whole = _train(args, whole_dir)
    killed = _train(args, killed_dir)
    checkpoint = killed_dir / "logs" / _algorithm(algo) / f"{env_id}_1" / f"rl_model_{KILL_AFTER}_steps.zip"
    deadline = time.monotonic() + 300
    while not checkpoint.is_file():
        assert killed.poll() is None, killed.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    _finish(whole)
    run = _run_dir(killed_dir, algo)
    assert not (run / f"{env_id}.zip").exists(), "the kill came after the end"
    monitor_rows_before = len(pd.read_csv(run / "0.monitor.csv", skiprows=1))

    output = _finish(_train(["--resume", str(run)], killed_dir))
    assert "Resuming at" in output

    reference, resumed = _final(_run_dir(whole_dir, algo), algo), _final(run, algo)
    assert resumed.num_timesteps == reference.num_timesteps == STEPS
    assert resumed._n_updates == reference._n_updates > 0
    assert resumed.replay_buffer.size() == reference.replay_buffer.size() == STEPS
    assert resumed.replay_buffer.pos == reference.replay_buffer.pos
    if algo == "rainbow":  # priorities travel with the buffer: every stored transition has one
        assert (resumed.replay_buffer.tree.leaves[:STEPS] > 0).all()
    # The schedule is a function of the progress, which continued from the checkpoint.
    assert resumed._current_progress_remaining == pytest.approx(reference._current_progress_remaining)
    assert _rates(resumed) == pytest.approx(_rates(reference))
    # Checkpoints numbered on from the kill, as in the uninterrupted run; one replay buffer kept.
    names = sorted(p.name for p in run.glob("rl_model_*_steps.zip"))
    assert names == sorted(p.name for p in _run_dir(whole_dir, algo).glob("rl_model_*_steps.zip"))
    assert [p.name for p in run.glob("rl_model_replay_buffer_*.pkl")] == [f"rl_model_replay_buffer_{STEPS}_steps.pkl"]
    assert not list(run.rglob("*.partial*"))
    # The monitor log was appended to (one header, the rows from before the kill kept).
    text = (run / "0.monitor.csv").read_text()
    assert text.count("#{") == 1
    assert len(pd.read_csv(run / "0.monitor.csv", skiprows=1)) > monitor_rows_before
    if algo.endswith("normalize"):  # the statistics went on from the checkpoint's: as many observations seen
        assert "Loading VecNormalize statistics" in output

        def seen(folder: Path) -> float:
            with open(folder / env_id / "vecnormalize.pkl", "rb") as handle:
                return float(pickle.load(handle).obs_rms.count)

        # One observation more: the resumed run starts a new episode, whose first observation counts too.
        assert seen(run) == pytest.approx(seen(_run_dir(whole_dir, algo)) + 1)
    recorded = yaml.load(
        (run / env_id / "config.yml").read_text(), Loader=yaml.UnsafeLoader
    )  # RL Zoo writes an OrderedDict
    assert recorded  # the resumed run kept the config of its start


def test_resume_names_what_is_missing(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "sb3_crypto.train", "--resume", str(tmp_path / "nope")]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "no such run folder" in result.stderr
    (tmp_path / "run" / "CryptoTrading-v0").mkdir(parents=True)
    command[-1] = str(tmp_path / "run")
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "resume.json" in result.stderr


def test_training_that_cannot_update_warns() -> None:
    import gymnasium as gym
    from stable_baselines3 import SAC

    import sb3_crypto  # noqa: F401
    from sb3_crypto.zoo.manager import warn_if_no_updates

    model = SAC("MlpPolicy", gym.make("CryptoTrading-v0", episode_length=32), learning_starts=500, device="cpu")
    with pytest.warns(UserWarning, match="no gradient update.*learning_starts"):
        assert warn_if_no_updates(model, 400)
    assert not warn_if_no_updates(model, 600)
