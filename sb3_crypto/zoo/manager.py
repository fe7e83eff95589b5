"""RL Zoo's ``ExperimentManager`` with the package's fixes: evaluation on the validation split,
samplers that keep the config's policy settings, distributed studies and metric objectives."""

from __future__ import annotations

from typing import Any

import optuna
import rl_zoo3.exp_manager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

from sb3_crypto.envs.registration import evaluation_kwargs
from sb3_crypto.evaluation.callbacks import FinalMetricCallback
from sb3_crypto.zoo.samplers import merge_policy_kwargs
from sb3_crypto.zoo.study import ensure_study, worker_seed


def eval_env_kwargs_for(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Evaluation kwargs derived from the training kwargs: the validation split of the same market
    (sessions and DCA cycles visited in order rather than drawn at random, as the env class says)."""
    return evaluation_kwargs(env_id, env_kwargs)


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
            FinalMetricCallback.instances.clear()
            entry = {"sb3_crypto.evaluation.callbacks.FinalMetricCallback": {"metric": self.optimize_metric}}
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
