"""Prioritized experience replay with n-step returns, for SB3 off-policy algorithms.

* :class:`SumTree` - a wide sum tree over ``capacity`` leaves in one flat array; updates and
  stratified sampling run over the whole batch in compiled (numba) loops.
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

import numba
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize


@numba.njit(cache=True, nogil=True)
def _tree_update(flat: np.ndarray, offsets: np.ndarray, fanout: int, index: np.ndarray, values: np.ndarray) -> None:
    """Set leaves and recompute every ancestor from its children (exact; duplicates: last wins).

    Level by level over the batch, like :func:`_tree_find`, so the cache misses overlap.
    """
    depth = offsets.size - 1
    nodes = index.copy()
    for k in range(index.size):
        flat[offsets[depth] + index[k]] = values[k]
    for d in range(depth, 0, -1):
        for k in range(nodes.size):
            parent = nodes[k] // fanout
            first = offsets[d] + parent * fanout
            total = 0.0
            for c in range(fanout):
                total += flat[first + c]
            flat[offsets[d - 1] + parent] = total
            nodes[k] = parent


@numba.njit(cache=True, nogil=True)
def _tree_find(flat: np.ndarray, offsets: np.ndarray, fanout: int, values: np.ndarray, out: np.ndarray) -> None:
    """Leaf of each cumulative value: walk down, subtracting the mass of the children passed over.

    Level by level over the whole batch (not one walk after another): the lookups of a level are
    independent, so the CPU overlaps their cache misses in the large lower levels.
    """
    depth = offsets.size - 1
    remaining = values.copy()
    out[:] = 0
    for d in range(1, depth + 1):
        for k in range(values.size):
            value = remaining[k]
            first = offsets[d] + out[k] * fanout
            c = 0
            while c < fanout - 1 and value >= flat[first + c]:
                value -= flat[first + c]
                c += 1
            # Rounding can leave the walk on an empty child at the end of the row: step back to
            # the last child with mass and stay inside it.
            while c > 0 and flat[first + c] <= 0.0:
                c -= 1
                value = flat[first + c]
            if value >= flat[first + c]:
                value = np.nextafter(flat[first + c], 0.0)
            remaining[k] = value
            out[k] = out[k] * fanout + c


@numba.njit(cache=True, nogil=True)
def _n_step_window(
    rewards: np.ndarray,
    dones: np.ndarray,
    timeouts: np.ndarray,
    positions: np.ndarray,
    envs: np.ndarray,
    n_steps: int,
    newest: int,
    window: np.ndarray,
    last: np.ndarray,
    steps: np.ndarray,
) -> None:
    """For each sampled ``(position, env)``: the rewards of its n-step window (zeros after the end),
    the position of the window's last transition and the number of transitions in the window.

    A window ends at the first termination or truncation, after ``n_steps`` transitions, or at the
    newest transition (``newest``: nothing after it belongs to the same episode yet), exactly as
    SB3's ``NStepReplayBuffer``.
    """
    size = rewards.shape[0]
    for k in range(positions.size):
        env = envs[k]
        index = positions[k]
        for step in range(n_steps):
            window[k, step] = rewards[index, env]
            if dones[index, env] > 0.0 or timeouts[index, env] > 0.0 or index == newest or step == n_steps - 1:
                last[k] = index
                steps[k] = step + 1
                for rest in range(step + 1, n_steps):
                    window[k, rest] = 0.0
                break
            index = (index + 1) % size


class SumTree:
    """A wide sum tree: ``fanout`` children per node, ``depth`` levels above ``fanout ** depth`` leaves.

    All levels live in one flat ``float64`` array (level 0 is the root, the last level the leaves);
    updates and prefix-sum searches run in compiled loops (numba) over the whole batch, so a batch
    costs microseconds and no Python per item. With 16 children per node a million slots need 5
    levels (binary: 20), and the children of a node are one contiguous row in memory.
    """

    def __init__(self, capacity: int, max_fanout: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        depth = max(1, int(np.ceil(np.log(self.capacity) / np.log(max_fanout) - 1e-9)))
        fanout = max(2, int(np.ceil(self.capacity ** (1.0 / depth))))
        while fanout**depth < self.capacity:
            fanout += 1
        self.fanout, self.depth = fanout, depth
        sizes = [fanout**d for d in range(depth + 1)]
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)[: depth + 1]
        self.flat = np.zeros(sum(sizes), dtype=np.float64)
        self._views()

    def _views(self) -> None:
        """``levels[d]``: level ``d`` as a view into ``flat``."""
        sizes = [self.fanout**d for d in range(self.depth + 1)]
        self.levels = [self.flat[self.offsets[d] : self.offsets[d] + sizes[d]] for d in range(self.depth + 1)]

    def __getstate__(self) -> dict[str, Any]:
        # The level views would unpickle as copies detached from ``flat``: pickle ``flat`` alone.
        return {key: value for key, value in self.__dict__.items() if key != "levels"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "flat" not in state:  # a buffer saved by sb3_crypto 0.1 (one array per level)
            levels = state.pop("levels")
            state["offsets"] = np.concatenate(([0], np.cumsum([len(x) for x in levels]))).astype(np.int64)[:-1]
            state["flat"] = np.concatenate(levels).astype(np.float64)
        self.__dict__.update(state)
        self._views()

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self.flat[0])

    @property
    def leaves(self) -> np.ndarray:
        """The leaf values (padded beyond ``capacity`` with zeros)."""
        return self.levels[-1]

    def __getitem__(self, index: np.ndarray | int) -> np.ndarray:
        return self.levels[-1][np.asarray(index)]

    def update(self, index: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``index`` to ``values`` and refresh their ancestors (duplicates: last wins)."""
        index = np.ascontiguousarray(index, dtype=np.int64).reshape(-1)
        values = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        if index.shape != values.shape:
            raise ValueError(f"SumTree.update needs one value per index, got {index.size} and {values.size}")
        if not (np.isfinite(values).all() and (values >= 0).all()):
            raise ValueError("SumTree priorities must be finite and non-negative")
        if index.size and (index.min() < 0 or index.max() >= self.capacity):
            raise IndexError(f"SumTree index out of range [0, {self.capacity})")
        _tree_update(self.flat, self.offsets, self.fanout, index, values)

    def update_unchecked(self, index: np.ndarray, values: np.ndarray) -> None:
        """:meth:`update` for callers that guarantee in-range ``int64`` indices and finite,
        non-negative ``float64`` values of the same length (the replay buffer's own hot path)."""
        _tree_update(self.flat, self.offsets, self.fanout, index, values)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index of each cumulative value (prefix-sum search), for the whole batch at once."""
        values = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        out = np.empty(values.size, dtype=np.int64)
        _tree_find(self.flat, self.offsets, self.fanout, values, out)
        return out

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
        if self.prioritized:  # in-range slots and a positive priority by construction
            self.tree.update_unchecked(
                np.arange(first, first + self.n_envs), np.full(self.n_envs, self.max_priority**self.alpha)
            )

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
            td_errors = td_errors.detach().float().cpu().numpy()  # (half precision under AMP)
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64).reshape(-1)) + self.epsilon
        largest = float(priorities.max())  # NaN or inf if any is
        if not np.isfinite(largest):
            raise ValueError("PrioritizedReplayBuffer got a non-finite TD error or loss: training has diverged")
        indices = np.asarray(indices)
        in_range = indices.dtype == np.int64 and indices.shape == priorities.shape
        if in_range and indices.size:
            in_range = indices.min() >= 0 and indices.max() < self.tree.capacity
        if in_range:  # e.g. the slots sample() returned: finite positive priorities, valid slots
            self.tree.update_unchecked(indices, np.power(priorities, self.alpha, out=priorities))
        else:
            self.tree.update(indices, priorities**self.alpha)  # converts, or raises naming the problem
        self.max_priority = max(self.max_priority, largest)

    def to_torch(self, array: np.ndarray, copy: bool = True) -> th.Tensor:
        """To the device; on CUDA through pinned memory with a non-blocking copy."""
        if self._pin:
            return th.as_tensor(array).pin_memory().to(self.device, non_blocking=True)
        return super().to_torch(array, copy)

    def _tensor(self, array: np.ndarray) -> th.Tensor:
        """A freshly gathered array as a tensor: shared, not copied, on the CPU."""
        if self.device.type == "cpu":
            return th.from_numpy(array)
        return self.to_torch(array)

    def _flat(self, array: np.ndarray) -> np.ndarray:
        """Storage ``(buffer_size, n_envs, ...)`` viewed as ``(slots, ...)``: slot = position * n_envs + env."""
        return array.reshape(self.buffer_size * self.n_envs, *array.shape[2:])

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
            return self._one_step_samples(slots, weights, env)
        n = len(slots)
        window = np.empty((n, self.n_steps), dtype=np.float32)
        last = np.empty(n, dtype=np.int64)
        steps = np.empty(n, dtype=np.int64)
        newest = (self.pos - 1) % self.buffer_size
        _n_step_window(
            self.rewards, self.dones, self.timeouts, positions, env_indices, self.n_steps, newest, window, last, steps
        )
        # Rewards are normalised one by one (VecNormalize), then discounted: zeros past the end stay zero.
        returns = self._normalize_reward(window, env) @ (self.gamma ** np.arange(self.n_steps))
        last_slots = last * self.n_envs + env_indices
        next_obs = self._normalize_obs(np.take(self._flat(self.next_observations), last_slots, axis=0), env)
        # A window cut at the newest transition is not terminal unless that transition ended the episode.
        dones = np.take(self._flat(self.dones), last_slots) * (1.0 - np.take(self._flat(self.timeouts), last_slots))
        return self._package(slots, weights, env, next_obs, dones, returns, self.gamma**steps)

    def _one_step_samples(
        self, slots: np.ndarray, weights: np.ndarray, env: VecNormalize | None
    ) -> PrioritizedReplayBufferSamples:
        """The ``n_steps=1`` case without the sequence machinery (same result, less work)."""
        next_obs = self._normalize_obs(np.take(self._flat(self.next_observations), slots, axis=0), env)
        dones = np.take(self._flat(self.dones), slots) * (1.0 - np.take(self._flat(self.timeouts), slots))
        returns = self._normalize_reward(np.take(self._flat(self.rewards), slots), env)
        return self._package(slots, weights, env, next_obs, dones, returns, self.gamma)

    def _package(
        self,
        slots: np.ndarray,
        weights: np.ndarray,
        env: VecNormalize | None,
        next_obs: np.ndarray,
        dones: np.ndarray,
        returns: np.ndarray,
        discounts: np.ndarray | float,
    ) -> PrioritizedReplayBufferSamples:
        obs = self._normalize_obs(np.take(self._flat(self.observations), slots, axis=0), env)
        # The four per-sample scalars travel as one (batch, 4) tensor; the fields are column views.
        scalars = np.empty((len(slots), 4), dtype=np.float32)
        scalars[:, 0] = returns
        scalars[:, 1] = dones
        scalars[:, 2] = discounts
        scalars[:, 3] = weights
        columns = self._tensor(scalars)
        return PrioritizedReplayBufferSamples(
            observations=self._tensor(obs),
            actions=self._tensor(np.take(self._flat(self.actions), slots, axis=0)),
            next_observations=self._tensor(next_obs),
            dones=columns[:, 1:2],
            rewards=columns[:, 0:1],
            discounts=columns[:, 2:3],
            weights=columns[:, 3:4],
            indices=slots,
        )
