"""RL Zoo integration: algorithms, evaluation-env fix and package hyper-parameters.

:func:`install` patches RL Zoo in place (idempotent):

* algorithms RL Zoo lacks are added to ``rl_zoo3.utils.ALGOS`` with Optuna samplers:
  ``ppo_mask`` (sb3-contrib ``MaskablePPO``, sampled like ``ppo``);
* **evaluation on the validation split**: RL Zoo 2.9 gives the evaluation env the YAML
  ``env_kwargs`` only when ``--env-kwargs`` is also passed on the command line, so evaluation
  silently ran on a default env. Here the evaluation env always gets the training env's kwargs with
  ``split="validation"`` for the package's environments, unless ``--eval-env-kwargs`` is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rl_zoo3.exp_manager
import rl_zoo3.train
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import ALGOS
from sb3_contrib import MaskablePPO

from sb3_crypto.registration import ENV_IDS

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


def default_config(algo: str) -> str | None:
    """Path of the package's hyper-parameter file for ``algo``, if it ships one."""
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    return str(path) if path.is_file() else None


def install() -> None:
    """Register algorithms and the evaluation fix with RL Zoo (safe to call repeatedly)."""
    ALGOS.setdefault("ppo_mask", MaskablePPO)
    HYPERPARAMS_SAMPLER.setdefault("ppo_mask", HYPERPARAMS_SAMPLER["ppo"])
    HYPERPARAMS_CONVERTER.setdefault("ppo_mask", HYPERPARAMS_CONVERTER["ppo"])
    rl_zoo3.train.ExperimentManager = ExperimentManager  # type: ignore[misc]


__all__ = ["ALGOS", "ExperimentManager", "default_config", "eval_env_kwargs_for", "install"]
