"""Ensembles of trained models (reference system S2), usable wherever a model is (``predict``).

* continuous actions: the weighted mean of the members' actions;
* discrete actions: a weighted vote of the members' actions (``mode="vote"``), or the argmax of the
  weighted mean Q-values (``mode="mean_q"``, members with a ``q_net``: DQN, Rainbow, D3QN), with
  action masks applied when given.

Members predict deterministically; recurrent members are not supported (their state cannot be
shared across an ensemble call).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_crypto.rainbow.network import noise_off


class EnsemblePolicy:
    """Combine several SB3 models that share observation and action spaces.

    :param models: trained models.
    :param weights: non-negative weights (normalised; equal by default).
    :param mode: ``"mean"`` (continuous), ``"vote"`` or ``"mean_q"`` (discrete); ``"auto"`` picks
        ``"mean"`` for Box action spaces and ``"vote"`` for Discrete ones.
    """

    def __init__(self, models: Sequence[Any], weights: Sequence[float] | None = None, mode: str = "auto") -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        first = models[0]
        for k, model in enumerate(models[1:], start=1):
            if (
                model.observation_space.shape != first.observation_space.shape
                or model.action_space != first.action_space
            ):
                raise ValueError(f"model {k} has other observation or action spaces than model 0")
        weights = np.ones(len(models)) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(models),) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"need one non-negative weight per model with a positive sum, got {list(weights)}")
        self.models = list(models)
        self.weights = weights / weights.sum()
        self.action_space = first.action_space
        self.observation_space = first.observation_space
        discrete = isinstance(self.action_space, spaces.Discrete)
        if mode == "auto":
            mode = "vote" if discrete else "mean"
        if mode not in (("vote", "mean_q") if discrete else ("mean",)):
            raise ValueError(f"mode {mode!r} does not fit a {type(self.action_space).__name__} action space")
        if mode == "mean_q" and not all(hasattr(getattr(m, "policy", None), "q_net") for m in self.models):
            raise ValueError("mode='mean_q' needs models with a q_net (DQN, Rainbow, D3QN)")
        self.mode = mode

    def q_values(self, observation: np.ndarray) -> np.ndarray:
        """Weighted mean Q-values ``(batch, n_actions)`` (``mode="mean_q"`` members)."""
        batch = np.asarray(observation, dtype=np.float32).reshape(-1, *self.observation_space.shape)
        total = 0.0
        for weight, model in zip(self.weights, self.models):
            net = model.policy.q_net
            with th.no_grad(), noise_off(net):
                values = net(th.as_tensor(batch, device=model.device)).cpu().numpy()
            total = total + weight * values
        return np.asarray(total)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, None]:
        """The ensemble's action for one observation (or a batch), in SB3's ``predict`` form."""
        single = np.asarray(observation).shape == self.observation_space.shape
        if self.mode == "mean_q":
            values = self.q_values(observation)
            if action_masks is not None:
                values = np.where(np.asarray(action_masks, dtype=bool).reshape(values.shape), values, -np.inf)
            actions = values.argmax(axis=1)
            return (actions[0] if single else actions), None
        extra = {"action_masks": action_masks} if action_masks is not None else {}
        predictions = [np.asarray(m.predict(observation, deterministic=True, **extra)[0]) for m in self.models]
        if self.mode == "mean":
            mean = sum(w * p for w, p in zip(self.weights, predictions))
            return np.asarray(mean, dtype=np.float32), None
        stacked = np.stack([p.reshape(-1) for p in predictions])  # (models, batch)
        votes = np.zeros((stacked.shape[1], int(self.action_space.n)))
        for weight, row in zip(self.weights, stacked):
            votes[np.arange(len(row)), row] += weight
        actions = votes.argmax(axis=1)  # ties go to the lowest action index
        return (actions[0] if single else actions), None
