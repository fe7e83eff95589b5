"""Where the package's RL Zoo hyper-parameter files live (``hyperparams/<algo>.yml``, shipped in the wheel)."""

from __future__ import annotations

from pathlib import Path

import yaml

HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"


def default_config(algo: str, env_id: str | None = None) -> str | None:
    """Path of the package's hyper-parameter file for ``algo``, if it ships one.

    With ``env_id``, only if that file has an entry for the env (or a ``default`` entry): otherwise
    RL Zoo keeps its own file for the algorithm (e.g. ``ppo.yml`` ships only the portfolio env's entry,
    and ``--algo ppo --env CartPole-v1`` still finds RL Zoo's tuned CartPole settings).
    """
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    if not path.is_file():
        return None
    if env_id is not None:
        entries = yaml.safe_load(path.read_text()) or {}
        if env_id not in entries and "default" not in entries:
            return None
    return str(path)
