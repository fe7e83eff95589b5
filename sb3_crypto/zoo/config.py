"""Where the package's RL Zoo hyper-parameter files live (``hyperparams/<algo>.yml``, shipped in the wheel)."""

from __future__ import annotations

from pathlib import Path

HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"


def default_config(algo: str) -> str | None:
    """Path of the package's hyper-parameter file for ``algo``, if it ships one."""
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    return str(path) if path.is_file() else None
