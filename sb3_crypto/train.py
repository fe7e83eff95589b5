"""``python -m sb3_crypto.train``: RL Zoo's ``train`` with the package's defaults.

Accepts every ``rl_zoo3.train`` option. Differences:

* ``sb3_crypto`` is imported (environment ids registered) and RL Zoo patched (:mod:`sb3_crypto.zoo`);
* ``-conf`` defaults to the package's own ``hyperparams/<algo>.yml`` (works when installed
  non-editable);
* ``--num-threads`` defaults to 1 (``$SB3_CRYPTO_THREADS`` overrides; see
  :func:`sb3_crypto.common.threads.configure_threads`);
* the evaluation env runs on the validation split with the training env's settings;
* ``--optimize-metric NAME`` makes ``-optimize`` maximise a metric of :mod:`sb3_crypto.metrics`
  (``sharpe``, ``sortino``, ``calmar``, ...) on the validation split instead of the mean reward.

Example::

    python -m sb3_crypto.train --algo sac --env CryptoTrading-v0
"""

from __future__ import annotations

import sys

from sb3_crypto.zoo.cli import option_value, run_with_argv, with_defaults, without_option

__all__ = ["main", "run_with_argv", "with_defaults"]


def main(argv: list[str] | None = None) -> None:
    """Run RL Zoo training with the package defaults."""
    import rl_zoo3.train

    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.zoo import ExperimentManager, install

    install()
    args = with_defaults(sys.argv[1:] if argv is None else argv)
    ExperimentManager.optimize_metric = option_value(args, "--optimize-metric")
    run_with_argv(rl_zoo3.train.train, without_option(args, "--optimize-metric"))  # RL Zoo does not know it


if __name__ == "__main__":
    main()
