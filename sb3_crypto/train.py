"""``python -m sb3_crypto.train``: RL Zoo's ``train`` with the package's defaults.

Accepts every ``rl_zoo3.train`` option. Differences:

* ``sb3_crypto`` is imported (environment ids registered) and RL Zoo patched (:mod:`sb3_crypto.zoo`);
* ``-conf`` defaults to the package's own ``hyperparams/<algo>.yml`` (works when installed
  non-editable);
* ``--num-threads`` defaults to 1 (``$SB3_CRYPTO_THREADS`` overrides; see
  :func:`sb3_crypto.utils.configure_threads`);
* the evaluation env runs on the validation split with the training env's settings;
* ``--optimize-metric NAME`` makes ``-optimize`` maximise a metric of :mod:`sb3_crypto.metrics`
  (``sharpe``, ``sortino``, ``calmar``, ...) on the validation split instead of the mean reward.

Example::

    python -m sb3_crypto.train --algo sac --env CryptoTrading-v0
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from sb3_crypto.utils import THREADS_ENV


def _has_option(argv: list[str], *names: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in argv for name in names)


def _option_value(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _without_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def with_defaults(argv: list[str], config: bool = True) -> list[str]:
    """Fill in the package defaults for options the user did not give (``-conf`` only if ``config``)."""
    from sb3_crypto.zoo import default_config

    argv = list(argv)
    algo = _option_value(argv, "--algo") or "ppo"
    if config and not _has_option(argv, "-conf", "--conf-file"):
        config = default_config(algo)
        if config is not None:
            argv += ["-conf", config]
    if not _has_option(argv, "--num-threads"):
        argv += ["--num-threads", os.environ.get(THREADS_ENV, "1")]
    if not _has_option(argv, "--gym-packages"):
        argv += ["--gym-packages", "sb3_crypto"]
    return argv


def main(argv: list[str] | None = None) -> None:
    """Run RL Zoo training with the package defaults."""
    import rl_zoo3.train

    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.zoo import ExperimentManager, install

    install()
    args = with_defaults(sys.argv[1:] if argv is None else argv)
    ExperimentManager.optimize_metric = _option_value(args, "--optimize-metric")
    run_with_argv(rl_zoo3.train.train, _without_option(args, "--optimize-metric"))  # RL Zoo does not know it


def run_with_argv(entry: Callable[[], None], args: list[str]) -> None:
    """Call an argparse-driven RL Zoo entry point with ``args`` as its command line."""
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        entry()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
