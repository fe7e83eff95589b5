"""Prioritized replay at capacity: add + sample + priority update, against cpprb and Tianshou.

Each buffer is filled to ``--capacity`` (1,000,000) transitions of an 8-float observation, then a
loop runs: add one transition, sample a batch (32 or 256) with importance weights, update the
batch's priorities from random TD errors. Iterations per second are printed with ratios against
each peer, all measured in the same run. Needs the ``bench`` extra (``pip install -e ".[bench]"``).

What is compared: the package's ``PrioritizedReplayBuffer`` (sum tree, one-step returns here,
samples handed over as torch tensors - the form training uses), cpprb's ``PrioritizedReplayBuffer``
(C++ segment tree, numpy dict) and Tianshou's ``PrioritizedReplayBuffer`` (numpy segment tree,
``Batch``).

Run: ``python benchmarks/bench_per_buffer.py [--capacity 1000000] [--iterations 2000]``
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

OBS_DIM = 8


def ours(capacity: int):
    from sb3_crypto.common.buffers import PrioritizedReplayBuffer

    space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    buffer = PrioritizedReplayBuffer(capacity, space, gym.spaces.Discrete(4), device="cpu", alpha=0.5, seed=0)
    rng = np.random.default_rng(0)
    buffer.observations[:] = rng.standard_normal(buffer.observations.shape, dtype=np.float32)
    buffer.next_observations[:] = rng.standard_normal(buffer.next_observations.shape, dtype=np.float32)
    buffer.rewards[:] = rng.standard_normal(buffer.rewards.shape, dtype=np.float32)
    buffer.full, buffer.pos = True, 0
    buffer.tree.update(np.arange(capacity), np.ones(capacity))  # bulk fill at priority 1
    obs = np.zeros((1, OBS_DIM), np.float32)
    infos = [{}]

    def step(batch_size: int) -> None:
        buffer.add(obs, obs, np.array([[1]]), np.array([0.5]), np.array([False]), infos)
        samples = buffer.sample(batch_size)
        buffer.update_priorities(samples.indices, rng.random(batch_size))

    return step


def cpprb(capacity: int):
    from cpprb import PrioritizedReplayBuffer

    env_dict = {"obs": {"shape": OBS_DIM}, "act": {}, "rew": {}, "next_obs": {"shape": OBS_DIM}, "done": {}}
    buffer = PrioritizedReplayBuffer(capacity, env_dict, alpha=0.5)
    rng = np.random.default_rng(0)
    chunk = 100_000
    for _ in range(capacity // chunk):
        buffer.add(
            obs=rng.standard_normal((chunk, OBS_DIM)),
            act=np.ones(chunk),
            rew=rng.standard_normal(chunk),
            next_obs=rng.standard_normal((chunk, OBS_DIM)),
            done=np.zeros(chunk),
        )
    obs = np.zeros(OBS_DIM)

    def step(batch_size: int) -> None:
        buffer.add(obs=obs, act=1, rew=0.5, next_obs=obs, done=0)
        samples = buffer.sample(batch_size, beta=0.4)
        buffer.update_priorities(samples["indexes"], rng.random(batch_size) + 1e-6)

    return step


def tianshou(capacity: int):
    from tianshou.data import Batch, PrioritizedReplayBuffer

    buffer = PrioritizedReplayBuffer(capacity, alpha=0.5, beta=0.4)
    rng = np.random.default_rng(0)
    for _ in range(capacity):  # Tianshou adds one transition at a time
        buffer.add(
            Batch(
                obs=rng.standard_normal(OBS_DIM),
                act=1,
                rew=0.5,
                terminated=False,
                truncated=False,
                obs_next=rng.standard_normal(OBS_DIM),
                info={},
            )
        )
    obs = np.zeros(OBS_DIM)

    def step(batch_size: int) -> None:
        buffer.add(Batch(obs=obs, act=1, rew=0.5, terminated=False, truncated=False, obs_next=obs, info={}))
        _batch, indices = buffer.sample(batch_size)
        buffer.update_weight(indices, rng.random(batch_size))

    return step


def rate(step, batch_size: int, iterations: int) -> float:
    for _ in range(50):
        step(batch_size)
    start = time.perf_counter()
    for _ in range(iterations):
        step(batch_size)
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    steps = {"sb3_crypto": ours(args.capacity), "cpprb": cpprb(args.capacity), "tianshou": tianshou(args.capacity)}
    print(f"filled three buffers of {args.capacity:,} in {time.perf_counter() - started:.0f} s")
    for batch_size in (32, 256):
        best = dict.fromkeys(steps, 0.0)
        for _ in range(args.rounds):
            for name, step in steps.items():
                best[name] = max(best[name], rate(step, batch_size, args.iterations))
        print(f"\nbatch {batch_size}: add + sample + update per second")
        for name, value in best.items():
            print(f"  {name:<12}{value:>10.0f}   sb3_crypto / it = {best['sb3_crypto'] / value:.2f}x")


if __name__ == "__main__":
    main()
