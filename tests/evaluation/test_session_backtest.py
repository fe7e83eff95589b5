"""Session backtests: baselines by hand, S3's supervised baseline, the CLI's files."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO

import sb3_crypto  # noqa: F401
from sb3_crypto.backtest import main as backtest_main
from sb3_crypto.envs.futures import HOLD, LONG, SHORT, CryptoFuturesSessionEnv
from sb3_crypto.evaluation.sessions import backtest_sessions, open_then_hold, run_sessions, train_supervised_baseline

KWARGS = {"split": "test"}


def test_long_and_hold_by_hand() -> None:
    env = CryptoFuturesSessionEnv(split="test", sequential=True)
    offset = env.observation_layout.window_dim
    records = run_sessions(open_then_hold(LONG, offset), **KWARGS)
    assert len(records) == env.n_sessions
    first = records[0]
    assert first.actions[0] == LONG and set(first.actions[1:-1]) == {HOLD}
    bars = env.sessions.bars[env.episode_indices[0]]
    entry = bars[env.context, 0] * 1.0005  # open after the signal bar, plus slippage
    exit_ = bars[env.context + env.session - 1, 0] * 0.9995  # forced close at the last bar's open
    units = 10_000 / (entry * 1.0004)
    assert first.pnl == pytest.approx(units * (exit_ - entry) - 0.0004 * units * (entry + exit_))


def test_supervised_baseline_is_a_real_classifier_trained_on_the_training_split() -> None:
    policy = train_supervised_baseline({}, epochs=200)
    assert policy.parameter_count > 1000
    env = CryptoFuturesSessionEnv(split="test", sequential=True)
    decisions, correct = [], []
    for _ in range(env.n_sessions):
        obs, _ = env.reset()
        action = policy(obs)
        bars = env.sessions.bars[env._index]
        decisions.append(action)
        correct.append((action == LONG) == (bars[-1, 3] > bars[env.context, 0]))
        obs, *_ = env.step(action)
        assert policy(obs) == HOLD  # it trades only at the first decision
    assert set(decisions) <= {LONG, SHORT}
    assert np.mean(correct) > 0.6  # the planted direction is learnable from the context


def test_backtest_sessions_and_cli_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = MaskablePPO("MlpPolicy", gym.make("CryptoFuturesSession-v0"), n_steps=64, batch_size=64, seed=0)
    model.learn(64)
    records, summaries = backtest_sessions(model, dict(KWARGS), use_masks=True, random_seeds=(0, 1))
    assert set(summaries) == {"agent", "flat", "long_and_hold", "short_and_hold", "supervised", "random"}
    assert summaries["flat"]["total_pnl"] == 0.0 and summaries["flat"]["win_rate"] == 0.0
    assert all(len(recs) == summaries["agent"]["sessions"] for recs in records.values())
    path = tmp_path / "CryptoFuturesSession-v0.zip"
    model.save(path)
    argv = ["--model", str(path), "--algo", "ppo_mask", "--out", str(tmp_path / "out")]
    backtest_main(argv)
    names = ("metrics.json", "sessions.csv", "trades.csv", "pnl_hist.png", "best_worst.png", "report.html")
    for name in names:
        assert (tmp_path / "out" / name).is_file(), name
    assert "supervised" in json.loads((tmp_path / "out" / "metrics.json").read_text())["results"]
    assert (tmp_path / "out" / "report.html").read_text().count('class="plotly-graph-div"') == 2  # PnL figures
    # A folder that holds results is not overwritten without --overwrite: one line, status 2.
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert set(before) == set(names)  # no temporary files left
    with pytest.raises(SystemExit) as refused:
        backtest_main(argv)
    assert refused.value.code == 2
    assert "metrics.json" in str(refused.value) and "--overwrite" in str(refused.value)
    assert "\n" not in str(refused.value) and "error: " in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    (tmp_path / "out" / "equity.png").write_bytes(b"mine")  # not a file of this backtest: left alone
    backtest_main([*argv, "--overwrite"])
    assert (tmp_path / "out" / "equity.png").read_bytes() == b"mine"
    payload = json.loads(
        (tmp_path / "out" / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}")
    )
    assert payload["results"]["agent"]["sessions"] == summaries["agent"]["sessions"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*names, "equity.png"])


class CountingRecurrentPolicy:
    """Stands in for RecurrentPPO: records the state and episode-start flags it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, bool]] = []

    def predict(self, obs, state=None, episode_start=None, deterministic=True, **kwargs):
        self.calls.append((state, bool(episode_start[0])))
        new_state = 0 if episode_start[0] else state + 1
        return np.array(HOLD), new_state


def test_recurrent_state_is_kept_within_each_session_and_dca_cycle() -> None:
    policy = CountingRecurrentPolicy()
    records = run_sessions(policy, **KWARGS)
    session = records[0].actions.__len__()
    starts = [start for _, start in policy.calls]
    assert starts == ([True] + [False] * (session - 1)) * len(records)
    assert [state for state, _ in policy.calls[1:session]] == list(range(session - 1))  # carried over

    from sb3_crypto.evaluation.dca import evaluate_dca

    dca_policy = CountingRecurrentPolicy()  # always waits: every cycle runs to its forced last day
    evaluate_dca(dca_policy, split="test", cycle_length=5, window_size=5)
    starts = [start for _, start in dca_policy.calls]
    assert starts[:5] == [True, False, False, False, False] and starts[5] is True
