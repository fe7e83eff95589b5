"""``python -m sb3_crypto.train --resume RUN_DIR``: continue a run in place after a kill.

A run started by ``sb3_crypto.train`` records its command line in ``<run>/<env>/resume.json``.
Resuming reads it back, loads the run's newest complete checkpoint (model, replay buffer,
``VecNormalize`` statistics) and trains the steps left of the original budget into the same folder,
appending to its monitor log and TensorBoard run.
"""

from __future__ import annotations

import json
from pathlib import Path

from sb3_crypto.zoo.checkpoints import Checkpoint, latest_checkpoint


class ResumeError(ValueError):
    """A run cannot be resumed; the message says why and what to do instead."""


def resume_record(run_dir: str | Path) -> dict:
    """The ``resume.json`` of a run folder (``logs/<algo>/<env>_<n>``)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ResumeError(f"--resume {run}: no such run folder")
    records = sorted(run.glob("*/resume.json"))
    if not records:
        raise ResumeError(
            f"--resume {run}: no <env>/resume.json in the folder (runs started by plain rl_zoo3.train or an earlier "
            "sb3_crypto do not record it); continue such a run with -i CHECKPOINT.zip instead"
        )
    record = json.loads(records[0].read_text())
    if not isinstance(record.get("argv"), list):
        raise ResumeError(f"{records[0]}: no command line recorded under 'argv'")
    return record


def resume_checkpoint(run_dir: str | Path, needs_buffer: bool = False) -> Checkpoint:
    """The newest complete checkpoint of a run; an error names the folder when there is none."""
    checkpoint = latest_checkpoint(run_dir, needs_buffer=needs_buffer)
    if checkpoint is None:
        raise ResumeError(
            f"--resume {run_dir}: the run saved no checkpoint yet (rl_model_<steps>_steps.zip); checkpoints are "
            "written every --save-freq steps"
        )
    return checkpoint


def resume_argv(run_dir: str | Path) -> list[str]:
    """The command line that started the run, to run again with the run's folder and checkpoint."""
    return list(resume_record(run_dir)["argv"])
