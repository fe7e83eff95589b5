"""S3 futures sessions: extraction, storage, scripted trades, masks, no look-ahead, learning."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN

import sb3_crypto  # noqa: F401
from sb3_crypto.data import DataError
from sb3_crypto.data.sessions import SESSION_CHANNELS, SessionSet, extract_sessions, find_signals
from sb3_crypto.envs.futures import CLOSE, HOLD, LONG, SHORT, CryptoFuturesSessionEnv
from sb3_crypto.evaluation.sessions import evaluate_sessions
from sb3_crypto.policies import POLICIES

RULE = {"context": 30, "session": 10, "signal_window": 10, "signal_threshold": 0.05, "contrast": 5.0}


def spiky_frame(n: int = 1000, spikes: dict[int, float] | None = None, noise: dict[int, float] | None = None):
    """Flat-ish minute bars; ``spikes[t] = move`` spreads a move over the 10 bars ending at t."""
    close = np.full(n, 100.0)
    log_moves = np.zeros(n)
    rng = np.random.default_rng(0)
    log_moves += rng.normal(0, 0.0002, n)
    for end, move in (spikes or {}).items():
        log_moves[end - 9 : end + 1] += np.log1p(move) / 10
    for at, move in (noise or {}).items():
        log_moves[at] += np.log1p(move)
    close = 100.0 * np.exp(np.cumsum(log_moves))
    open_ = np.concatenate(([100.0], close[:-1]))
    index = pd.date_range("2023-03-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.0001,
            "low": np.minimum(open_, close) * 0.9999,
            "close": close,
            "volume": np.ones(n),
        },
        index=index,
    )


def test_extraction_finds_exactly_the_planted_signals() -> None:
    # Spikes ending at 200 (up 6 %) and 500 (down 6 %); the one ending at 800 follows a noisy
    # context (a 2 % jump at bar 782, inside its calm stretch), so it is no signal.
    frame = spiky_frame(spikes={200: 0.06, 500: -0.06, 800: 0.06}, noise={782: 0.02})
    sessions = extract_sessions(frame, **RULE)
    # Each spike adds 0.6 % a bar: the 10-bar move first exceeds 5 % on its 9th bar (199, 499).
    assert [pd.Timestamp(t, tz="UTC") for t in sessions.signal_times] == [frame.index[199], frame.index[499]]
    assert sessions.bars.shape == (2, 40, len(SESSION_CHANNELS))
    np.testing.assert_allclose(sessions.bars[0, :, 3], frame["close"].iloc[170:210])  # context ends on the signal
    assert sessions.keys[0] == ("asset", frame.index[199])
    assert find_signals(spiky_frame(spikes={800: 0.06})["close"].to_numpy(), **RULE) == [799]  # without the noise


def test_extraction_sees_no_bar_after_its_session() -> None:
    frame = spiky_frame(spikes={200: 0.06, 500: -0.06})
    later = frame.copy()
    later.iloc[210:, :4] *= 1.5  # everything after the first session's last bar (199 + 10)
    first = extract_sessions(frame, **RULE)
    second = extract_sessions(later, **RULE)
    np.testing.assert_array_equal(first.bars[0], second.bars[0])
    assert first.signal_times[0] == second.signal_times[0]
    assert find_signals(frame["close"].to_numpy()[:210], **RULE) == [199]


def test_session_files_round_trip_and_s3_layout(tmp_path: Path) -> None:
    frames = {"BTC": spiky_frame(spikes={200: 0.06}), "ETH": spiky_frame(spikes={300: -0.07})}
    sessions = extract_sessions(frames, **RULE)
    assert [key[0] for key in sessions.keys] == ["BTC", "ETH"]
    path = sessions.save(tmp_path / "sessions.npz")
    loaded = SessionSet.load(path)
    np.testing.assert_array_equal(loaded.bars, sessions.bars)
    assert loaded.keys == sessions.keys and (loaded.context, loaded.session) == (30, 10)
    # Written atomically (no temporary file left); ``.npz`` is added when left out, as numpy does.
    assert sessions.save(tmp_path / "more") == tmp_path / "more.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["more.npz", "sessions.npz"]
    assert SessionSet.load(tmp_path / "more.npz").keys == sessions.keys
    # S3's own layout: (N, 150, 7) with channels open, high, vwap, low, close, volume, trades.
    s3 = np.random.default_rng(1).uniform(1, 2, (3, 150, 7))
    s3[:, :, 1] = s3.max(axis=2) + 0.1  # high above everything
    np.save(tmp_path / "s3.npy", s3)
    from_s3 = SessionSet.load(tmp_path / "s3.npy", context=90)
    assert (from_s3.context, from_s3.session) == (90, 60)
    np.testing.assert_array_equal(from_s3.bars[:, :, SESSION_CHANNELS.index("vwap")], s3[:, :, 2])
    np.testing.assert_array_equal(from_s3.bars[:, :, SESSION_CHANNELS.index("low")], s3[:, :, 3])
    env = CryptoFuturesSessionEnv(
        tmp_path / "s3.npy", context=90, split="all", split_fractions=(1.0, 0.0, 0.0), norm_warmup=0.34
    )
    assert env.observation_space.shape[0] == 90 * 7 + 4 + 16
    with pytest.raises(DataError, match="pass context="):
        SessionSet.load(tmp_path / "s3.npy")
    bad = s3.copy()
    bad[1, 5, 4] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(DataError, match="non-finite value in session 1, bar 5"):
        SessionSet.load(tmp_path / "bad.npy", context=90)


def make_env(**kwargs) -> CryptoFuturesSessionEnv:
    kwargs.setdefault("split", "all")
    return CryptoFuturesSessionEnv(**kwargs)


def run_script(env: CryptoFuturesSessionEnv, actions: list[int]) -> tuple[list[float], dict]:
    env.reset(seed=0)
    rewards, info = [], {}
    for action in actions:
        _, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        if terminated:
            break
    return rewards, info


@pytest.mark.parametrize(("side", "action"), [(1, LONG), (-1, SHORT)])
def test_round_trip_by_hand(side: int, action: int) -> None:
    env = make_env(sequential=True, fee=0.0004, slippage=0.0005)
    env.reset(seed=0)
    index = env._index
    opens = env.sessions.bars[index, :, 0]
    c = env.context
    rewards, info = run_script(env, [action, HOLD, HOLD, CLOSE] + [HOLD] * 6)
    entry = opens[c] * (1 + side * 0.0005)  # decided on the signal bar's close, filled at the next open
    exit_ = opens[c + 3] * (1 - side * 0.0005)
    units = 10_000 / (entry * (1 + 0.0004)) if side > 0 else 10_000 / entry
    pnl = side * units * (exit_ - entry) - 0.0004 * units * (entry + exit_)
    assert info["realized_pnl"] == pytest.approx(pnl)
    assert info["trades"] == 2 and info["invalid_actions"] == 0
    assert info["profitable"] == (pnl > 0)
    assert rewards[0] == pytest.approx(-0.0004 * units * entry / 10_000)  # entry fee, no penalty
    assert rewards[4] == pytest.approx(-0.001)  # flat and holding
    assert sum(rewards) == pytest.approx(pnl / 10_000 - 6 * 0.001)


def test_forced_close_and_masks() -> None:
    env = make_env(sequential=True)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.action_masks(), [True, True, True, False])
    env.step(LONG)
    np.testing.assert_array_equal(env.action_masks(), [True, False, False, True])
    for _ in range(8):
        env.step(HOLD)
    np.testing.assert_array_equal(env.action_masks(), [False, False, False, True])  # last step
    _, _, terminated, _, info = env.step(HOLD)  # holding is not allowed: closed anyway
    assert terminated and info["position"] == 0.0 and info["trades"] == 2


def test_invalid_actions_are_ignored_and_counted() -> None:
    env = make_env(sequential=True)
    _, info = run_script(env, [CLOSE, LONG, SHORT, LONG] + [HOLD] * 5 + [LONG])
    assert info["invalid_actions"] == 4  # close while flat, two opens while long, open on the last bar
    assert info["trades"] == 2
    with pytest.raises(ValueError, match=r"action must be in 0\.\.3"):
        env.step(7)
    with pytest.raises(ValueError, match="one integer"):
        env.step(np.array([0.5]))


def test_evaluation_mode_visits_each_session_once() -> None:
    env = make_env(split="test", sequential=True)
    seen = []
    for _ in range(env.n_sessions):
        _, info = env.reset()
        seen.append(info["session"])
    assert len(set(seen)) == env.n_sessions == len(seen)
    assert seen == sorted(seen, key=lambda key: key[1])
    _, info = env.reset()
    assert info["session"] == seen[0]  # the next pass starts over


def test_no_look_ahead_in_sessions() -> None:
    sessions = CryptoFuturesSessionEnv().sessions
    m = len(sessions) // 2
    k = 35  # inside session m's trading bars (context 30)
    changed = sessions.subset(np.arange(len(sessions)))
    changed.bars = changed.bars.copy()
    changed.bars[m, k:, :4] *= 1.3
    changed.bars[m, k:, 4] *= 5.0
    changed.bars[m + 1 :, :, :4] *= 0.7  # every later session differs entirely
    envs = [make_env(data=s, sequential=True) for s in (sessions, changed)]
    position = {int(i): p for p, i in enumerate(envs[0].episode_indices)}
    for env in envs:
        for _ in range(position[m]):
            env.reset()
    traces = []
    for env in envs:  # sessions before m were checked by construction; now walk session m itself
        obs, _ = env.reset()
        assert env._index == m
        observations, rewards = [obs], []
        for step in range(env.session):
            action = [LONG, HOLD, HOLD, HOLD, HOLD, HOLD, SHORT, HOLD, CLOSE, HOLD][step]
            obs, reward, *_ = env.step(action)
            observations.append(obs)
            rewards.append(reward)
        traces.append((observations, rewards))
    first = envs[0].context - 1
    for step in range(envs[0].session + 1):
        decision_bar = first + step
        if decision_bar < k:
            np.testing.assert_array_equal(traces[0][0][step], traces[1][0][step])
        if step < envs[0].session and decision_bar + 1 < k:  # filled at the next open, before bar k
            assert traces[0][1][step] == traces[1][1][step]
    assert not np.array_equal(traces[0][0][k - first], traces[1][0][k - first])


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dqn", "maskable_ppo"])
def test_agents_earn_after_costs_on_planted_sessions(algo: str) -> None:
    env = gym.make("CryptoFuturesSession-v0")
    if algo == "dqn":
        model = DQN(
            POLICIES["MlpDQNPolicy"],
            env,
            learning_starts=500,
            learning_rate=5e-4,
            target_update_interval=500,
            exploration_fraction=0.3,
            seed=0,
        )
    else:
        model = MaskablePPO(POLICIES["MlpMaskablePolicy"], env, n_steps=256, batch_size=64, ent_coef=0.01, seed=0)
    model.learn(20_000)
    pnl = evaluate_sessions(model, use_masks=algo != "dqn")
    assert np.mean(pnl) > 0.0  # after the 0.04 % fee and 0.05 % slippage on both fills
    assert np.mean(pnl > 0) > 0.6
