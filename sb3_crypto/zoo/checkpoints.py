"""Checkpoints that survive a kill, and finding the latest complete one to resume from.

:class:`AtomicCheckpointCallback` is SB3's ``CheckpointCallback`` (same file names, usable from
YAML by either dotted name) with every file written atomically and in an order that makes a
checkpoint complete only once its model file exists: the replay buffer (with Rainbow's priorities)
and the ``VecNormalize`` statistics first, the model last (with its observation spec inside, see
:func:`~sb3_crypto.algorithms.model_io.save_model_with_spec`). Only the newest replay buffer is kept
(buffers are large; ``keep_buffers`` keeps more). A checkpoint falls due when the step counter
crosses a multiple of ``save_freq`` environment steps (so the numbering continues after a resume)
and is written at the next rollout boundary, after the gradient updates of the steps it counts:
off-policy algorithms train after each rollout, so a checkpoint taken inside one would miss its
updates, and an on-policy rollout cannot be resumed half-way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

from sb3_crypto.algorithms.model_io import save_model_with_spec
from sb3_crypto.files import atomic_path

_CHECKPOINT = re.compile(r"^(?P<prefix>.+)_(?P<steps>\d+)_steps\.zip$")


class AtomicCheckpointCallback(CheckpointCallback):
    """Save a checkpoint every ``save_freq`` environment steps (per env), atomically.

    :param save_replay_buffer: also save the replay buffer (default: whenever the model has one).
    :param keep_buffers: how many of the newest replay-buffer checkpoints to keep.
    """

    def __init__(
        self,
        save_freq: int,
        save_path: str,
        name_prefix: str = "rl_model",
        save_replay_buffer: bool = True,
        save_vecnormalize: bool = True,
        keep_buffers: int = 1,
        verbose: int = 0,
    ) -> None:
        super().__init__(save_freq, save_path, name_prefix, save_replay_buffer, save_vecnormalize, verbose)
        if int(save_freq) < 1:
            raise ValueError(f"save_freq must be at least 1 step, got {save_freq!r}")
        if int(keep_buffers) < 1:
            raise ValueError(f"keep_buffers must be at least 1, got {keep_buffers!r}")
        self.keep_buffers = int(keep_buffers)
        self._next_save = 0
        self._due = False

    def _init_callback(self) -> None:
        super()._init_callback()
        period = self.save_freq * self.training_env.num_envs
        self._period = period
        self._next_save = (self.model.num_timesteps // period + 1) * period  # on from a resumed count

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_save:
            self._next_save = (self.num_timesteps // self._period + 1) * self._period
            self._due = True
        return True

    def _on_rollout_start(self) -> None:
        if self._due:  # the previous rollout and its gradient updates are complete
            self._due = False
            self.save_checkpoint()

    def _on_training_end(self) -> None:
        if self._due:
            self._due = False
            self.save_checkpoint()

    def save_checkpoint(self) -> Path:
        """Write the buffer, the normalisation statistics and then the model; returns the model path."""
        model = self.model
        if self.save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
            with atomic_path(self._checkpoint_path("replay_buffer_", extension="pkl")) as temporary:
                model.save_replay_buffer(temporary)
            self._prune_buffers()
        vec_normalize = model.get_vec_normalize_env()
        if self.save_vecnormalize and vec_normalize is not None:
            with atomic_path(self._checkpoint_path("vecnormalize_", extension="pkl")) as temporary:
                vec_normalize.save(str(temporary))
        path = save_model_with_spec(model, self._checkpoint_path(extension="zip"))
        if self.verbose >= 1:
            print(f"Checkpoint at {self.num_timesteps} steps: {path}")
        return path

    def _prune_buffers(self) -> None:
        pattern = re.compile(rf"^{re.escape(self.name_prefix)}_replay_buffer_(\d+)_steps\.pkl$")
        buffers = sorted(
            (int(match.group(1)), path)
            for path in Path(self.save_path).iterdir()
            if (match := pattern.match(path.name))
        )
        for _, path in buffers[: -self.keep_buffers]:
            path.unlink(missing_ok=True)


class AtomicSaveBestModel(BaseCallback):
    """``callback_on_new_best`` of an ``EvalCallback``: save ``best_model.zip`` atomically, with the
    observation spec of the training env."""

    def __init__(self, save_path: str, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.save_path = save_path

    def _on_step(self) -> bool:
        save_model_with_spec(self.model, Path(self.save_path) / "best_model.zip")
        return True


@dataclass
class Checkpoint:
    """A complete checkpoint of a run: the model file and the files saved with it."""

    steps: int
    model: Path
    replay_buffer: Path | None
    vecnormalize: Path | None


def checkpoint_files(model_path: str | Path) -> Checkpoint:
    """The checkpoint a model file belongs to (its replay buffer and statistics when they exist);
    a plain model file gets ``replay_buffer.pkl`` / ``vecnormalize.pkl`` of its folder, as RL Zoo."""
    path = Path(model_path)
    match = _CHECKPOINT.match(path.name)
    if match is None:
        buffer = path.parent / "replay_buffer.pkl"
        return Checkpoint(-1, path, buffer if buffer.is_file() else None, None)
    prefix, steps = match.group("prefix"), int(match.group("steps"))
    buffer = path.with_name(f"{prefix}_replay_buffer_{steps}_steps.pkl")
    stats = path.with_name(f"{prefix}_vecnormalize_{steps}_steps.pkl")
    return Checkpoint(steps, path, buffer if buffer.is_file() else None, stats if stats.is_file() else None)


def latest_checkpoint(run_dir: str | Path, needs_buffer: bool = False) -> Checkpoint | None:
    """The checkpoint with the most steps in ``run_dir`` (with a replay buffer when ``needs_buffer``)."""
    found = []
    for path in Path(run_dir).glob("*_steps.zip"):
        if _CHECKPOINT.match(path.name):
            checkpoint = checkpoint_files(path)
            if checkpoint.replay_buffer is not None or not needs_buffer:
                found.append(checkpoint)
    return max(found, key=lambda c: c.steps, default=None)


def describe(checkpoint: Checkpoint) -> dict[str, Any]:
    """What a resume loads, for the log."""
    return {
        "steps": checkpoint.steps,
        "model": str(checkpoint.model),
        "replay_buffer": str(checkpoint.replay_buffer) if checkpoint.replay_buffer else None,
        "vecnormalize": str(checkpoint.vecnormalize) if checkpoint.vecnormalize else None,
    }
