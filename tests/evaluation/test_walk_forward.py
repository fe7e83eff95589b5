"""Walk-forward evaluation: rolling windows, test periods after their training, no overlap."""

from __future__ import annotations

import pytest
from stable_baselines3 import PPO

import sb3_crypto  # noqa: F401
from sb3_crypto.evaluation.walk_forward import walk_forward, walk_forward_table


def test_walk_forward_folds() -> None:
    trained_on = []

    def make_model(env):
        market = env.unwrapped.market
        trained_on.append((market.frame.index[0], market.frame.index[market.splits["train"][1] - 1]))
        return PPO("MlpPolicy", env, n_steps=64, batch_size=64, seed=0)

    folds = walk_forward(
        make_model,
        "CryptoTrading-v0",
        {"window_size": 8, "episode_length": 32, "synthetic_kwargs": {"n_bars": 1400, "seed": 2}},
        train_bars=600,
        test_bars=200,
        train_steps=64,
    )
    assert len(folds) == 4  # (1400 - 800) / 200 + 1
    for k, fold in enumerate(folds):
        assert trained_on[k] == fold["train"]  # the model's training split is the fold's training window
        assert fold["test"][0] > fold["train"][1]
        if k:
            assert fold["test"][0] > folds[k - 1]["test"][1]  # test windows follow without overlap
        assert set(fold["results"]) == {"agent", "buy_and_hold", "flat"}
    table = walk_forward_table(folds)
    assert list(table.columns) == ["fold", "test_start", "test_end", "agent", "buy_and_hold", "flat"]
    assert (table["flat"] == 0.0).all()
    with pytest.raises(ValueError, match="hold no fold"):
        walk_forward(
            make_model,
            "CryptoTrading-v0",
            {"synthetic_kwargs": {"n_bars": 500, "seed": 2}},
            train_bars=600,
            test_bars=200,
            train_steps=64,
        )
