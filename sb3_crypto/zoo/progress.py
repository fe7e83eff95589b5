"""A one-line training display for ``python -m sb3_crypto.train``: :class:`TrainingProgress`.

SB3 prints its whole logger table every few episodes when ``verbose=1``; for a run the figures that
matter are how far it is, how fast it goes and how the agent does on the validation split. This
callback shows them as one tqdm bar (tqdm comes with RL Zoo): steps done of the run's total,
steps per second, the last and best validation mean return (from the run's ``EvalCallback``) and
the mean training episode return. ``sb3_crypto.train`` uses it unless ``--verbose`` is given
(``--verbose 1`` brings SB3's table back).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback


class TrainingProgress(BaseCallback):
    """tqdm bar over the run's environment steps with steps/s and validation return.

    :param evaluation: the run's ``EvalCallback``, whose last and best mean rewards are shown.
    :param refresh_steps: steps between updates of the bar (the update costs little, but not nothing).
    :param file: where the bar goes (default ``sys.stderr``).
    """

    def __init__(self, evaluation: EvalCallback | None = None, refresh_steps: int = 100, file: Any = None) -> None:
        super().__init__()
        self.evaluation = evaluation
        self.refresh_steps = max(int(refresh_steps), 1)
        self.file = file
        self.bar: Any = None
        self._shown = 0
        self._evaluations = 0

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        total = self.locals.get("total_timesteps")
        start = self.model.num_timesteps
        file = self.file if self.file is not None else sys.stderr
        interactive = hasattr(file, "isatty") and file.isatty()
        # (SB3's learn() has made total_timesteps the absolute target before the callbacks start)
        self.bar = tqdm(
            total=None if total is None else int(total),
            initial=start,
            unit="step",
            dynamic_ncols=True,
            file=file,
            mininterval=0.5 if interactive else 30.0,  # a log file gets a line every 30 s, not every update
            smoothing=0.05,
        )
        self._shown = start

    def _on_step(self) -> bool:
        if self.n_calls % self.refresh_steps == 0:
            self._refresh()
        return True

    def _refresh(self) -> None:
        if self.bar is None:
            return
        steps = self.model.num_timesteps
        self.bar.update(steps - self._shown)
        self._shown = steps
        postfix: dict[str, str] = {}
        evaluation = self.evaluation
        if evaluation is not None and np.isfinite(evaluation.best_mean_reward):  # (-inf until one ran)
            postfix["val return"] = f"{evaluation.last_mean_reward:+.2f}"
            postfix["best"] = f"{evaluation.best_mean_reward:+.2f}"
        episodes = getattr(self.model, "ep_info_buffer", None)
        if episodes:
            postfix["train return"] = f"{np.mean([info['r'] for info in episodes]):+.2f}"
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self._refresh()
            self.bar.close()
            self.bar = None
