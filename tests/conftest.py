"""Shared test setup: one torch thread (2-core machines slow down badly when oversubscribed), the
``tests`` folder on the import path (``from helpers import ...`` from every sub-folder), the ``slow``
marker, and a cache of the small trained models that several test modules share."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("SB3_CRYPTO_THREADS", "1")

import pytest
import torch
from filelock import FileLock

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402
from browser import chromium  # noqa: E402, F401  (the headless-Chromium fixture of the HTML page tests)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, worker_id: str):
    """``trained(name) -> (model, env_id)``: a fresh copy of the briefly trained model of kind
    ``name`` (see ``helpers.KINDS``). Each kind is trained once per test run and saved; the
    xdist workers share the files (a lock makes one worker train while the other waits), and every
    call loads a new copy, so a test may change its model without touching another test's."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # shared by the xdist workers of this run
    cache = root / "trained_models"
    cache.mkdir(exist_ok=True)

    def load(name: str):
        path = cache / f"{name}.zip"
        with FileLock(str(path) + ".lock"):
            if not path.is_file():
                model, _ = helpers.train(name)
                partial = path.with_name(path.name + ".partial.zip")
                model.save(partial)
                partial.replace(path)
        env_id = helpers._kinds()[name][2]
        model = helpers.algorithm_of(name).load(path, env=helpers.make(env_id)(), device="cpu")
        return model, env_id

    return load


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` need a GPU: skipped, with the reason, where torch sees none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is False on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
