"""Evaluation of ``CryptoDCA-v0`` policies: every cycle of a split once, against S1's four baselines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sb3_crypto.envs.dca import BUY, DCA_BASELINES, WAIT, CryptoDCAEnv
from sb3_crypto.evaluation.rollout import Act, predictor, rollout


def _by_day(choose: Callable[[int, int], int]) -> Act:
    """``act`` from ``choose(cycle, day)``: the day counts decisions within the current cycle."""
    cycle, day = -1, 0

    def act(obs: np.ndarray, episode_start: bool) -> int:
        nonlocal cycle, day
        if episode_start:
            cycle, day = cycle + 1, 0
        action = choose(cycle, day)
        day += 1
        return action

    return act


def evaluate_dca(policy: Any, seed: int = 0, **env_kwargs: Any) -> dict[str, float]:
    """Mean reward over every cycle of a split for the agent and S1's four baselines.

    Baselines: buy on the first day, on the last day (forced), on a random day (seeded), and at the
    cycle's average price (reward 0 by definition). ``env_kwargs`` go to :class:`CryptoDCAEnv`
    (``sequential`` is forced on).
    """
    env = CryptoDCAEnv(**{**env_kwargs, "sequential": True})
    rng = np.random.default_rng(seed)
    random_days = [int(rng.integers(env.cycle_length)) for _ in range(env.n_cycles)]
    agent = predictor(policy)  # a recurrent policy keeps its state within a cycle
    strategies: dict[str, Act] = {
        "agent": lambda obs, start: int(np.asarray(agent(obs, start)).reshape(-1)[0]),
        "first_day": _by_day(lambda cycle, day: BUY),
        "last_day": _by_day(lambda cycle, day: WAIT),
        "random_day": _by_day(lambda cycle, day: BUY if day == random_days[cycle] else WAIT),
    }
    totals = dict.fromkeys(("agent", *DCA_BASELINES), 0.0)
    for name, act in strategies.items():
        # A seeded reset restarts the sequential pass at the split's first cycle.
        for episode in rollout(env, act, episodes=env.n_cycles, seed=0):
            totals[name] += sum(episode.rewards)
    return {name: total / env.n_cycles for name, total in totals.items()}
