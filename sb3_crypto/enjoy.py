"""``python -m sb3_crypto.enjoy``: RL Zoo's ``enjoy`` with the package's algorithms and envs registered.

Needed for algorithms RL Zoo does not ship (``ppo_mask``, ``rainbow``, ``d3qn``); accepts every
``rl_zoo3.enjoy`` option. Before RL Zoo runs, the model it will load is checked against the env it
will make (the run's ``config.yml`` and ``args.yml`` settings, then ``--env-kwargs``): a missing model
or a model whose spaces differ from the env's is reported in one line (exit status 2) naming both
spaces and where the settings came from, instead of a shape error from inside SB3.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _settings(log_path: str, env_id: str, given: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The env kwargs RL Zoo's enjoy will use, and where they came from."""
    import yaml

    kwargs: dict[str, Any] = {}
    sources = []
    config = os.path.join(log_path, env_id, "config.yml")
    if os.path.isfile(config):
        with open(config) as handle:
            loaded = dict(yaml.load(handle, Loader=yaml.UnsafeLoader) or {})
        kwargs.update(loaded.get("env_kwargs") or {})
        sources.append(config)
    args_file = os.path.join(log_path, env_id, "args.yml")
    if os.path.isfile(args_file):
        with open(args_file) as handle:
            saved = yaml.load(handle, Loader=yaml.UnsafeLoader) or {}
        if saved.get("env_kwargs") is not None:
            kwargs = dict(saved["env_kwargs"])
            sources.append(args_file)
    if given:
        kwargs.update(given)
        sources.append("--env-kwargs")
    return kwargs, " + ".join(sources) if sources else f"no config.yml in {log_path}, so the env's defaults"


def check_model(argv: list[str]) -> None:
    """Load the model RL Zoo's enjoy would load and check it against the env it would make."""
    from huggingface_sb3 import EnvironmentName
    from rl_zoo3.utils import StoreDict, get_model_path

    from sb3_crypto.algorithms.model_io import check_model_fits_env, load_model

    parser = argparse.ArgumentParser(prog="python -m sb3_crypto.enjoy", add_help=False)
    parser.add_argument("--env", type=EnvironmentName, default="CartPole-v1")
    parser.add_argument("-f", "--folder", default="rl-trained-agents")
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--exp-id", type=int, default=0)
    parser.add_argument("--load-best", action="store_true")
    parser.add_argument("--load-checkpoint", type=int)
    parser.add_argument("--load-last-checkpoint", action="store_true")
    parser.add_argument("--env-kwargs", type=str, nargs="+", action=StoreDict)
    args, _ = parser.parse_known_args(argv)
    from sb3_crypto.common.cli import usage_errors

    with usage_errors(parser, AssertionError, ValueError, FileNotFoundError):
        _, model_path, log_path = get_model_path(
            args.exp_id,
            args.folder,
            args.algo,
            args.env,
            args.load_best,
            None if args.load_checkpoint is None else str(args.load_checkpoint),
            args.load_last_checkpoint,
        )
        env_kwargs, source = _settings(log_path, args.env.gym_id, args.env_kwargs)
        model = load_model(model_path, args.algo)
        check_model_fits_env(model, args.env.gym_id, env_kwargs, source=source, hint="--env-kwargs")


def main(argv: list[str] | None = None) -> None:
    """Run RL Zoo's enjoy with ``--gym-packages sb3_crypto`` and one torch thread by default."""
    import rl_zoo3.enjoy

    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.zoo import install
    from sb3_crypto.zoo.cli import run_with_argv, with_defaults

    install()
    args = with_defaults(sys.argv[1:] if argv is None else argv, config=False)
    check_model(args)
    run_with_argv(rl_zoo3.enjoy.enjoy, args)


if __name__ == "__main__":
    main()
