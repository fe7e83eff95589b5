"""``python -m sb3_crypto.train``: RL Zoo's ``train`` with the package's defaults.

Accepts every ``rl_zoo3.train`` option. Differences:

* ``sb3_crypto`` is imported (environment ids registered) and RL Zoo patched (:mod:`sb3_crypto.zoo`);
* ``-conf`` defaults to the package's own ``hyperparams/<algo>.yml`` (works when installed
  non-editable);
* ``--num-threads`` defaults to 1 (``$SB3_CRYPTO_THREADS`` overrides; see
  :func:`sb3_crypto.common.threads.configure_threads`);
* the evaluation env runs on the validation split with the training env's settings;
* ``--optimize-metric NAME`` makes ``-optimize`` maximise a metric of :mod:`sb3_crypto.metrics`
  (``sharpe``, ``sortino``, ``calmar``, ...) on the validation split instead of the mean reward;
* checkpoints every ``--save-freq`` steps (default 10,000) with the replay buffer
  (``--no-checkpoint-buffer`` leaves it out) and ``VecNormalize`` statistics, all files written
  atomically; YAML callback paths (``save_path``, ``best_model_save_path``) land inside the run;
* a progress bar (steps, steps/s, last and best validation return, training return) replaces SB3's
  logger table, which ``--verbose 1`` brings back (``--verbose`` given at all: RL Zoo's output);
* ``--algo sac_fast`` trains :class:`~sb3_crypto.sac.FastSAC` (SB3's SAC, same hyper-parameters
  and files, a training step ~2x faster), the one ``scripts/demo.sh`` uses;
* ``--resume RUN_DIR`` continues a killed run in place from its newest checkpoint: step counter,
  learning-rate schedule, replay buffer, statistics, monitor and TensorBoard logs go on, and the
  run stops at its original ``-n``. ``-i CHECKPOINT.zip`` (RL Zoo's warm start) also keeps the
  step counter, schedule, buffer and statistics of that checkpoint, in a new run folder.

Example::

    python -m sb3_crypto.train --algo sac --env CryptoTrading-v0
    python -m sb3_crypto.train --resume logs/sac/CryptoTrading-v0_1   # after a kill
"""

from __future__ import annotations

import sys

from sb3_crypto.zoo.cli import has_option, option_value, run_with_argv, with_defaults, without_option

__all__ = ["DEFAULT_SAVE_FREQ", "main", "run_with_argv", "with_defaults"]

#: Checkpoint period (environment steps) when ``--save-freq`` is not given: a killed run loses at
#: most this many steps (``--resume RUN_DIR`` continues it).
DEFAULT_SAVE_FREQ = 10_000


def main(argv: list[str] | None = None) -> None:
    """Run RL Zoo training with the package defaults (or continue a run with ``--resume RUN_DIR``)."""
    import rl_zoo3.train

    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.zoo import ExperimentManager, install
    from sb3_crypto.zoo.resume import ResumeError, resume_argv

    install()
    args = list(sys.argv[1:] if argv is None else argv)
    resume = option_value(args, "--resume")
    if resume is not None:
        others = without_option(args, "--resume")
        if others:
            raise SystemExit(f"--resume takes the run folder alone (the run's own settings are reused), got {others}")
        try:
            args = resume_argv(resume)
        except ResumeError as error:
            raise SystemExit(str(error)) from error
    else:
        args = with_defaults(args)
        if not has_option(args, "--save-freq"):
            args += ["--save-freq", str(DEFAULT_SAVE_FREQ)]
    # SB3's logger table every few episodes gives way to a one-line progress display (steps,
    # steps/s, validation return) unless the run asks for a verbosity (``--verbose 1``: the table).
    optimizing = has_option(args, "-optimize", "--optimize-hyperparameters")
    ExperimentManager.progress_display = not has_option(args, "--verbose") and not optimizing
    ExperimentManager.package_argv = args
    ExperimentManager.resume_run = resume
    ExperimentManager.checkpoint_buffer = not has_option(args, "--no-checkpoint-buffer")
    ExperimentManager.optimize_metric = option_value(args, "--optimize-metric")
    # RL Zoo does not know the package's own options.
    zoo_args = [arg for arg in without_option(args, "--optimize-metric") if arg != "--no-checkpoint-buffer"]
    if ExperimentManager.progress_display:
        zoo_args += ["--verbose", "0"]  # (not recorded in the run's resume command)
    try:
        run_with_argv(rl_zoo3.train.train, zoo_args)
    finally:
        ExperimentManager.resume_run = None


if __name__ == "__main__":
    main()
