"""RL Zoo integration: algorithms, evaluation-env fix and package hyper-parameters.

:func:`install` patches RL Zoo in place (idempotent):

* algorithms RL Zoo lacks are added to ``rl_zoo3.utils.ALGOS`` with Optuna samplers:
  ``ppo_mask`` (sb3-contrib ``MaskablePPO``, sampled like ``ppo``), ``rainbow`` (:class:`RainbowDQN`)
  and ``d3qn`` (its S3 preset), both with :func:`sample_rainbow_params`, and ``sac_fast``
  (:class:`~sb3_crypto.sac.FastSAC`, sampled and converted like ``sac``);
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

import rl_zoo3.train
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import ALGOS

from sb3_crypto.algorithms import ALGORITHMS
from sb3_crypto.zoo.config import HYPERPARAMS_DIR, default_config
from sb3_crypto.zoo.manager import ExperimentManager, eval_env_kwargs_for
from sb3_crypto.zoo.samplers import (
    RAINBOW_NET_ARCH,
    convert_rainbow_params,
    merge_policy_kwargs,
    sample_rainbow_params,
)
from sb3_crypto.zoo.study import ensure_study, worker_seed

#: Package algorithm -> (Optuna sampler, converter of stored trials), for RL Zoo's ``-optimize``.
SAMPLERS = {
    "ppo_mask": (HYPERPARAMS_SAMPLER["ppo"], HYPERPARAMS_CONVERTER["ppo"]),
    "rainbow": (sample_rainbow_params, convert_rainbow_params),
    "d3qn": (sample_rainbow_params, convert_rainbow_params),
    "sac_fast": (HYPERPARAMS_SAMPLER["sac"], HYPERPARAMS_CONVERTER["sac"]),
}


def install() -> None:
    """Register the package's algorithms and the fixed ``ExperimentManager`` with RL Zoo (idempotent).

    Only the commands that run RL Zoo (``train``, ``enjoy``, ``-optimize``) call this; loading,
    backtesting and exporting models read :mod:`sb3_crypto.algorithms` and leave RL Zoo untouched.
    """
    for name, (sampler, converter) in SAMPLERS.items():
        ALGOS.setdefault(name, ALGORITHMS[name])
        HYPERPARAMS_SAMPLER.setdefault(name, sampler)
        HYPERPARAMS_CONVERTER.setdefault(name, converter)
    rl_zoo3.train.ExperimentManager = ExperimentManager  # type: ignore[misc]


__all__ = [
    "ALGOS",
    "HYPERPARAMS_DIR",
    "RAINBOW_NET_ARCH",
    "ExperimentManager",
    "convert_rainbow_params",
    "default_config",
    "ensure_study",
    "eval_env_kwargs_for",
    "install",
    "merge_policy_kwargs",
    "sample_rainbow_params",
    "worker_seed",
]
