"""SB3's replay buffer laid out for one-gather batches: :class:`PackedReplayBuffer`.

The buffer is SB3's ``ReplayBuffer`` (same arrays, same ``add``, same ``sample``), with its arrays
placed side by side in three row-major blocks, so that a training batch is three row gathers
straight into kept tensors instead of seven fancy-index copies and seven tensor conversions:

* ``first``: each row is ``[observation | action]`` (what the critic takes);
* ``second``: ``[next observation | spare]`` (the spare columns take the next action later);
* ``extras``: ``[reward, done, timeout]``.

``observations``, ``actions``, ``next_observations``, ``rewards``, ``dones`` and ``timeouts`` stay
NumPy arrays of SB3's shapes, now views into these blocks, so SB3's ``add``, ``sample``, saving and
loading work unchanged (a pickled buffer holds plain arrays; it is laid out again on its first
packed sample). With a CUDA device the blocks are mirrored on the device, updated from the rows
added since the last batch, and batches are gathered there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer


class _Blocks:
    """The packed blocks as host tensors (views of the NumPy storage) and, on CUDA, device mirrors."""

    def __init__(self, first: np.ndarray, second: np.ndarray, extras: np.ndarray, device: th.device) -> None:
        self.host = (th.from_numpy(first), th.from_numpy(second), th.from_numpy(extras))
        self.on_device = device.type != "cpu"
        self.device = device
        if self.on_device:
            self.mirror = tuple(block.to(device) for block in self.host)
        else:
            self.mirror = self.host
        self.unsynced = 0  # rows (of buffer_size) added since the mirror was last updated
        self.batch: tuple[int, th.Tensor, th.Tensor] | None = None  # (batch size, packed, extras)


class PackedReplayBuffer(ReplayBuffer):
    """SB3's ``ReplayBuffer`` whose arrays live in packed blocks, with :meth:`sample_packed`.

    Packing applies to flat float32 ``Box`` observations and actions without
    ``optimize_memory_usage``; otherwise the buffer is SB3's and :meth:`packable` is ``False``.
    ``sample()`` is SB3's (same indices, same tensors).
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
    ) -> None:
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=handle_timeout_termination,
        )
        self._blocks: _Blocks | None = None
        if self.packable:
            self._pack(copy=False)  # the arrays are fresh zeros

    # ------------------------------------------------------------------ layout
    @property
    def packable(self) -> bool:
        """Whether batches can be gathered packed (flat float32 Box data, separate next observations)."""
        return (
            not self.optimize_memory_usage
            and isinstance(self.observation_space, spaces.Box)
            and self.observations.dtype == np.float32
            and self.actions.dtype == np.float32
        )

    def _pack(self, copy: bool = True) -> None:
        """Copy the arrays into packed blocks and make them views of the blocks (NumPy zeros, so the
        memory is only committed as rows are written, as with SB3's own arrays)."""
        rows, obs_dim, action_dim = self.buffer_size * self.n_envs, int(np.prod(self.obs_shape)), self.action_dim
        first = np.zeros((rows, obs_dim + action_dim), dtype=np.float32)
        second = np.zeros((rows, obs_dim + action_dim), dtype=np.float32)
        extras = np.zeros((rows, 3), dtype=np.float32)
        shape = (self.buffer_size, self.n_envs)
        views = {
            "observations": (first[:, :obs_dim].reshape(*shape, *self.obs_shape), first),
            "actions": (first[:, obs_dim:].reshape(*shape, action_dim), first),
            "next_observations": (second[:, :obs_dim].reshape(*shape, *self.obs_shape), second),
            "rewards": (extras[:, 0].reshape(shape), extras),
            "dones": (extras[:, 1].reshape(shape), extras),
            "timeouts": (extras[:, 2].reshape(shape), extras),
        }
        if not all(np.shares_memory(view, block) for view, block in views.values()):
            return  # a reshape had to copy: stay unpacked (not expected for these shapes)
        for name, (view, _) in views.items():
            if copy:
                view[...] = getattr(self, name)
            setattr(self, name, view)
        self._blocks = _Blocks(first, second, extras, th.device(self.device))
        self._blocks.unsynced = 0

    def _packed_blocks(self) -> _Blocks:
        """The blocks, laid out again if the arrays are not their views (after unpickling, or arrays
        replaced from outside), and the device mirror brought up to date."""
        blocks = self._blocks
        if blocks is None or not np.shares_memory(self.observations, blocks.host[0].numpy()):
            self._pack()
            blocks = self._blocks
            assert blocks is not None, "packed layout unavailable"
        if blocks.on_device and blocks.unsynced:
            self._sync(blocks)
        return blocks

    def _sync(self, blocks: _Blocks) -> None:
        """Copy the rows added since the last batch to the device mirror (all rows after a full lap)."""
        n_envs = self.n_envs
        if blocks.unsynced >= self.buffer_size:
            ranges = [(0, self.buffer_size)]
        else:
            start = (self.pos - blocks.unsynced) % self.buffer_size
            end = start + blocks.unsynced
            ranges = (
                [(start, end)] if end <= self.buffer_size else [(start, self.buffer_size), (0, end - self.buffer_size)]
            )
        for start, end in ranges:
            for host, mirror in zip(blocks.host, blocks.mirror):
                mirror[start * n_envs : end * n_envs].copy_(host[start * n_envs : end * n_envs], non_blocking=True)
        blocks.unsynced = 0

    def add(self, *args: Any, **kwargs: Any) -> None:
        super().add(*args, **kwargs)
        if self._blocks is not None:
            self._blocks.unsynced += 1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_blocks"] = None  # plain arrays are pickled (copies of the views); laid out again on use
        return state

    # ------------------------------------------------------------------ sampling
    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Flat row indices of a batch, drawn exactly as SB3's ``sample`` draws them (the same NumPy
        calls, so a seeded run picks the same transitions)."""
        upper_bound = self.buffer_size if self.full else self.pos
        batch_inds = np.random.randint(0, upper_bound, size=batch_size)  # noqa: NPY002 (SB3 samples with it)
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))  # noqa: NPY002
        return batch_inds * self.n_envs + env_indices

    def sample_packed(self, batch_size: int) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """A batch gathered into kept tensors: ``(packed, rewards, dones)``.

        ``packed`` is ``(2, batch, obs_dim + action_dim)``: ``packed[0]`` rows ``[observation |
        action]``, ``packed[1]`` rows ``[next observation | spare]``; ``rewards`` and ``dones``
        (dones from timeouts cleared, as SB3 does) are ``(batch, 1)``. The tensors are overwritten by
        the next call. The transitions are those ``sample(batch_size)`` would return.
        """
        blocks = self._packed_blocks()
        indices = th.from_numpy(self.sample_indices(batch_size))
        if blocks.on_device:  # through pinned memory, so the copy does not wait for the device
            indices = indices.pin_memory().to(blocks.device, non_blocking=True)
        kept = blocks.batch
        if kept is None or kept[0] != batch_size:
            first = blocks.mirror[0]
            packed = first.new_empty((2, batch_size, first.shape[1]))
            extras = first.new_empty((batch_size, 3))
            kept = blocks.batch = (batch_size, packed, extras)
        _, packed, extras = kept
        th.index_select(blocks.mirror[0], 0, indices, out=packed[0])
        th.index_select(blocks.mirror[1], 0, indices, out=packed[1])
        th.index_select(blocks.mirror[2], 0, indices, out=extras)
        rewards = extras[:, 0:1]
        dones = extras[:, 1:2]
        if self.handle_timeout_termination:
            dones = dones * (1 - extras[:, 2:3])
        return packed, rewards, dones
