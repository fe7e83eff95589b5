"""Command-line plumbing shared by ``python -m sb3_crypto.train`` and ``enjoy``: the package's
default options and calling RL Zoo's argparse entry points with a given argv."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from sb3_crypto.common.threads import THREADS_ENV
from sb3_crypto.zoo.config import default_config


def has_option(argv: list[str], *names: str) -> bool:
    return any(arg == name or arg.startswith(name + "=") for arg in argv for name in names)


def option_value(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def without_option(argv: list[str], name: str) -> list[str]:
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
    argv = list(argv)
    algo = option_value(argv, "--algo") or "ppo"
    if config and not has_option(argv, "-conf", "--conf-file"):
        config = default_config(algo, option_value(argv, "--env"))
        if config is not None:
            argv += ["-conf", config]
    if not has_option(argv, "--num-threads"):
        argv += ["--num-threads", os.environ.get(THREADS_ENV, "1")]
    if not has_option(argv, "--gym-packages"):
        argv += ["--gym-packages", "sb3_crypto"]
    return argv


def run_with_argv(entry: Callable[[], None], args: list[str]) -> None:
    """Call an argparse-driven RL Zoo entry point with ``args`` as its command line."""
    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        entry()
    finally:
        sys.argv = saved
