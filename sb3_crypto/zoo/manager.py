"""RL Zoo's ``ExperimentManager`` with the package's fixes: evaluation on the validation split,
samplers that keep the config's policy settings, distributed studies and metric objectives."""

from __future__ import annotations

import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import optuna
import rl_zoo3.exp_manager
import yaml
from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList, EvalCallback, ProgressBarCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_crypto.algorithms.model_io import save_model_with_spec
from sb3_crypto.envs.registration import evaluation_kwargs
from sb3_crypto.evaluation.callbacks import FinalMetricCallback
from sb3_crypto.files import atomic_path, write_json, write_text
from sb3_crypto.version import __version__
from sb3_crypto.zoo.checkpoints import AtomicCheckpointCallback, AtomicSaveBestModel, Checkpoint, checkpoint_files
from sb3_crypto.zoo.progress import TrainingProgress
from sb3_crypto.zoo.samplers import merge_policy_kwargs
from sb3_crypto.zoo.study import ensure_study, worker_seed

#: Keyword arguments of callbacks in YAML that name where files go; relative paths are put inside
#: the run's folder (``logs/<algo>/<env>_<n>/``), absolute ones get a sub-folder per run, so two
#: runs never write into each other's checkpoints or best models.
PATH_KEYWORDS = ("save_path", "best_model_save_path", "log_path")
#: Callback classes replaced by their atomic versions when named in YAML.
ATOMIC_CALLBACKS = {
    "stable_baselines3.common.callbacks.CheckpointCallback": f"{__package__}.checkpoints.AtomicCheckpointCallback"
}
#: The file in ``<run>/<env>/`` that records the command line a run was started with (for ``--resume``).
RESUME_FILE = "resume.json"


def eval_env_kwargs_for(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Evaluation kwargs derived from the training kwargs: the validation split of the same market
    (sessions and DCA cycles visited in order rather than drawn at random, as the env class says)."""
    return evaluation_kwargs(env_id, env_kwargs)


class ExperimentManager(rl_zoo3.exp_manager.ExperimentManager):
    """RL Zoo's manager with the package's fixes.

    * YAML ``env_kwargs`` reach the evaluation env (validation split);
    * every file of a run is written atomically (model, checkpoints with their replay buffer and
      ``VecNormalize`` statistics, best model, config), and YAML callback paths are scoped to the run;
    * continuing a run (``-i CHECKPOINT.zip``, or :attr:`resume_run` for ``--resume RUN_DIR``)
      continues the step counter, the learning-rate schedule, the replay buffer and the
      normalisation statistics saved with the checkpoint, and the monitor and TensorBoard logs;
    * training that could make no gradient update (``-n`` at most ``learning_starts``) warns.
    """

    #: Metric of :mod:`sb3_crypto.metrics` the search maximises instead of the mean episode reward
    #: (``python -m sb3_crypto.train ... -optimize --optimize-metric sharpe``); None keeps RL Zoo's.
    optimize_metric: str | None = None
    #: Run folder to continue in place (``python -m sb3_crypto.train --resume RUN_DIR``).
    resume_run: str | None = None
    #: Save the replay buffer with each checkpoint (``--no-checkpoint-buffer`` turns it off).
    checkpoint_buffer: bool = True
    #: The command line ``sb3_crypto.train`` was given (recorded for ``--resume``); RL Zoo's otherwise.
    package_argv: list[str] | None = None
    #: Show :class:`~sb3_crypto.zoo.progress.TrainingProgress` (steps, steps/s, validation return)
    #: instead of SB3's logger table; ``sb3_crypto.train`` sets it unless ``--verbose`` is given.
    progress_display: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checkpoint: Checkpoint | None = None
        if self.resume_run is not None:
            self.save_path = str(self.resume_run)
            self.params_path = f"{self.save_path}/{self.env_name}"
            self.monitor_kwargs = {**self.monitor_kwargs, "override_existing": False}  # append
        if self.resume_run is not None or self.continue_training:
            if self.resume_run is not None:
                from sb3_crypto.zoo.resume import resume_checkpoint

                self._checkpoint = resume_checkpoint(self.save_path, needs_buffer=False)
                self.trained_agent = str(self._checkpoint.model)
                self.continue_training = True
            else:
                self._checkpoint = checkpoint_files(self.trained_agent)

    # ------------------------------------------------------------------ hyper-parameters and files
    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):  # type: ignore[override]
        if "callback" in hyperparams:
            hyperparams = {**hyperparams, "callback": self._scoped_callbacks(hyperparams["callback"])}
        result = super()._preprocess_hyperparams(hyperparams)
        if self._eval_env_kwargs_args is None:
            self.eval_env_kwargs = eval_env_kwargs_for(self.env_name.gym_id, self.env_kwargs)
        return result

    def _scoped_callbacks(self, entries: Any) -> Any:
        """YAML callback entries with file paths inside this run and atomic checkpoint classes."""
        if not isinstance(entries, list):
            entries = [entries]
        scoped = []
        for entry in entries:
            if isinstance(entry, str):
                scoped.append(ATOMIC_CALLBACKS.get(entry, entry))
                continue
            (name, kwargs), *_ = entry.items()
            kwargs = dict(kwargs or {})
            for key in PATH_KEYWORDS:
                if isinstance(kwargs.get(key), str):
                    kwargs[key] = self._run_scoped(kwargs[key])
            scoped.append({ATOMIC_CALLBACKS.get(name, name): kwargs})
        return scoped

    def _run_scoped(self, path: str) -> str:
        if os.path.isabs(path):
            return os.path.join(path, self.algo, os.path.basename(self.save_path))
        return os.path.join(self.save_path, path)

    def create_callbacks(self) -> None:
        """RL Zoo's callbacks (progress bar, checkpoints, evaluation) with atomic saves."""
        if self.show_progress:
            self.callbacks.append(ProgressBarCallback())
        if self.save_freq > 0:
            self.save_freq = max(self.save_freq // self.n_envs, 1)  # per env, as RL Zoo counts it
            self.callbacks.append(
                AtomicCheckpointCallback(
                    save_freq=self.save_freq,
                    save_path=self.save_path,
                    name_prefix="rl_model",
                    save_replay_buffer=self.checkpoint_buffer,
                    save_vecnormalize=True,
                    verbose=1,
                )
            )
        if self.eval_freq > 0 and not self.optimize_hyperparameters:
            self.eval_freq = max(self.eval_freq // self.n_envs, 1)
            if self.verbose > 0:
                print("Creating test environment")
            on_new_best = CallbackList(
                [
                    AtomicSaveBestModel(self.save_path),
                    rl_zoo3.exp_manager.SaveVecNormalizeCallback(save_freq=1, save_path=self.params_path),
                ]
            )
            evaluation = EvalCallback(
                self.create_envs(self.n_eval_envs, eval_env=True),
                callback_on_new_best=on_new_best,
                best_model_save_path=None,  # saved atomically by on_new_best
                n_eval_episodes=self.n_eval_episodes,
                log_path=self.save_path,
                eval_freq=self.eval_freq,
                deterministic=self.deterministic_eval,
                verbose=0 if self.progress_display else 1,  # the progress bar shows its results
            )
            self.callbacks.append(evaluation)
        if self.progress_display and not self.show_progress and not self.optimize_hyperparameters:
            evaluations = [c for c in self.callbacks if isinstance(c, EvalCallback)]
            self.callbacks.append(TrainingProgress(evaluations[0] if evaluations else None))

    def _save_config(self, saved_hyperparams: dict[str, Any]) -> None:
        """``config.yml``, ``args.yml``, ``command.txt`` as RL Zoo writes them (atomically), and
        ``resume.json``: the command line to continue the run with ``--resume``. A resumed run
        keeps the files of its start."""
        if self.resume_run is not None:
            print(f"Log path: {self.save_path} (resumed)")
            return
        Path(self.params_path).mkdir(parents=True, exist_ok=True)
        write_text(os.path.join(self.params_path, "config.yml"), yaml.dump(saved_hyperparams))
        ordered = OrderedDict((key, vars(self.args)[key]) for key in sorted(vars(self.args)))
        write_text(os.path.join(self.params_path, "args.yml"), yaml.dump(ordered))
        command = " ".join(getattr(sys, "orig_argv", sys.argv))
        write_text(os.path.join(self.params_path, "command.txt"), command)
        write_json(
            os.path.join(self.params_path, RESUME_FILE),
            {
                "argv": self.package_argv or sys.argv[1:],
                "algo": self.algo,
                "env": self.env_name.gym_id,
                "package_version": __version__,
            },
        )
        print(f"Log path: {self.save_path}")

    def save_trained_model(self, model: BaseAlgorithm) -> None:
        """The final model with its observation spec (and, as asked, its replay buffer and normalisation
        statistics), atomically."""
        print(f"Saving to {self.save_path}")
        save_model_with_spec(model, f"{self.save_path}/{self.env_name}")
        if hasattr(model, "save_replay_buffer") and self.save_replay_buffer:
            print("Saving replay buffer")
            with atomic_path(os.path.join(self.save_path, "replay_buffer.pkl")) as temporary:
                model.save_replay_buffer(temporary)
        if self.normalize:
            vec_normalize = model.get_vec_normalize_env()
            assert vec_normalize is not None
            with atomic_path(os.path.join(self.params_path, "vecnormalize.pkl")) as temporary:
                vec_normalize.save(str(temporary))

    # ------------------------------------------------------------------ continuing a run
    def _load_pretrained_agent(self, hyperparams: dict[str, Any], env: VecEnv) -> BaseAlgorithm:
        """Load the checkpoint with its own replay buffer (priorities included for Rainbow)."""
        checkpoint = self._checkpoint or checkpoint_files(self.trained_agent)
        hyperparams = {k: v for k, v in hyperparams.items() if k not in ("policy", "policy_kwargs")}
        print(f"Continuing from {checkpoint.model} ({checkpoint.steps if checkpoint.steps >= 0 else '?'} steps)")
        model = rl_zoo3.exp_manager.ALGOS[self.algo].load(
            checkpoint.model,
            env=env,
            seed=self.seed,
            tensorboard_log=self.tensorboard_log,
            verbose=self.verbose,
            device=self.device,
            **hyperparams,
        )
        if checkpoint.replay_buffer is not None and hasattr(model, "load_replay_buffer"):
            print(f"Loading replay buffer {checkpoint.replay_buffer}")
            model.load_replay_buffer(checkpoint.replay_buffer, truncate_last_traj=self.truncate_last_trajectory)
        # The saved last observation belongs to an env that no longer exists: start a new episode.
        model._last_obs = None  # type: ignore[assignment]
        model._last_original_obs = None  # type: ignore[assignment]
        return model

    def _maybe_normalize(self, env: VecEnv, eval_env: bool) -> VecEnv:
        checkpoint = self._checkpoint
        if checkpoint is not None and checkpoint.vecnormalize is not None:
            print(f"Loading VecNormalize statistics {checkpoint.vecnormalize}")
            env = VecNormalize.load(str(checkpoint.vecnormalize), env)
            if eval_env:
                env.training = False
                env.norm_reward = False
            return env
        return super()._maybe_normalize(env, eval_env)

    def learn(self, model: BaseAlgorithm) -> None:
        """RL Zoo's training loop; a continued run keeps counting steps (checkpoint names, the
        learning-rate schedule and TensorBoard go on), and ``--resume`` trains the steps left."""
        kwargs: dict[str, Any] = {}
        if self.log_interval > -1:
            kwargs["log_interval"] = self.log_interval
        elif self.log_interval < -1:
            kwargs["log_interval"] = None
        if self.callbacks:
            kwargs["callback"] = self.callbacks
        steps = self.n_timesteps
        if self.continue_training:
            kwargs["reset_num_timesteps"] = False
            if self.resume_run is not None:
                steps = self.n_timesteps - model.num_timesteps
                print(f"Resuming at {model.num_timesteps} of {self.n_timesteps} steps: {max(steps, 0)} to go")
        warn_if_no_updates(model, steps)
        try:
            if steps > 0:
                model.learn(steps, **kwargs)
        except KeyboardInterrupt:
            pass  # RL Zoo saves the model when training is interrupted
        finally:
            if self.callbacks:
                self.callbacks[0].on_training_end()
            try:
                assert model.env is not None
                model.env.close()
            except EOFError:
                pass

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

    def objective(self, trial: optuna.Trial) -> float:
        """RL Zoo's objective, with the sampled ``policy_kwargs`` merged over the config's; with
        :attr:`optimize_metric` the trial's value is that metric on the validation split after
        training (the mean reward is kept as the trial attribute ``mean_reward``; the metric's name, the
        validation split's per-bar returns and their bars per year as ``metric``, ``validation_returns``
        and ``periods_per_year``, which ``python -m sb3_crypto.audit --study`` reads)."""
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
        # What was tuned, so that an audit can tell a study of another algorithm or env.
        trial.set_user_attr("algo", self.algo)
        trial.set_user_attr("env_id", self.env_name.gym_id)
        if self.optimize_metric is None:
            return reward
        final = FinalMetricCallback.instances[-1]
        trial.set_user_attr("mean_reward", float(reward))
        # What the audit needs for the deflated Sharpe ratio and PBO over the search's trials.
        trial.set_user_attr("metric", self.optimize_metric)
        if final.last_returns is not None:
            trial.set_user_attr("validation_returns", [float(f"{x:.7g}") for x in final.last_returns])
            trial.set_user_attr("periods_per_year", final.periods_per_year)
        return final.value


def warn_if_no_updates(model: BaseAlgorithm, steps: int) -> bool:
    """Warn (and return True) when ``steps`` more steps end before ``learning_starts``: the run
    would collect data and save a model that was never trained."""
    learning_starts = getattr(model, "learning_starts", None)
    if learning_starts is None or model.num_timesteps + steps > learning_starts:
        return False
    message = (
        f"{type(model).__name__} will make no gradient update: training ends at "
        f"{model.num_timesteps + steps} steps and learning starts after {learning_starts} "
        "(raise -n or lower learning_starts, e.g. -params learning_starts:100)"
    )
    warnings.warn(message, UserWarning, stacklevel=2)
    print(f"WARNING: {message}", file=sys.stderr)
    return True
