"""Every registered env: no step before ``reset()`` or after the episode ended, never a bar past its split."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import sb3_crypto  # noqa: F401
from sb3_crypto.envs.registration import ENV_IDS, env_class, evaluation_kwargs

#: Small, fast settings per id (every registered id must have an entry).
SMALL: dict[str, dict[str, Any]] = {
    "CryptoTrading-v0": {"synthetic_kwargs": {"n_bars": 800}, "window_size": 8, "episode_length": 24},
    "CryptoSpot-v0": {"synthetic_kwargs": {"n_bars": 800}, "window_size": 4, "episode_length": 24},
    "CryptoDCA-v0": {"synthetic_kwargs": {"n_bars": 400, "freq": "1D", "seed": 0}, "cycle_length": 5, "window_size": 5},
    "CryptoFuturesSession-v0": {"synthetic_kwargs": {"n_bars": 20_000}},
    "CryptoPortfolio-v0": {"synthetic_kwargs": {"n_assets": 3, "n_bars": 400}, "window_size": 8, "episode_length": 24},
}


def test_every_registered_id_has_small_settings() -> None:
    assert set(SMALL) == set(ENV_IDS)


def settings(env_id: str, split: str, whole_split: bool) -> dict[str, Any]:
    """The env's small settings on ``split``; ``whole_split``: its evaluation mode (the whole split
    walked once, or every episode of the split in order), as RL Zoo's evaluation env gets it."""
    kwargs = dict(SMALL[env_id])
    if whole_split:
        kwargs = evaluation_kwargs(env_id, kwargs, whole_split=True)
    return {**kwargs, "split": split}


def run_episode(env: gym.Env, seed: int | None) -> tuple[list[dict], bool, bool]:
    """Reset, then random actions until the episode ends; the infos of every step and how it ended."""
    _, info = env.reset(seed=seed)
    infos = [info]
    for _ in range(100_000):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert np.isfinite(reward)
        infos.append(info)
        if terminated or truncated:
            return infos, bool(terminated), bool(truncated)
    raise AssertionError("the episode never ended")


def assert_inside_split(base: Any, infos: list[dict], split: str) -> None:
    """Every bar an episode touched lies in the split; the futures env stays inside its sessions."""
    if hasattr(getattr(base, "market", None), "split_range"):  # bar-data envs (MarketEnv, the portfolio)
        start, stop = base.market.split_range(split)
        bars = [info["bar"] for info in infos]
        assert min(bars) >= start and max(bars) <= stop - 1, (min(bars), max(bars), start, stop)
        assert base._end <= stop - 1  # the last fill / mark of the episode is still in the split
        if "marked_at" in infos[-1]:  # DCA: the reward is marked on a bar of the split
            assert infos[-1]["marked_at"] <= base.market.times[stop - 1]
    else:
        assert base._index in set(base.episode_indices.tolist())
        assert len(infos) - 1 == base.session  # one decision per trading bar, no more


@pytest.mark.parametrize("whole_split", [False, True], ids=["episodes", "whole_split"])
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_step_needs_reset_and_never_leaves_the_split(env_id: str, split: str, whole_split: bool) -> None:
    kwargs = settings(env_id, split, whole_split)
    raw = env_class(env_id)(**kwargs)
    raw.action_space.seed(0)
    with pytest.raises(RuntimeError, match=r"step\(\) before reset\(\) - call reset\(\) first"):
        raw.step(raw.action_space.sample())

    env = gym.make(env_id, **kwargs)  # with Gymnasium's wrappers, as users get it
    env.action_space.seed(0)
    base = env.unwrapped
    episodes = 3
    if whole_split and getattr(base, "sequential", False):
        episodes = base.n_cycles if hasattr(base, "n_cycles") else base.n_sessions  # one whole pass
    for episode in range(episodes):
        infos, terminated, truncated = run_episode(env, seed=0 if episode == 0 else None)
        assert_inside_split(base, infos, split)
        if whole_split and not base.sequential_evaluation and truncated and hasattr(base, "market"):
            assert infos[-1]["bar"] == base.market.split_range(split)[1] - 1  # walked to the split's last bar
        ended = "terminated" if terminated else "truncated"
        ledger = base.ledger
        before = (ledger.cash, ledger.position, ledger.n_trades)
        for _ in range(2):  # refused every time, and nothing is traded
            with pytest.raises(RuntimeError, match=rf"step\(\) after the episode ended \({ended}\) - call reset"):
                env.step(env.action_space.sample())
        assert (ledger.cash, ledger.position, ledger.n_trades) == before
    env.reset()  # a reset starts the next episode as usual
    env.step(env.action_space.sample())


def test_truncated_training_episode_does_not_trade_into_the_validation_split() -> None:
    env = gym.make("CryptoTrading-v0", **{**SMALL["CryptoTrading-v0"], "episode_length": None})
    _, stop = env.unwrapped.market.split_range("train")  # the validation split starts at row stop
    env.reset(seed=0)
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["bar"] == stop - 1
    with pytest.raises(RuntimeError, match=r"\(truncated\)"):
        env.step(np.array([1.0], dtype=np.float32))
    assert env.unwrapped.ledger.last_fill.bar < stop
