"""``python -m sb3_crypto.audit`` end to end on a tiny real training run: the files it writes, the
cache a second audit reuses, results shared through Optuna storage, and the ``--worker`` loop."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sb3_crypto.audit import core, resolve_target
from sb3_crypto.audit.__main__ import main
from sb3_crypto.audit.jobs import STUDY_NAME, make_job, open_study, work
from sb3_crypto.deploy.audit_info import check_audit_matches, read_audit

TINY = """\
CryptoTrading-v0:
  n_timesteps: 512
  policy: "MlpPolicy"
  n_steps: 256
  batch_size: 64
  n_epochs: 1
  policy_kwargs: "dict(net_arch=[16])"
  env_kwargs:
    data: synthetic
    synthetic_kwargs: {n_bars: 1200, freq: 1h, seed: 3, momentum: 0.7}
    window_size: 8
    episode_length: 64
    fee: 0.0005
    slippage: 0.0002
"""

FIGURES = (
    "test_sharpe",
    "null_p_value",
    "n_null_runs",
    "power_recovered",
    "break_even_fee",
    "pnl_before_costs",
    "turnover",
    "mean_holding_bars",
    "deflated_sharpe",
    "pbo",
    "seed_iqm",
    "seed_iqm_ci_low",
    "seed_iqm_ci_high",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A PPO run of 512 steps trained by ``python -m sb3_crypto.train`` (RL Zoo's run folder)."""
    root = tmp_path_factory.mktemp("audit_run")
    (root / "tiny.yml").write_text(TINY)
    command = [sys.executable, "-m", "sb3_crypto.train", "--algo", "ppo", "--env", "CryptoTrading-v0"]
    command += ["-conf", str(root / "tiny.yml"), "-f", str(root / "logs"), "--seed", "0", "--eval-freq", "-1"]
    env = {**os.environ, "SB3_CRYPTO_THREADS": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=root)
    return root / "logs" / "ppo" / "CryptoTrading-v0_1"


@pytest.mark.slow
def test_audit_of_a_trained_run_writes_its_verdict_and_reuses_its_results(tiny_run, tmp_path):
    storage = f"sqlite:///{tmp_path / 'jobs.db'}"
    argv = ["--run", str(tiny_run), "--null-runs", "2", "--power-runs", "1", "--seeds", "1", "--no-progress"]
    argv += ["--cost-multiples", "0,1,2"]
    report = main(argv)  # trains here, in this process's job runner
    out = tiny_run / "audit"
    written = json.loads((out / "audit.json").read_text())
    assert written["schema"] == 1 and written["verdict"] == report["verdict"]
    assert written["verdict"] in {"edge", "no_evidence", "leak_found", "untestable"}
    assert written["reasons"] and all(isinstance(reason, str) for reason in written["reasons"])
    assert set(FIGURES) <= set(written["figures"])
    assert all(v is None or isinstance(v, (int, float)) for v in written["figures"].values())
    assert written["figures"]["n_null_runs"] == 2
    assert written["figures"]["null_p_value"] in (pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0)
    assert written["figures"]["power_recovered"] in (0.0, 1.0)
    assert written["figures"]["deflated_sharpe"] is None  # no study given
    assert datetime.datetime.fromisoformat(written["created"]).tzinfo is not None
    assert Path(written["model"]) == tiny_run / "CryptoTrading-v0.zip"
    # the export reads it (its verdict goes into the ONNX metadata) and the page leads with the verdict
    assert read_audit(out / "audit.json").verdict == written["verdict"]
    assert check_audit_matches(read_audit(out / "audit.json"), tiny_run / "CryptoTrading-v0.zip") is None
    page = (out / "audit.html").read_text()
    assert written["verdict_text"] in page and "2. Null test" in page and "6. Seeds" in page
    # every training job ran the run's own config (PPO, its policy_kwargs) with the market swapped
    jobs = sorted((out / "cache" / "jobs").glob("*/job.json"))
    assert len(jobs) == 4
    specs = [json.loads(path.read_text()) for path in jobs]
    assert {spec["part"] for spec in specs} == {"null", "power", "seeds"}
    assert all(spec["hyperparams"]["policy_kwargs"] == "dict(net_arch=[16])" for spec in specs)
    assert all(spec["steps"] == 512 and spec["algo"] == "ppo" for spec in specs)

    # an audit already there is not replaced silently
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2 and "--overwrite" in str(refused.value)

    # with --storage the cached results are recorded in the shared storage (nothing is trained) ...
    stamps = {path: path.stat().st_mtime_ns for path in out.glob("cache/jobs/*/result.json")}
    main([*argv, "--overwrite", "--storage", storage])
    assert {path: path.stat().st_mtime_ns for path in out.glob("cache/jobs/*/result.json")} == stamps
    # ... so a second machine (another, empty cache) gets every result from there: no training
    elsewhere = tmp_path / "elsewhere"
    again = main([*argv, "--storage", storage, "--out", str(elsewhere), "--cache", str(elsewhere / "cache")])
    assert not list(elsewhere.glob("cache/jobs/*/train.log"))
    assert again["parts"]["null"]["sharpes"] == written["parts"]["null"]["sharpes"]
    assert again["figures"]["seed_iqm"] == written["figures"]["seed_iqm"]


def test_worker_takes_a_waiting_job_and_records_its_failure(tmp_path):
    storage = f"sqlite:///{tmp_path / 'jobs.db'}"
    job = make_job(
        part="null",
        algo="no_such_algo",  # fails at once in the training subprocess
        env_id="CryptoTrading-v0",
        hyperparams={"policy": "MlpPolicy"},
        env_kwargs={"synthetic_kwargs": {"n_bars": 500}},
        market={"kind": "run", "seed": 0},
        seed=0,
        steps=64,
        data_digest=None,
    )
    study = open_study(storage)
    study.enqueue_trial({}, user_attrs={"audit_job": job["key"], "spec": json.dumps(job)})
    assert work(storage, tmp_path / "cache") == 1
    trials = optuna.load_study(study_name=STUDY_NAME, storage=storage).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL]
    assert "failed with status" in trials[0].user_attrs["error"]
    assert work(storage, tmp_path / "cache") == 0  # nothing waits any more


def test_a_job_of_other_code_gets_another_key_and_is_not_run(tmp_path, monkeypatch):
    from sb3_crypto.audit import jobs

    spec = dict(
        part="null",
        algo="ppo",
        env_id="CryptoTrading-v0",
        hyperparams={"policy": "MlpPolicy"},
        env_kwargs={},
        market={"kind": "run", "seed": 0},
        seed=0,
        steps=64,
        data_digest=None,
    )
    here = make_job(**spec)
    assert here["code"] == jobs.code_digest() and make_job(**spec)["key"] == here["key"]
    monkeypatch.setattr(jobs, "code_digest", lambda: "0123456789abcdef")  # an edited env, a new torch, ...
    elsewhere = make_job(**spec)
    assert elsewhere["key"] != here["key"]  # a cached result of the old code is not reused
    with pytest.raises(RuntimeError, match="made by other code"):
        jobs.run_job(here, tmp_path / "cache")  # a worker on other code refuses the old job
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_targets_and_bad_input(tiny_run, tmp_path, capsys, monkeypatch):
    by_run = resolve_target(run=tiny_run)
    by_model = resolve_target(model=tiny_run / "CryptoTrading-v0.zip")
    assert by_run.default_out == tiny_run / "audit"
    assert by_model.default_out == tiny_run / "CryptoTrading-v0_audit"
    assert by_run.algo == by_model.algo == "ppo" and by_run.steps == 512
    assert by_run.hyperparams["policy_kwargs"] == "dict(net_arch=[16])"
    assert by_run.env_kwargs["synthetic_kwargs"]["n_bars"] == 1200
    # a model file alone retrains with the package's hyper-parameters but its own training budget
    lone = tmp_path / "lone" / "agent.zip"
    lone.parent.mkdir()
    lone.write_bytes((tiny_run / "CryptoTrading-v0.zip").read_bytes())
    with pytest.raises(ValueError, match=r"hyperparams/ppo\.yml has no entry for CryptoTrading-v0"):
        resolve_target(model=lone)
    with monkeypatch.context() as patched:
        patched.setattr(core, "_package_hyperparams", lambda algo, env_id: {"n_timesteps": 1e6, "n_steps": 256})
        alone = resolve_target(model=lone)
    assert alone.steps == 512 and alone.hyperparams["n_steps"] == 256
    assert any("512 steps agent.zip was trained for" in note for note in alone.notes)
    for argv, message in (
        (["--run", str(tmp_path / "nowhere")], "no such folder"),
        (["--model", str(tmp_path / "missing.zip")], "no model file"),
        (["--run", str(tiny_run), "--null-runs", "-1"], "--null-runs"),
        (["--run", str(tiny_run), "--skip", "nulls"], "--skip"),
        (["--run", str(tiny_run), "--study", "s"], "--study needs --storage"),
        (["--run", str(tiny_run), "--parts", "costs,selection"], "--parts selection needs --study"),
    ):
        with pytest.raises(SystemExit) as error:
            main(argv)
        assert error.value.code == 2
        assert message in capsys.readouterr().err
    # a wrong study or storage is refused before anything trains, in one line
    tuning = f"sqlite:///{tmp_path / 'tuning.db'}"
    optuna.create_study(study_name="tuning", storage=tuning)
    budget = ["--null-runs", "1", "--power-runs", "0", "--seeds", "0", "--no-progress", "--out", str(tmp_path / "o")]
    for argv, message in (
        (["--study", "tunin", "--storage", tuning], "--study 'tunin': no such study in"),
        (["--study", "tuning", "--storage", "nowhere://x"], "--storage nowhere://x: cannot open"),
        (["--storage", "nowhere://x"], "--storage nowhere://x: cannot open"),
    ):
        with pytest.raises(SystemExit) as error:
            main(["--run", str(tiny_run), *argv, *budget])
        assert error.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / "o" / "cache").exists()  # nothing trained before the error


@pytest.mark.slow
def test_selection_part_reads_the_tuning_study(tiny_run, tmp_path):
    """``--study`` with the storage tuning used: the DSR counts every tried trial, PBO uses their series."""
    import numpy as np

    storage = f"sqlite:///{tmp_path / 'tuning.db'}"
    study = optuna.create_study(study_name="tuning", storage=storage, direction="maximize")
    rng = np.random.default_rng(0)
    for k in range(6):
        attrs = {"validation_returns": rng.normal(0, 0.01, 160).tolist(), "metric": "sharpe", "periods_per_year": 8760}
        study.add_trial(optuna.trial.create_trial(value=float(k), user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    argv = ["--run", str(tiny_run), "--skip", "null,power,seeds", "--study", "tuning", "--storage", storage]
    report = main([*argv, "--out", str(tmp_path / "out"), "--no-progress"])
    figures = report["figures"]
    assert figures["n_trials"] == 7
    assert 0.0 <= figures["pbo"] <= 1.0
    agent = np.asarray(report["agent_returns"])
    if agent.std() > 0:
        assert 0.0 <= figures["deflated_sharpe"] <= 1.0
    else:  # the tiny agent did not trade: nothing to deflate, and the report says why
        assert figures["deflated_sharpe"] is None
        assert any("no spread" in note for note in report["parts"]["selection"]["notes"])
    assert report["parts"]["selection"]["pbo"]["n_combinations"] == 70
    assert report["verdict"] == "untestable"  # no null runs: nothing says what chance would give
    assert "5. Selection bias" in (tmp_path / "out" / "audit.html").read_text()
