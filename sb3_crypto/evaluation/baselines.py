"""Baselines for the equity-curve envs, run under the agent's costs on the agent's split: buy-and-hold,
staying flat and a seeded random policy. (Session baselines live in :mod:`.sessions`, DCA baselines
in :mod:`.dca`.)"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from sb3_crypto.evaluation.rollout import BacktestResult, PolicyLike, run_policy


def constant_exposure(env: gym.Env, exposure: float) -> Callable[[np.ndarray], np.ndarray]:
    """A policy that always targets ``exposure`` (1 = buy-and-hold, 0 = flat)."""
    action = env.unwrapped.action_for_exposure(exposure)
    return lambda obs: action


def random_baseline(make_env: Callable[[], gym.Env], seeds: tuple[int, ...] = (0, 1, 2)) -> BacktestResult:
    """A uniformly random policy (seeded), run once per seed; the curve is the mean across seeds."""
    runs = []
    for seed in seeds:
        env = make_env()
        env.action_space.seed(seed)
        runs.append(run_policy(lambda obs, space=env.action_space: space.sample(), env, name="random", seed=seed))
    first = runs[0]
    return BacktestResult(
        name="random",
        equity=np.mean([run.equity for run in runs], axis=0),
        timestamps=first.timestamps,
        fees_paid=float(np.mean([run.fees_paid for run in runs])),
        trades=round(np.mean([run.trades for run in runs])),
        periods_per_year=first.periods_per_year,
        extra={"seeds": list(seeds)},
    )


def compare_with_baselines(
    policy: PolicyLike,
    make_env: Callable[[], gym.Env],
    *,
    deterministic: bool = True,
    random_seeds: tuple[int, ...] = (0, 1, 2),
) -> list[BacktestResult]:
    """The agent, buy-and-hold, flat and a seeded random policy (mean over ``random_seeds``), each on
    fresh envs from ``make_env``: same split, same costs."""
    results = [run_policy(policy, make_env(), name="agent", deterministic=deterministic)]
    for name, exposure in (("buy_and_hold", 1.0), ("flat", 0.0)):
        env = make_env()
        results.append(run_policy(constant_exposure(env, exposure), env, name=name))
    if random_seeds:
        results.append(random_baseline(make_env, random_seeds))
    return results
