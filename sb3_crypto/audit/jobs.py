"""Training jobs of the audit: the run's own configuration trained on another market, then backtested
on that market's test split. Cached by content, run in parallel, shareable through Optuna storage.

A **job** is a JSON-able spec: algorithm, env id, the run's hyper-parameters (its ``config.yml``:
policy, ``policy_kwargs``, learning rate, ..., ``env_kwargs``), the market recipe
(:func:`~sb3_crypto.audit.markets.market_recipe`), the training seed and the number of steps. Its
**key** is a hash of that spec and of the run's data file's content, so a second audit with the same
configuration, data, budget and seed reuses the result instead of training again, while a changed
file, hyper-parameter or budget trains anew.

:func:`run_job` trains with ``python -m sb3_crypto.train`` in a subprocess (one torch thread; the
package's own training, so "the same config" is the run's config), with the run's hyper-parameters
as its ``-conf`` file and the market swapped through ``env_kwargs``, without evaluation callbacks or
checkpoints (they do not change the final model). It then backtests the final model on the test split
of its market and writes ``result.json`` beside the trained run in ``<cache>/<key>/``.

:class:`JobRunner` runs jobs up to ``workers`` at a time in processes of the ``spawn`` context. With
Optuna ``storage`` each job is also a trial of the study :data:`STUDY_NAME`: jobs are enqueued as
waiting trials carrying their spec, any process on any machine running
``python -m sb3_crypto.audit --worker --storage URL`` takes waiting trials (Optuna hands each to one
taker) and stores the result in the trial, and an audit reuses results it finds there (results it
has in its own cache it records there too, see :func:`publish`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from sb3_crypto.files import to_strict_json, write_json, write_text

#: Bumped when what a job computes changes, so that older cached results are not reused.
JOB_VERSION = 2  # 2: null markets of close-only data stay close-only
#: The Optuna study that holds the audit's jobs in a shared storage.
STUDY_NAME = "sb3_crypto-audit-jobs"
#: Lines of a failed training's output shown in the error.
_TAIL = 25


class JobError(RuntimeError):
    """A training job failed (the message ends with the tail of its output)."""


class StorageError(ValueError):
    """An Optuna storage (``--storage``, ``--study-storage``) or study (``--study``) that cannot be used;
    the message names the option, the URL and why, in one line."""


def storage_backend(storage: str, option: str = "--storage", *, must_exist: bool = False) -> Any:
    """What Optuna takes for ``storage``: a ``.log`` file is its journal storage, anything else an RDB
    URL opened here (so a wrong URL fails now, naming ``option``, not in the middle of an audit).
    With ``must_exist`` a journal or SQLite file that is not there is an error instead of being created."""
    import optuna

    if must_exist:
        path = storage[len("sqlite:///") :] if storage.startswith("sqlite:///") else storage
        if (storage.endswith(".log") or storage.startswith("sqlite:///")) and not Path(path).is_file():
            raise StorageError(f"{option} {storage}: no such file {path}")
    try:
        if storage.endswith(".log"):
            Path(storage).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
        return optuna.storages.RDBStorage(storage)
    except Exception as error:  # sqlalchemy's ArgumentError, NoSuchModuleError, OperationalError, ...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StorageError(f"{option} {storage}: cannot open this Optuna storage ({first})") from None


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data (tuples to lists, numpy scalars to numbers, keys to strings)."""
    return json.loads(to_strict_json(value, indent=None, default=str))


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: Libraries whose version can change a training run's numbers (with the package's own code).
TRAINING_LIBRARIES = ("torch", "numpy", "numba", "gymnasium", "stable-baselines3", "sb3-contrib", "rl_zoo3")


@functools.cache
def code_digest() -> str:
    """A hash of the code that trains and evaluates a job: every Python source of ``sb3_crypto``
    and the versions of :data:`TRAINING_LIBRARIES`. It is part of every job's key, so a cached or
    shared result is reused only by the code that would reproduce it (an edited env, algorithm or
    library trains again instead of reusing stale runs)."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    for name in TRAINING_LIBRARIES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}=={version};".encode())
    return digest.hexdigest()[:16]


def make_job(
    *,
    part: str,
    algo: str,
    env_id: str,
    hyperparams: Mapping[str, Any],
    env_kwargs: Mapping[str, Any],
    market: Mapping[str, Any],
    seed: int,
    steps: int,
    data_digest: str | None,
) -> dict[str, Any]:
    """A job spec with its ``key`` (the hash of everything that decides its result; ``part`` is a label)."""
    spec = {
        "version": JOB_VERSION,
        "code": code_digest(),
        "algo": algo,
        "env_id": env_id,
        "hyperparams": canonical({k: v for k, v in hyperparams.items() if k != "env_kwargs"}),
        "env_kwargs": canonical(env_kwargs),
        "market": canonical(market),
        "seed": int(seed),
        "steps": int(steps),
        "data_digest": data_digest,
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
    return {**spec, "part": part, "key": key}


def cached_result(job: Mapping[str, Any], cache: str | os.PathLike) -> dict[str, Any] | None:
    """The result of ``job`` from the cache folder, or ``None``."""
    path = Path(cache) / job["key"] / "result.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _train(job: Mapping[str, Any], folder: Path, env_kwargs: Mapping[str, Any]) -> Path:
    """Train the job's configuration with ``python -m sb3_crypto.train``; returns the model file."""
    import yaml

    hyperparams = {**job["hyperparams"], "env_kwargs": dict(env_kwargs), "n_timesteps": int(job["steps"])}
    config = folder / "hyperparams.yml"
    write_text(config, yaml.safe_dump({job["env_id"]: hyperparams}, sort_keys=True))
    logs = folder / "logs"
    command = [
        sys.executable,
        "-m",
        "sb3_crypto.train",
        "--algo",
        job["algo"],
        "--env",
        job["env_id"],
        "-conf",
        str(config),
        "-f",
        str(logs),
        "--seed",
        str(job["seed"]),
        "-n",
        str(job["steps"]),
        "--eval-freq",
        "-1",
        "--save-freq",
        "-1",
        "--device",
        "cpu",
        "--num-threads",
        "1",
    ]
    environment = {**os.environ, "SB3_CRYPTO_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = folder / "train.log"
    with open(log, "w") as output:
        status = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=environment, check=False)
    models = sorted((logs / job["algo"]).glob(f"{job['env_id']}_*/{job['env_id']}.zip"))
    if status.returncode != 0 or not models:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-_TAIL:])
        raise JobError(f"training job {job['key']} ({job['part']}) failed with status {status.returncode}:\n{tail}")
    return models[-1]


def evaluate_model(model_path: str | os.PathLike, algo: str, env_id: str, env_kwargs: Mapping[str, Any]) -> dict:
    """Backtest a saved model on the test split of its env (whole split, deterministic actions)."""
    import gymnasium as gym

    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.algorithms.model_io import load_model
    from sb3_crypto.evaluation.rollout import run_policy

    model = load_model(model_path, algo)
    env = gym.make(env_id, **{**env_kwargs, "split": "test", "episode_length": None})
    try:
        result = run_policy(model, env, deterministic=True)
    finally:
        env.close()
    return backtest_record(result)


def backtest_record(result: Any) -> dict[str, Any]:
    """The numbers the audit keeps of a backtest result: returns, Sharpe (0 for an agent that never
    trades), total return, costs."""
    from sb3_crypto import metrics

    returns = np.asarray(result.returns, dtype=np.float64)
    sharpe = metrics.sharpe_ratio(returns, result.periods_per_year)
    if returns.size >= 2 and not np.any(returns):
        sharpe = 0.0  # never in the market: no risk, no return (not an undefined ratio)
    return {
        "returns": [float(f"{x:.9g}") for x in returns],
        "sharpe": sharpe,
        "total_return": metrics.total_return(returns),
        "periods_per_year": float(result.periods_per_year),
        "fills": int(result.trades),
        "fees_paid": float(result.fees_paid),
        "bars": len(returns),
    }


def run_job(job: Mapping[str, Any], cache: str | os.PathLike) -> dict[str, Any]:
    """Run one job (or return its cached result): build its market, train, backtest, cache."""
    from sb3_crypto.audit.markets import market_env_kwargs

    found = cached_result(job, cache)
    if found is not None:
        return found
    if job.get("code") != code_digest():
        raise RuntimeError(
            f"job {job['key']} was made by other code (sb3_crypto sources or training libraries: "
            f"{job.get('code')} here {code_digest()}); run audit workers on the same sb3_crypto and library versions"
        )
    folder = Path(cache) / job["key"]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "job.json", dict(job))
    env_kwargs = market_env_kwargs(job["market"], job["env_kwargs"], folder)
    started = time.monotonic()
    model = _train(job, folder, env_kwargs)
    record = evaluate_model(model, job["algo"], job["env_id"], env_kwargs)
    result = {"key": job["key"], "part": job["part"], **record, "seconds": time.monotonic() - started}
    write_json(folder / "result.json", result)
    return result


def _one_thread() -> None:
    """Initializer of the pool's processes: one torch thread each."""
    os.environ.setdefault("SB3_CRYPTO_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def open_study(storage: str) -> Any:
    """The audit's job study in ``storage`` (an RDB URL, or a ``.log`` file for Optuna's journal
    storage, as tuning accepts), created if needed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = storage_backend(storage)
    for attempt in range(10):
        try:
            return optuna.create_study(
                storage=backend, study_name=STUDY_NAME, load_if_exists=True, direction="maximize"
            )
        except Exception:  # a lost creation race between workers starting together
            if attempt == 9:
                raise
            time.sleep(0.2 + 0.1 * attempt)
    raise AssertionError("unreachable")


def _trial_results(study: Any) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Job key -> (trial state name, result or None) of every trial of the study."""
    found: dict[str, tuple[str, dict[str, Any] | None]] = {}
    for trial in study.get_trials(deepcopy=False):
        key = trial.user_attrs.get("audit_job")
        if key is None:
            continue
        state = trial.state.name
        result = trial.user_attrs.get("result")
        if key in found and found[key][0] == "COMPLETE":
            continue  # a completed copy wins over a failed or waiting one
        found[key] = (state, json.loads(result) if isinstance(result, str) else None)
    return found


def _take_waiting(study: Any) -> tuple[Any, dict[str, Any]] | None:
    """Claim one waiting job trial (Optuna gives each waiting trial to one ``ask``); ``None`` when none waits."""
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        return None
    trial = study.ask()
    spec = trial.user_attrs.get("spec")
    if spec is None:  # another taker won the last waiting trial: this one is a fresh, empty trial
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None
    return trial, json.loads(spec)


def _finish(study: Any, trial: Any, result: dict[str, Any] | None, error: str | None) -> None:
    import optuna

    if result is not None:
        trial.set_user_attr("result", json.dumps(result))
        value = result.get("sharpe")
        study.tell(trial, float(value) if value is not None and np.isfinite(value) else -1e9)
    else:
        trial.set_user_attr("error", (error or "")[-2000:])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


class JobRunner:
    """Run jobs up to ``workers`` at a time (spawned processes, one torch thread each), cached in
    ``cache``; with ``storage``, through the Optuna job study shared with other machines.

    :param progress: called with ``(job, result)`` as each job finishes (cached ones included).
    :param poll_seconds: how often to look for results of jobs other machines are running.
    """

    def __init__(
        self,
        cache: str | os.PathLike,
        *,
        workers: int = 1,
        storage: str | None = None,
        progress: Callable[[Mapping[str, Any], dict[str, Any]], None] | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        self.cache = Path(cache)
        self.workers = max(1, int(workers))
        self.storage = storage
        self.progress = progress
        self.poll_seconds = poll_seconds

    def run(self, jobs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Results of every job by key (``{"error": ...}`` for a job that failed)."""
        jobs = {job["key"]: dict(job) for job in jobs}
        results: dict[str, dict[str, Any]] = {}
        pending = []
        for job in jobs.values():
            found = cached_result(job, self.cache)
            if found is not None:
                self._done(job, found, results)
            else:
                pending.append(job)
        if self.storage is not None and results:
            publish(open_study(self.storage), [(jobs[key], result) for key, result in results.items()])
        if not pending:
            return results
        if self.storage is None:
            self._run_local(pending, results)
        else:
            self._run_shared(pending, results)
        return results

    def _done(self, job: Mapping[str, Any], result: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
        results[job["key"]] = result
        if self.progress is not None:
            self.progress(job, result)

    def _pool(self) -> ProcessPoolExecutor | None:
        if self.workers == 1:
            return None
        return ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_one_thread)

    def _run_local(self, pending: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
        pool = self._pool()
        if pool is None:
            for job in pending:
                self._done(job, _guarded(job, self.cache), results)
            return
        with pool:
            futures = {pool.submit(_guarded, job, self.cache): job for job in pending}
            for future in _as_done(futures):
                self._done(futures[future], future.result(), results)

    def _run_shared(self, pending: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
        """Enqueue the jobs no trial holds yet, then take waiting trials (ours or anyone's) until
        every one of ours has a result, here or from another machine."""
        study = open_study(str(self.storage))
        known = _trial_results(study)
        mine = {job["key"]: job for job in pending}
        for key, job in mine.items():
            state, result = known.get(key, ("", None))
            if state == "COMPLETE" and result is not None:
                continue
            if state not in ("WAITING", "RUNNING"):
                study.enqueue_trial({}, user_attrs={"audit_job": key, "spec": json.dumps(job)})
        pool = self._pool() or _InlineExecutor()
        running: dict[Future, tuple[Any, dict[str, Any]]] = {}
        with pool:
            while True:
                known = _trial_results(study)
                for key in list(mine):
                    state, result = known.get(key, ("", None))
                    if state == "COMPLETE" and result is not None:
                        _store(mine[key], result, self.cache)
                        self._done(mine.pop(key), result, results)
                    elif state == "FAIL" and not any(spec["key"] == key for _, spec in running.values()):
                        self._done(mine.pop(key), {"key": key, "error": "failed on a worker (see its trial)"}, results)
                if not mine:
                    return
                while len(running) < self.workers:
                    taken = _take_waiting(study)
                    if taken is None:
                        break
                    trial, spec = taken
                    running[pool.submit(_guarded, spec, self.cache)] = (trial, spec)
                if running:
                    done, _ = wait(list(running), timeout=self.poll_seconds, return_when=FIRST_COMPLETED)
                    for future in done:
                        trial, spec = running.pop(future)
                        result = future.result()
                        error = result.get("error")
                        _finish(study, trial, None if error else result, error)
                else:
                    time.sleep(self.poll_seconds)  # ours run elsewhere


def publish(study: Any, done: Iterable[tuple[Mapping[str, Any], dict[str, Any]]]) -> int:
    """Record results computed here (from the local cache) as completed trials of the job study, unless
    it holds them already, so that audits on other machines reuse them; returns how many were added."""
    import optuna

    known = _trial_results(study)
    added = 0
    for job, result in done:
        if "error" in result or known.get(job["key"], ("", None))[0] == "COMPLETE":
            continue
        value = result.get("sharpe")
        trial = optuna.trial.create_trial(
            value=float(value) if value is not None and np.isfinite(value) else -1e9,
            user_attrs={"audit_job": job["key"], "spec": json.dumps(dict(job)), "result": json.dumps(result)},
        )
        study.add_trial(trial)
        added += 1
    return added


def work(storage: str, cache: str | os.PathLike, *, workers: int = 1, idle_seconds: float = 0.0) -> int:
    """Take waiting job trials from the shared storage and run them until none has waited for
    ``idle_seconds``; returns how many jobs this process ran (``--worker``)."""
    study = open_study(storage)
    ran = 0
    idle_since = time.monotonic()
    runner = JobRunner(cache, workers=workers)
    with runner._pool() or _InlineExecutor() as pool:
        running: dict[Future, tuple[Any, dict[str, Any]]] = {}
        while True:
            while len(running) < runner.workers:
                taken = _take_waiting(study)
                if taken is None:
                    break
                trial, spec = taken
                running[pool.submit(_guarded, spec, cache)] = (trial, spec)
            if not running:
                if time.monotonic() - idle_since >= idle_seconds:
                    return ran
                time.sleep(min(5.0, max(idle_seconds, 0.1)))
                continue
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                trial, spec = running.pop(future)
                result = future.result()
                _finish(study, trial, None if result.get("error") else result, result.get("error"))
                ran += 1
            idle_since = time.monotonic()


def _store(job: Mapping[str, Any], result: dict[str, Any], cache: Path) -> None:
    """Keep a result found in the storage in the local cache too."""
    folder = cache / job["key"]
    if not (folder / "result.json").is_file():
        write_json(folder / "job.json", dict(job))
        write_json(folder / "result.json", result)


def _guarded(job: Mapping[str, Any], cache: str | os.PathLike) -> dict[str, Any]:
    """:func:`run_job`, with a failure returned as ``{"key", "part", "error"}`` instead of raised."""
    try:
        return run_job(job, cache)
    except Exception as error:  # reported in the audit, the other jobs go on
        return {"key": job["key"], "part": job.get("part"), "error": f"{type(error).__name__}: {error}"}


def _as_done(futures: Mapping[Future, Any]) -> Iterable[Future]:
    from concurrent.futures import as_completed

    return as_completed(futures)


class _InlineExecutor:
    """A one-at-a-time executor in this process (``workers=1``), with the pool's interface."""

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


__all__ = [
    "JOB_VERSION",
    "STUDY_NAME",
    "JobError",
    "JobRunner",
    "StorageError",
    "backtest_record",
    "cached_result",
    "evaluate_model",
    "file_digest",
    "make_job",
    "open_study",
    "publish",
    "run_job",
    "storage_backend",
    "work",
]
