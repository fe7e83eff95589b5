"""Prioritized experience replay with n-step returns, for SB3 off-policy algorithms.

* :class:`SumTree` - a flat binary sum tree over ``capacity`` leaves; updates and stratified
  sampling are vectorised over the whole batch (one numpy operation per tree level, no per-item
  Python loop).
* :class:`PrioritizedReplayBuffer` - SB3's ``ReplayBuffer`` storage plus a sum tree over every
  ``(position, env)`` slot. Priorities are ``(|delta| + eps) ** alpha``; new transitions enter at the
  current maximum priority; importance weights are ``(N * P) ** -beta`` divided by their batch
  maximum; ``beta`` is set by the algorithm (annealed from ``beta0`` to 1). n-step returns are
  computed at sampling time exactly as SB3's ``NStepReplayBuffer`` does (stop at the first
  termination or truncation, bootstrap after a truncation, never read past the newest transition),
  so SB3's own n-step buffer must stay off (the algorithm passes ``n_steps`` here instead).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize


class SumTree:
    """A wide sum tree: ``fanout`` children per node, ``depth`` levels above ``fanout ** depth`` leaves.

    A binary tree over a million leaves has 20 levels, each costing a handful of numpy calls per
    batch; with 32 children per node the same capacity needs 4 levels (the children of a node are
    one contiguous row, summed or prefix-summed in one call). Level ``d`` holds ``fanout ** d`` sums,
    level 0 is the root, the last level the leaves.
    """

    def __init__(self, capacity: int, max_fanout: int = 32) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        depth = max(1, int(np.ceil(np.log(self.capacity) / np.log(max_fanout) - 1e-9)))
        fanout = max(2, int(np.ceil(self.capacity ** (1.0 / depth))))
        while fanout**depth < self.capacity:
            fanout += 1
        self.fanout, self.depth = fanout, depth
        self.levels = [np.zeros(fanout**d, dtype=np.float64) for d in range(depth + 1)]

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.levels[0][0])

    @property
    def leaves(self) -> np.ndarray:
        """The leaf values (padded beyond ``capacity`` with zeros)."""
        return self.levels[-1]

    def __getitem__(self, index: np.ndarray | int) -> np.ndarray:
        return self.levels[-1][np.asarray(index)]

    def update(self, index: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``index`` to ``values`` and refresh their ancestors (duplicates: last wins)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if np.any(values < 0) or not np.all(np.isfinite(values)):
            raise ValueError("SumTree priorities must be finite and non-negative")
        if np.any(index < 0) or np.any(index >= self.capacity):
            raise IndexError(f"SumTree index out of range [0, {self.capacity})")
        self.levels[-1][index] = values
        nodes = index
        for d in range(self.depth, 0, -1):
            # Recompute each touched parent from its children: duplicates just write the same sum.
            nodes = nodes // self.fanout
            self.levels[d - 1][nodes] = self.levels[d].reshape(-1, self.fanout)[nodes].sum(axis=1)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index of each cumulative value (prefix-sum search), vectorised over the batch."""
        values = np.asarray(values, dtype=np.float64).copy()
        rows = np.arange(len(values))
        nodes = np.zeros(len(values), dtype=np.int64)
        for d in range(1, self.depth + 1):
            cumulative = np.cumsum(self.levels[d].reshape(-1, self.fanout)[nodes], axis=1)
            # Keep each value strictly below its node's total, so rounding never picks an empty
            # trailing child (their running sums equal the total).
            np.minimum(values, np.nextafter(cumulative[:, -1], 0.0), out=values)
            choice = np.count_nonzero(cumulative <= values[:, None], axis=1)
            values -= np.where(choice > 0, cumulative[rows, choice - 1], 0.0)
            nodes = nodes * self.fanout + choice
        return nodes

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Stratified sampling: one leaf from each of ``batch_size`` equal slices of the total."""
        total = self.total
        if total <= 0:
            raise ValueError("cannot sample from an empty SumTree")
        bounds = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        return self.find(np.minimum(bounds, np.nextafter(total, 0)))


class PrioritizedReplayBufferSamples(NamedTuple):
    """SB3's replay samples plus importance weights and the flat slot indices to re-prioritise."""

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor
    weights: th.Tensor
    indices: np.ndarray


class PrioritizedReplayBuffer(ReplayBuffer):
    """Prioritized, n-step replay buffer (see the module docstring).

    :param alpha: how strongly priorities shape sampling (0 = uniform).
    :param beta: importance-sampling exponent for the next samples (the algorithm anneals it).
    :param epsilon: added to ``|delta|`` so no transition gets zero priority.
    :param n_steps: n for n-step returns (1 = one-step TD).
    :param gamma: discount for the n-step return.
    :param prioritized: ``False`` samples uniformly (weights 1) with the same n-step logic.
    :param seed: seed of the buffer's own sampling generator.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        alpha: float = 0.5,
        beta: float = 0.4,
        epsilon: float = 1e-6,
        n_steps: int = 1,
        gamma: float = 0.99,
        prioritized: bool = True,
        seed: int | None = None,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError("PrioritizedReplayBuffer does not support optimize_memory_usage=True")
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        if alpha < 0 or epsilon <= 0:
            raise ValueError(f"alpha must be >= 0 and epsilon > 0, got alpha={alpha}, epsilon={epsilon}")
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs, False, handle_timeout_termination
        )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.epsilon = float(epsilon)
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)
        self.prioritized = prioritized
        self.tree = SumTree(self.buffer_size * self.n_envs)
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)
        self._pin = self.device.type == "cuda"

    def add(self, obs: Any, next_obs: Any, action: Any, reward: Any, done: Any, infos: list[dict[str, Any]]) -> None:
        """Store one step of every env; new slots get the current maximum priority."""
        first = self.pos * self.n_envs
        super().add(obs, next_obs, action, reward, done, infos)
        if self.prioritized:
            priority = self.max_priority**self.alpha
            for slot in range(first, first + self.n_envs):
                self.tree.update(np.array([slot]), np.array([priority]))

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> PrioritizedReplayBufferSamples:  # type: ignore[override]
        """Draw a batch: stratified by priority (or uniform), with n-step targets and IS weights."""
        size = self.size()
        if size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if self.prioritized:
            slots = self.tree.sample(batch_size, self.rng)
            probabilities = self.tree[slots] / self.tree.total
            weights = (size * self.n_envs * probabilities) ** (-self.beta)
            weights = weights / weights.max()
        else:
            slots = self.rng.integers(0, size * self.n_envs, batch_size)
            weights = np.ones(batch_size)
        positions, env_indices = np.divmod(slots, self.n_envs)
        return self._n_step_samples(positions, env_indices, slots, weights, env)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray | th.Tensor) -> None:
        """Set the priorities of sampled slots from their new TD errors (or distributional losses)."""
        if not self.prioritized:
            return
        if isinstance(td_errors, th.Tensor):
            td_errors = td_errors.detach().float().cpu().numpy()
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64).reshape(-1)) + self.epsilon
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(indices, priorities**self.alpha)

    def to_torch(self, array: np.ndarray, copy: bool = True) -> th.Tensor:
        """To the device; on CUDA through pinned memory with a non-blocking copy."""
        if self._pin:
            return th.as_tensor(array).pin_memory().to(self.device, non_blocking=True)
        return super().to_torch(array, copy)

    def _n_step_samples(
        self,
        positions: np.ndarray,
        env_indices: np.ndarray,
        slots: np.ndarray,
        weights: np.ndarray,
        env: VecNormalize | None,
    ) -> PrioritizedReplayBufferSamples:
        """n-step returns for the given (position, env) pairs, with SB3 ``NStepReplayBuffer`` semantics."""
        if self.n_steps == 1:
            return self._one_step_samples(positions, env_indices, slots, weights, env)
        last_valid = self.pos - 1  # the newest transition: never continue past it
        saved = self.timeouts[last_valid].copy()
        self.timeouts[last_valid] = np.logical_or(saved, np.logical_not(self.dones[last_valid]))
        try:
            steps = np.arange(self.n_steps)[None, :]
            indices = (positions[:, None] + steps) % self.buffer_size
            envs = env_indices[:, None]
            rewards = self._normalize_reward(self.rewards[indices, envs], env)
            ended = np.logical_or(self.dones[indices, envs], self.timeouts[indices, envs])
            end = np.where(ended.any(axis=1), ended.argmax(axis=1), self.n_steps - 1)
            mask = steps <= end[:, None]
            discounts = (self.gamma ** mask.sum(axis=1, keepdims=True)).astype(np.float32)
            returns = (rewards * (self.gamma**steps) * mask).sum(axis=1, keepdims=True)
            last = (positions + end) % self.buffer_size
            next_obs = self._normalize_obs(self.next_observations[last, env_indices], env)
            dones = self.dones[last, env_indices] * (1.0 - self.timeouts[last, env_indices])
        finally:
            self.timeouts[last_valid] = saved
        return self._package(positions, env_indices, slots, weights, env, next_obs, dones, returns, discounts)

    def _one_step_samples(
        self,
        positions: np.ndarray,
        env_indices: np.ndarray,
        slots: np.ndarray,
        weights: np.ndarray,
        env: VecNormalize | None,
    ) -> PrioritizedReplayBufferSamples:
        """The ``n_steps=1`` case without the sequence machinery (same result, less work)."""
        next_obs = self._normalize_obs(self.next_observations[positions, env_indices], env)
        dones = self.dones[positions, env_indices] * (1.0 - self.timeouts[positions, env_indices])
        returns = self._normalize_reward(self.rewards[positions, env_indices], env)[:, None]
        discounts = np.full((len(positions), 1), self.gamma, dtype=np.float32)
        return self._package(positions, env_indices, slots, weights, env, next_obs, dones, returns, discounts)

    def _package(
        self,
        positions: np.ndarray,
        env_indices: np.ndarray,
        slots: np.ndarray,
        weights: np.ndarray,
        env: VecNormalize | None,
        next_obs: np.ndarray,
        dones: np.ndarray,
        returns: np.ndarray,
        discounts: np.ndarray,
    ) -> PrioritizedReplayBufferSamples:
        obs = self._normalize_obs(self.observations[positions, env_indices], env)
        return PrioritizedReplayBufferSamples(
            observations=self.to_torch(obs),
            actions=self.to_torch(self.actions[positions, env_indices]),
            next_observations=self.to_torch(next_obs),
            dones=self.to_torch(dones[:, None].astype(np.float32)),
            rewards=self.to_torch(returns.astype(np.float32)),
            discounts=self.to_torch(discounts),
            weights=self.to_torch(weights.astype(np.float32)[:, None]),
            indices=slots,
        )
