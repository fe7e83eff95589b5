"""Distributed tuning on shared Optuna storage: the study is created up front with retries (workers
starting together on a fresh database race to create its tables and the study), and each worker's
sampler seed is offset by its process id (workers started with the same ``--seed`` would otherwise
propose the same trials)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import optuna


def worker_seed(seed: int) -> int:
    """A sampler seed unique to this worker process, derived from the run's ``--seed``."""
    return (seed + 7919 * os.getpid()) % (2**32 - 1)


def _storage(url: str) -> Any:
    if url.endswith(".log"):
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    return url


def ensure_study(url: str, study_name: str | None, attempts: int = 10) -> None:
    """Create the study if needed, retrying when another worker wins the creation race."""
    if study_name is None:
        return
    for attempt in range(attempts):
        try:
            optuna.create_study(storage=_storage(url), study_name=study_name, load_if_exists=True, direction="maximize")
            return
        except Exception:  # IntegrityError, DuplicatedStudyError, OperationalError: a lost race
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random())
