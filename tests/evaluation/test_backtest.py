"""Backtester: trade log and metrics of scripted policies by hand, baselines, readiness, deflated Sharpe."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import gymnasium as gym
import helpers
import numpy as np
import pytest

import sb3_crypto  # noqa: F401
from sb3_crypto.evaluation.baselines import compare_with_baselines, random_baseline
from sb3_crypto.evaluation.reports import format_table, trade_log, write_results
from sb3_crypto.evaluation.rollout import run_policy
from sb3_crypto.metrics import deflated_sharpe_ratio, production_readiness

CLOSES = [100.0] * 10 + [110.0, 121.0, 108.9, 108.9, 119.79]


def hand_env(**kwargs) -> gym.Env:
    return helpers.hand_env(CLOSES, **kwargs)


def test_scripted_policy_trade_log_and_metrics_by_hand(tmp_path: Path) -> None:
    """Long from the open of bar 10 (= 100) to the open of bar 13 (= 108.9), then flat."""

    def policy(obs: np.ndarray) -> np.ndarray:
        bar = env.unwrapped._t
        return np.array([1.0 if 9 <= bar < 12 else 0.0], dtype=np.float32)

    env = hand_env(fee=0.001)
    result = run_policy(policy, env)
    log = trade_log(result)
    assert list(log["side"]) == ["buy", "sell"]
    units = 10_000 / (100.0 * 1.001)
    assert log["size"].iloc[0] == pytest.approx(units)
    assert list(log["price"]) == [100.0, 108.9]
    assert log["fee"].iloc[1] == pytest.approx(units * 108.9 * 0.001)
    assert log["pnl"].iloc[1] == pytest.approx(units * 8.9)
    final = 10_000 - units * 100 * 1.001 + units * 108.9 * 0.999
    assert result.equity[-1] == pytest.approx(final)
    summary = result.summary()
    assert summary["total_return"] == pytest.approx(final / 10_000 - 1)
    assert summary["fills"] == 2  # the buy and the sell
    assert summary["round_trips"] == 1 and summary["win_rate"] == 1.0  # one closing fill, profitable after fees
    # equity[k] is marked on the close of bar 4 + k (the first decision bar is 4)
    curve = np.array([10_000, 10_000 + units * (110 - 100.1), 10_000 + units * (121 - 100.1)])
    np.testing.assert_allclose(result.equity[5:8], curve, rtol=1e-12)  # bars 9..11
    assert summary["max_drawdown"] == pytest.approx(final / curve[2] - 1)  # peak at 121, trough after the exit fee


def strict_json(text: str) -> dict:
    """Parse ``text`` as strict JSON (RFC 8259): NaN / Infinity literals fail the test."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))


def test_fills_and_round_trips_by_hand_in_strict_metrics_json(tmp_path: Path) -> None:
    """Long 10 -> 11 (+1000), long 12 -> 13 (-1100), long from 14 to the end (still open): five
    fills (every executed order), two round trips (closed trades); the win rate is over those."""
    closes = [100.0] * 10 + [110.0, 110.0, 99.0, 99.0, 120.0, 120.0]  # each bar opens at the last close
    env = helpers.hand_env(closes)
    targets = {9: 1.0, 11: 1.0, 13: 1.0, 14: 1.0}  # exposure decided on the close of the bar

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.array([targets.get(env.unwrapped._t, 0.0)], dtype=np.float32)

    result = run_policy(policy, env)
    assert list(trade_log(result)["pnl"]) == [0.0, 1000.0, 0.0, -1100.0, 0.0]  # 100 units each time
    write_results([result], tmp_path, {"scripted": True})
    payload = strict_json((tmp_path / "metrics.json").read_text())
    agent = payload["results"]["agent"]
    assert agent["fills"] == 5 and agent["round_trips"] == 2
    assert "trades" not in agent and "n_trades" not in agent
    assert agent["win_rate"] == 0.5 and agent["profit_factor"] == pytest.approx(1000 / 1100)
    assert agent["average_win"] == 1000.0 and agent["average_loss"] == -1100.0
    # Undefined numbers are null: there is no benchmark here, so no alpha to check readiness on.
    assert payload["production_readiness"]["criteria"]["alpha"]["value"] is None
    assert "fills" in format_table([result]).splitlines()[0]


def test_baselines_on_a_constructed_series(tmp_path: Path) -> None:
    results = compare_with_baselines(lambda obs: np.array([0.0], np.float32), hand_env, random_seeds=(0, 1))
    names = [r.name for r in results]
    assert names == ["agent", "buy_and_hold", "flat", "random"]
    buy_and_hold = results[1]
    first = hand_env().unwrapped.first_bar
    assert buy_and_hold.equity[-1] == pytest.approx(10_000 * CLOSES[-1] / CLOSES[first + 1])  # no costs here
    assert results[2].equity[-1] == 10_000
    again = random_baseline(hand_env, (0, 1))
    np.testing.assert_array_equal(again.equity, results[3].equity)  # seeded: reproducible
    other = random_baseline(hand_env, (5, 6))
    assert not np.array_equal(other.equity, results[3].equity)
    write_results(results, tmp_path, {"test": True})
    payload = strict_json((tmp_path / "metrics.json").read_text())
    assert payload["results"]["flat"]["sharpe"] is None  # nan (no dispersion) is written as null
    assert set(payload["results"]) == set(names)
    assert "alpha" in payload["results"]["agent"] and "production_readiness" in payload
    assert (tmp_path / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "trades.csv").read_text().startswith("time,side,size,price,fee,pnl")


def test_production_readiness_counts_criteria() -> None:
    good = {
        "sharpe": 2.0,
        "max_drawdown": -0.10,
        "alpha": 0.05,
        "win_rate": 0.6,
        "calmar": 1.0,
        "profitable_months": 0.75,
    }
    report = production_readiness(good)
    assert report["ready"] and report["passed_share"] == 1.0
    weaker = {**good, "win_rate": 0.5}
    assert production_readiness(weaker)["passed_share"] == pytest.approx(5 / 6)  # 83 % >= 80 %: ready
    assert production_readiness(weaker)["ready"]
    two_fail = {**weaker, "calmar": float("nan")}  # a missing metric fails
    assert not production_readiness(two_fail)["ready"]
    strict = production_readiness(good, {"sharpe": (">", 3.0)})
    assert strict["criteria"]["sharpe"]["passed"] is False


def test_deflated_sharpe_ratio_by_hand() -> None:
    returns = np.random.default_rng(4).normal(0.001, 0.01, 500)
    sharpe = returns.mean() / returns.std(ddof=1)
    centred = returns - returns.mean()
    skew = np.mean(centred**3) / np.mean(centred**2) ** 1.5
    kurt = np.mean(centred**4) / np.mean(centred**2) ** 2
    normal = NormalDist()
    n, variance = 20, 0.002
    sr0 = math.sqrt(variance) * (
        (1 - 0.5772156649) * normal.inv_cdf(1 - 1 / n) + 0.5772156649 * normal.inv_cdf(1 - 1 / (n * math.e))
    )
    expected = normal.cdf((sharpe - sr0) * math.sqrt(499) / math.sqrt(1 - skew * sharpe + (kurt - 1) / 4 * sharpe**2))
    assert deflated_sharpe_ratio(returns, n, variance) == pytest.approx(expected, rel=1e-9)
    # More configurations tried means more luck to discount.
    assert deflated_sharpe_ratio(returns, 200, variance) < deflated_sharpe_ratio(returns, n, variance)
    with pytest.raises(ValueError, match="at least 3 returns"):
        deflated_sharpe_ratio(returns[:2], 1, 0.0)


def test_backtest_command_names_missing_files_and_models_of_other_envs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A missing model file is reported as missing; a model of another env (Pendulum) or a zoo model
    copied away from its run's config.yml is refused naming both spaces and where the settings came
    from, before anything runs: one line, exit status 2."""
    from stable_baselines3 import PPO

    from sb3_crypto.backtest import main as backtest_main

    with pytest.raises(SystemExit) as missing:
        backtest_main(["--model", str(tmp_path / "nope.zip")])
    assert missing.value.code == 2 and str(missing.value) == f"no model file at {tmp_path / 'nope.zip'}"
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: no model file at {tmp_path / 'nope.zip'}")

    PPO("MlpPolicy", "Pendulum-v1", n_steps=64, device="cpu").save(tmp_path / "pendulum.zip")
    with pytest.raises(SystemExit) as pendulum:
        backtest_main(["--model", str(tmp_path / "pendulum.zip"), "--env", "CryptoTrading-v0", "--out", str(tmp_path)])
    message = str(pendulum.value)
    assert pendulum.value.code == 2 and "Box(shape=(3,), dtype=float32)" in message
    assert "CryptoTrading-v0" in message and "no config.yml beside pendulum.zip" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pendulum.zip"]  # nothing written

    # An RL Zoo run trained with an 8-bar window: fine in its run folder, refused when copied away.
    settings = {"window_size": 8, "episode_length": 64}
    run = tmp_path / "logs" / "ppo" / "CryptoTrading-v0_1"
    (run / "CryptoTrading-v0").mkdir(parents=True)
    (run / "CryptoTrading-v0" / "config.yml").write_text("env_kwargs:\n  window_size: 8\n  episode_length: 64\n")
    model = PPO("MlpPolicy", gym.make("CryptoTrading-v0", **settings), n_steps=64, device="cpu")
    model.save(run / "CryptoTrading-v0.zip")
    (tmp_path / "copied").mkdir()
    model.save(tmp_path / "copied" / "CryptoTrading-v0.zip")
    with pytest.raises(SystemExit) as copied:
        backtest_main(["--model", str(tmp_path / "copied" / "CryptoTrading-v0.zip")])
    message = str(copied.value)
    assert copied.value.code == 2 and "no config.yml beside CryptoTrading-v0.zip" in message
    shape = model.observation_space.shape
    assert f"Box(shape={shape}, dtype=float32)" in message
    assert f"Box(shape={gym.make('CryptoTrading-v0').observation_space.shape}, dtype=float32)" in message
    results = backtest_main(["--model", str(run / "CryptoTrading-v0.zip"), "--out", str(tmp_path / "bt")])
    assert results[0].name == "agent" and (tmp_path / "bt" / "metrics.json").is_file()


def test_check_model_fits_env_keeps_its_old_import_path() -> None:
    from sb3_crypto.algorithms import model_io
    from sb3_crypto.evaluation import backtest

    assert backtest.check_model_fits_env is model_io.check_model_fits_env
    assert issubclass(model_io.ModelEnvMismatch, ValueError)
    # A model saved before the package's envs had LayoutBox observations has a plain Box: it fits.
    env = gym.make("CryptoTrading-v0", window_size=8)
    space = env.observation_space

    class OldModel:
        observation_space = gym.spaces.Box(space.low, space.high, space.shape, space.dtype)
        action_space = env.action_space

    model_io.check_model_fits_env(OldModel(), "CryptoTrading-v0", {"window_size": 8})
    OldModel.action_space = gym.spaces.Discrete(3)
    with pytest.raises(model_io.ModelEnvMismatch, match=r"the model's actions are Discrete\(3\), but .* has Box"):
        model_io.check_model_fits_env(OldModel(), "CryptoTrading-v0", {"window_size": 8})
