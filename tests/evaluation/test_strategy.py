"""S3's strategy layer: filters, MC-dropout ensemble, stops at the right bar and price, cache, tuning."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import sb3_crypto  # noqa: F401
from sb3_crypto.data.sessions import SessionSet
from sb3_crypto.evaluation.q_strategy import QStrategy, QValueSource, StrategyConfig, report_strategy, tune_strategy
from sb3_crypto.rainbow import D3QN

# Q-values ordered hold, long, short, close: long beats hold by 0.5, closing never looks better.
LONG_Q = np.array([0.0, 0.5, 0.1, -1.0])


def fixed_q(values: np.ndarray, spread: float = 0.0):
    def source(obs: np.ndarray, samples: int = 0) -> np.ndarray:
        if samples:
            noise = np.linspace(-spread, spread, samples)[:, None] * np.array([0.0, 1.0, 0.0, 0.0])
            return values[None, :] + noise
        return values

    return source


def hand_sessions(path: list[tuple[float, float, float, float]], n: int = 10) -> SessionSet:
    """``n`` copies of one session: 5 calm context bars at 100, then the given (open, high, low, close)."""
    rows = [(100.0, 100.1, 99.9, 100.0)] * 5 + path
    one = np.array([[o, h, low, c, 1.0, (h + low + c) / 3, 1.0] for o, h, low, c in rows])
    times = pd.date_range("2023-01-01", periods=n, freq="1h").to_numpy().astype("datetime64[ns]")
    return SessionSet(np.repeat(one[None], n, axis=0), np.full(n, "X"), times, context=5, session=len(path))


def run(path, config: StrategyConfig, q=LONG_Q, **kwargs):
    env_kwargs = {"data": hand_sessions(path), "split": "all", "window_size": 5, "slippage": 0.0, "fee": 0.0, **kwargs}
    return QStrategy(fixed_q(q), config, **env_kwargs).run()


FLAT_PATH = [(100.0, 100.5, 99.5, 100.0)] * 6


def test_advantage_filter_blocks_trades_below_the_threshold() -> None:
    blocked = run(FLAT_PATH, StrategyConfig(long_threshold=0.6, short_threshold=0.6))  # advantages 0.5 / 0.1
    assert set(blocked.exits) == {"none"} and not blocked.trades
    allowed = run(FLAT_PATH, StrategyConfig(long_threshold=0.4, short_threshold=0.6))
    assert set(allowed.exits) == {"forced"}  # held to the end, closed on the last bar
    assert [t["side"] for t in allowed.trades[:2]] == [1, -1]


def test_mc_dropout_ensemble_needs_low_variance() -> None:
    noisy = fixed_q(LONG_Q, spread=0.6)
    env_kwargs = {"data": hand_sessions(FLAT_PATH), "split": "all", "window_size": 5}
    strict = QStrategy(noisy, StrategyConfig(short_threshold=1.0, mc_samples=8, max_std=0.2), **env_kwargs).run()
    assert set(strict.exits) == {"none"}
    loose = QStrategy(noisy, StrategyConfig(short_threshold=1.0, mc_samples=8, max_std=1.0), **env_kwargs).run()
    assert set(loose.exits) == {"forced"}


@pytest.mark.parametrize(
    ("path", "config", "kind", "bar", "price"),
    [
        # entry at the open of bar 5 (100); bar 6 trades down to 97: the 2 % stop at 98 fills there
        (
            [(100, 101, 99.5, 100.5), (100.5, 100.6, 97, 97.5)] + [(97.5, 98, 97, 97.5)] * 4,
            StrategyConfig(stop_loss=0.02),
            "stop_loss",
            6,
            98.0,
        ),
        # bar 6 opens below the stop (gap): filled at the open, 96
        (
            [(100, 101, 99.5, 100.5), (96, 96.5, 95, 95.5)] + [(95.5, 96, 95, 95.5)] * 4,
            StrategyConfig(stop_loss=0.02),
            "stop_loss",
            6,
            96.0,
        ),
        # bar 6 reaches 103: the 2 % take-profit at 102 fills there
        (
            [(100, 101, 99.5, 100.5), (100.5, 103, 100.4, 102.5)] + [(102.5, 103, 102, 102.5)] * 4,
            StrategyConfig(take_profit=0.02),
            "take_profit",
            6,
            102.0,
        ),
        # closes rise to 104 on bar 6; bar 7 dips to 101: the 2 % trailing stop at 101.92 fills there
        (
            [(100, 101, 99.5, 100.5), (100.5, 104.2, 100.4, 104), (104, 104.1, 101, 101.5)]
            + [(101.5, 102, 101, 101.5)] * 3,
            StrategyConfig(trailing_stop=0.02),
            "trailing_stop",
            7,
            104 * 0.98,
        ),
    ],
)
def test_stops_trigger_at_the_right_bar_with_the_right_fill(path, config, kind, bar, price) -> None:
    result = run(path, config)
    assert result.exits[0] == kind
    entry, exit_ = result.trades[0], result.trades[1]
    assert entry["bar"] == 5 and entry["price"] == pytest.approx(100.0)
    assert exit_["bar"] == bar and exit_["price"] == pytest.approx(price)
    assert result.pnl[0] == pytest.approx(10_000 / 100.0 * (price - 100.0))


def test_slippage_and_fees_come_from_the_ledger() -> None:
    result = run(FLAT_PATH, StrategyConfig(), fee=0.001, slippage=0.002)
    entry, exit_ = result.trades[0], result.trades[1]
    assert entry["price"] == pytest.approx(100.0 * 1.002) and exit_["price"] == pytest.approx(100.0 * 0.998)
    assert entry["fee"] == pytest.approx(entry["units"] * entry["price"] * 0.001)


def test_parallel_position_limit() -> None:
    sessions = hand_sessions(FLAT_PATH)
    sessions.signal_times = sessions.signal_times[:1].repeat(len(sessions.bars))  # all at the same time
    sessions.tickers = np.array([f"T{k}" for k in range(len(sessions.bars))])
    env_kwargs = {"data": sessions, "split": "all", "window_size": 5}
    result = QStrategy(fixed_q(LONG_Q), StrategyConfig(max_positions=2), **env_kwargs).run()
    assert sum(e != "none" for e in result.exits) == 2 and result.skipped == len(result.exits) - 2


def test_cached_and_uncached_backtests_agree_and_tuning_uses_validation_only(tmp_path: Path) -> None:
    model = D3QN("MlpPolicy", gym.make("CryptoFuturesSession-v0"), policy_kwargs={"dropout": 0.2}, seed=0)
    config = StrategyConfig(long_threshold=-1.0, short_threshold=-1.0, mc_samples=4, max_std=10.0, stop_loss=0.01)
    cached = QValueSource(model, cache=True)
    first = QStrategy(cached, config, split="validation").run()
    again = QStrategy(cached, config, split="validation").run()
    plain = QStrategy(QValueSource(model, cache=False), config, split="validation").run()
    np.testing.assert_array_equal(first.pnl, plain.pnl)
    np.testing.assert_array_equal(first.pnl, again.pnl)
    assert cached.hits > 0 and cached.calls == len(cached.cache)
    best, study = tune_strategy(cached, n_trials=4, out=tmp_path)
    assert len(study.trials) == 4
    payload = json.loads((tmp_path / "best_strategy.json").read_text())
    assert payload["tuned_on"] == "validation"
    assert (tmp_path / "optimization_history.png").is_file()
    report = report_strategy(cached, best)
    assert report["split"] == "test" and report["used_for_tuning"] is False
