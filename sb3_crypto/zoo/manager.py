"""RL Zoo integration: algorithms, evaluation-env fix and package hyper-parameters.

:func:`install` patches RL Zoo in place (idempotent):

* algorithms RL Zoo lacks are added to ``rl_zoo3.utils.ALGOS`` with Optuna samplers:
  ``ppo_mask`` (sb3-contrib ``MaskablePPO``, sampled like ``ppo``), ``rainbow`` (:class:`RainbowDQN`)
  and ``d3qn`` (its S3 preset), both with :func:`sample_rainbow_params`;
* **distributed tuning** (``--storage URL --study-name NAME`` from several workers): the study is
  created up front with retries (workers starting together on a fresh database race to create its
  tables and the study), and each worker's sampler seed is offset by its process id (workers
  started with the same ``--seed`` would otherwise propose the same trials);
* **samplers keep the config's policy settings**: RL Zoo replaces the whole ``policy_kwargs`` with
  the sampled one, dropping e.g. a features extractor set in YAML; here the sampled keys are merged
  over the config's ``policy_kwargs`` instead;
* **evaluation on the validation split**: RL Zoo 2.9 gives the evaluation env the YAML
  ``env_kwargs`` only when ``--env-kwargs`` is also passed on the command line, so evaluation
  silently ran on a default env. Here the evaluation env always gets the training env's kwargs with
  ``split="validation"`` for the package's environments, unless ``--eval-env-kwargs`` is given.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import rl_zoo3.exp_manager
import rl_zoo3.train
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import ALGOS
from sb3_contrib import MaskablePPO

from sb3_crypto.rainbow import D3QN, RainbowDQN
from sb3_crypto.registration import ENV_IDS

RAINBOW_NET_ARCH = {"small": [64, 64], "medium": [256, 256], "s0": [512, 256, 128]}


def sample_rainbow_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:
    """Optuna search space for RainbowDQN / D3QN (already converted to constructor arguments)."""
    del n_actions, n_envs, additional_args
    return {
        "gamma": 1.0 - trial.suggest_float("one_minus_gamma", 1e-3, 0.05, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "batch_size": 2 ** trial.suggest_int("batch_size_pow", 5, 8),
        "n_steps": trial.suggest_categorical("n_steps", [1, 3, 5]),
        "alpha": trial.suggest_float("alpha", 0.2, 0.8),
        "beta0": trial.suggest_float("beta0", 0.2, 0.6),
        "target_update_interval": trial.suggest_categorical("target_update_interval", [100, 500, 1000, 2000]),
        "train_freq": trial.suggest_categorical("train_freq", [1, 4, 8]),
        "policy_kwargs": {"net_arch": RAINBOW_NET_ARCH[trial.suggest_categorical("net_arch", list(RAINBOW_NET_ARCH))]},
    }


def convert_rainbow_params(params: dict[str, Any]) -> dict[str, Any]:
    """Turn a stored trial's raw parameters back into constructor arguments (``--trial-id``)."""
    out = {k: v for k, v in params.items() if k not in ("one_minus_gamma", "batch_size_pow", "net_arch")}
    out["gamma"] = 1.0 - params["one_minus_gamma"]
    out["batch_size"] = 2 ** params["batch_size_pow"]
    out["policy_kwargs"] = {"net_arch": RAINBOW_NET_ARCH[params["net_arch"]]}
    return out


def merge_policy_kwargs(sampler: Callable[..., dict[str, Any]], base: dict[str, Any] | None) -> Callable:
    """Wrap a sampler so its ``policy_kwargs`` are merged over ``base`` instead of replacing it."""

    def sample(*args: Any, **kwargs: Any) -> dict[str, Any]:
        params = sampler(*args, **kwargs)
        if isinstance(base, dict) and "policy_kwargs" in params:
            params["policy_kwargs"] = {**base, **params["policy_kwargs"]}
        return params

    return sample


HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"


SEQUENTIAL_ENVS = ("CryptoFuturesSession-v0", "CryptoDCA-v0")


def eval_env_kwargs_for(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Evaluation kwargs derived from the training kwargs: the validation split of the same market
    (sessions and DCA cycles visited in order rather than drawn at random)."""
    kwargs = dict(env_kwargs)
    if env_id in ENV_IDS:
        kwargs["split"] = "validation"
        if env_id in SEQUENTIAL_ENVS:
            kwargs["sequential"] = True
    return kwargs


class ExperimentManager(rl_zoo3.exp_manager.ExperimentManager):
    """RL Zoo's manager with YAML ``env_kwargs`` reaching the evaluation env (validation split)."""

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):  # type: ignore[override]
        result = super()._preprocess_hyperparams(hyperparams)
        if self._eval_env_kwargs_args is None:
            self.eval_env_kwargs = eval_env_kwargs_for(self.env_name.gym_id, self.env_kwargs)
        return result

    def _create_sampler(self, sampler_method: str) -> optuna.samplers.BaseSampler:
        if self.storage is None:
            return super()._create_sampler(sampler_method)
        seed = self.seed
        self.seed = worker_seed(seed)
        try:
            return super()._create_sampler(sampler_method)
        finally:
            self.seed = seed

    def hyperparameters_optimization(self) -> None:
        """RL Zoo's search, after making sure a shared study exists (see :func:`ensure_study`)."""
        if self.storage is not None:
            ensure_study(self.storage, self.study_name)
        super().hyperparameters_optimization()

    #: Metric of :mod:`sb3_crypto.metrics` the search maximises instead of the mean episode reward
    #: (``python -m sb3_crypto.train ... -optimize --optimize-metric sharpe``); None keeps RL Zoo's.
    optimize_metric: str | None = None

    def objective(self, trial: optuna.Trial) -> float:
        """RL Zoo's objective, with the sampled ``policy_kwargs`` merged over the config's; with
        :attr:`optimize_metric` the trial's value is that metric on the validation split after
        training (the mean reward is kept as the trial attribute ``mean_reward``)."""
        sampler = HYPERPARAMS_SAMPLER[self.algo]
        HYPERPARAMS_SAMPLER[self.algo] = merge_policy_kwargs(sampler, self._hyperparams.get("policy_kwargs"))
        specified = self.specified_callbacks
        if self.optimize_metric is not None:
            from sb3_crypto.callbacks import FinalMetricCallback

            FinalMetricCallback.instances.clear()
            entry = {"sb3_crypto.callbacks.FinalMetricCallback": {"metric": self.optimize_metric}}
            self.specified_callbacks = [*(specified or []), entry]
        try:
            reward = super().objective(trial)
        finally:
            HYPERPARAMS_SAMPLER[self.algo] = sampler
            self.specified_callbacks = specified
        if self.optimize_metric is None:
            return reward
        trial.set_user_attr("mean_reward", float(reward))
        return FinalMetricCallback.instances[-1].value


def worker_seed(seed: int) -> int:
    """A sampler seed unique to this worker process, derived from the run's ``--seed``."""
    return (seed + 7919 * os.getpid()) % (2**32 - 1)


def _storage(url: str) -> Any:
    if url.endswith(".log"):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    return url


def ensure_study(url: str, study_name: str | None, attempts: int = 10) -> None:
    """Create the study if needed, retrying when another worker wins the creation race."""
    if study_name is None:
        return
    for attempt in range(attempts):
        try:
            optuna.create_study(storage=_storage(url), study_name=study_name, load_if_exists=True, direction="maximize")
            return
        except Exception:  # IntegrityError, DuplicatedStudyError, OperationalError: a lost race
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random())


def default_config(algo: str) -> str | None:
    """Path of the package's hyper-parameter file for ``algo``, if it ships one."""
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    return str(path) if path.is_file() else None


def install() -> None:
    """Register algorithms and the evaluation fix with RL Zoo (safe to call repeatedly)."""
    ALGOS.setdefault("ppo_mask", MaskablePPO)
    HYPERPARAMS_SAMPLER.setdefault("ppo_mask", HYPERPARAMS_SAMPLER["ppo"])
    HYPERPARAMS_CONVERTER.setdefault("ppo_mask", HYPERPARAMS_CONVERTER["ppo"])
    for name, algo in (("rainbow", RainbowDQN), ("d3qn", D3QN)):
        ALGOS.setdefault(name, algo)
        HYPERPARAMS_SAMPLER.setdefault(name, sample_rainbow_params)
        HYPERPARAMS_CONVERTER.setdefault(name, convert_rainbow_params)
    rl_zoo3.train.ExperimentManager = ExperimentManager  # type: ignore[misc]


__all__ = [
    "ALGOS",
    "ExperimentManager",
    "convert_rainbow_params",
    "default_config",
    "eval_env_kwargs_for",
    "install",
    "merge_policy_kwargs",
    "sample_rainbow_params",
]
