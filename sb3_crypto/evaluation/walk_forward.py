"""Walk-forward evaluation: train on a rolling window, test on the bars right after it, move on.

Fold ``k`` uses bars ``[k * test_bars, k * test_bars + train_bars + test_bars)`` of the data: a fresh
model trains on the first ``train_bars`` (the env's training split, normalised on its own warm-up)
and is backtested on the following ``test_bars`` against buy-and-hold and flat. Test windows follow
each other without overlap, and no fold's model ever steps through its test bars during training.
Works with the equity-curve environments (``CryptoTrading-v0``, ``CryptoSpot-v0``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import pandas as pd

from sb3_crypto.data.market import resolve_frame
from sb3_crypto.evaluation.baselines import compare_with_baselines


def walk_forward(
    make_model: Callable[[gym.Env], Any],
    env_id: str,
    env_kwargs: dict[str, Any],
    *,
    train_bars: int,
    test_bars: int,
    train_steps: int,
    max_folds: int | None = None,
) -> list[dict[str, Any]]:
    """Run the folds and return, per fold, its period and the agent's and baselines' summaries.

    :param make_model: builds an untrained model for a training env (e.g.
        ``lambda env: SAC("MlpPolicy", env, use_sde=True)``).
    :param env_kwargs: the env's settings; ``data`` / ``synthetic_kwargs`` / ``asset`` select the market.
    :param train_bars: bars in each training window; ``test_bars``: bars in each test window.
    :param train_steps: environment steps of training per fold.
    """
    settings = dict(env_kwargs)
    frame = resolve_frame(
        settings.pop("data", "synthetic"),
        synthetic_kwargs=settings.pop("synthetic_kwargs", None),
        asset=settings.pop("asset", None),
        fill_missing=settings.pop("fill_missing", False),
    )
    settings.pop("split_dates", None)
    total = train_bars + test_bars
    share = train_bars / total
    folds = []
    start = 0
    while start + total <= len(frame) and (max_folds is None or len(folds) < max_folds):
        window = frame.iloc[start : start + total]
        fold_kwargs = {**settings, "data": window, "split_fractions": (share, 0.0, 1.0 - share)}
        model = make_model(gym.make(env_id, **{**fold_kwargs, "split": "train"}))
        model.learn(train_steps)
        test_kwargs = {**fold_kwargs, "split": "test", "episode_length": None}
        results = compare_with_baselines(model, lambda kw=test_kwargs: gym.make(env_id, **kw), random_seeds=())
        folds.append(
            {
                "fold": len(folds),
                "train": (window.index[0], window.index[train_bars - 1]),
                "test": (window.index[train_bars], window.index[-1]),
                "results": {result.name: result.summary() for result in results},
            }
        )
        start += test_bars
    if not folds:
        raise ValueError(f"{len(frame)} bars hold no fold of {train_bars} + {test_bars} bars")
    return folds


def walk_forward_table(folds: list[dict[str, Any]], metric: str = "total_return") -> pd.DataFrame:
    """One row per fold: the test period and ``metric`` for the agent and each baseline."""
    rows = []
    for fold in folds:
        row = {"fold": fold["fold"], "test_start": fold["test"][0], "test_end": fold["test"][1]}
        row.update({name: summary[metric] for name, summary in fold["results"].items()})
        rows.append(row)
    return pd.DataFrame(rows)
