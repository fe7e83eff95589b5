"""CryptoPortfolio-v0: weights, execution through the multi-asset ledger by hand, asset lifetimes,
no look-ahead, data sources, keyword checks and the synthetic panel's planted signal."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sb3_crypto  # noqa: F401
from sb3_crypto.data import DataError, LeakError
from sb3_crypto.data.portfolio import build_portfolio_market
from sb3_crypto.data.synthetic import synthetic_panel
from sb3_crypto.envs.base import PortfolioLayout
from sb3_crypto.envs.portfolio import CryptoPortfolioEnv

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "coinmarketcap_daily_slice.csv"
SMALL = {"synthetic_kwargs": {"n_assets": 3, "n_bars": 400}, "window_size": 8, "episode_length": 24}


def frames(n_assets: int = 3, n_bars: int = 120, seed: int = 1) -> dict[str, pd.DataFrame]:
    return synthetic_panel(n_assets=n_assets, n_bars=n_bars, seed=seed)


def walk(env: CryptoPortfolioEnv, actions: list[np.ndarray]) -> tuple[list[np.ndarray], list[float], list[dict]]:
    obs, info = env.reset(seed=0)
    observations, rewards, infos = [obs], [], [info]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    return observations, rewards, infos


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"allow_short": True, "max_gross_leverage": 2.0, "reward": "excess"},
        {"data": str(FIXTURE), "window_size": 5, "norm_warmup": 10, "episode_length": 10},
    ],
    ids=["default", "long_short_excess", "coinmarketcap"],
)
def test_env_checkers(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("CryptoPortfolio-v0", **kwargs)
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_layout_and_spaces() -> None:
    env = CryptoPortfolioEnv(**SMALL)
    layout = env.observation_space.layout
    assert isinstance(layout, PortfolioLayout)
    assert layout.assets == ("A00", "A01", "A02") and layout.window_size == 8
    assert layout.channels[-1] == "alive" and layout.n_channels == 6
    assert layout.account == ("w_cash", "w_A00", "w_A01", "w_A02")
    assert env.action_space.shape == (4,)
    obs, info = env.reset(seed=3)
    windows, rest = layout.split(obs)
    t = info["bar"]
    np.testing.assert_array_equal(windows, env.market.windows[:, t - 7 : t + 1, :])
    np.testing.assert_array_equal(rest, [1.0, 0.0, 0.0, 0.0])  # all cash at the start
    assert (windows[..., -1] == 1.0).all()  # every asset alive


def test_one_step_by_hand_with_per_asset_fees_and_slippage() -> None:
    data = frames(2)
    fee, slip = [0.001, 0.002], [0.0005, 0.001]
    env = CryptoPortfolioEnv(
        data, window_size=4, episode_length=None, split="all", norm_warmup=10, fee=fee, slippage=slip, dead_band=0.0
    )
    _, info = env.reset(seed=0)
    t = info["bar"]
    action = env.action_for_weights([0.2, 0.5, 0.3])
    _, reward, _, _, info = env.step(action)
    w = info["target_weights"]
    np.testing.assert_allclose(w, [0.2, 0.5, 0.3], atol=1e-6)
    opens = [data[a]["open"].iloc[t + 1] for a in ("A00", "A01")]
    closes = [data[a]["close"].iloc[t + 1] for a in ("A00", "A01")]
    prices = [o * (1 + s) for o, s in zip(opens, slip, strict=True)]
    units = [w[k + 1] * 10_000 / prices[k] for k in range(2)]
    fees = [units[k] * prices[k] * fee[k] for k in range(2)]
    cash = 10_000 - sum(u * p for u, p in zip(units, prices, strict=True)) - sum(fees)
    equity = cash + sum(u * c for u, c in zip(units, closes, strict=True))
    ledger = env.ledger
    assert [f.asset for f in ledger.fills] == [0, 1] and all(f.bar == t + 1 for f in ledger.fills)
    assert [f.price for f in ledger.fills] == pytest.approx(prices)
    assert [f.fee for f in ledger.fills] == pytest.approx(fees)
    assert ledger.positions == pytest.approx(units)
    assert info["equity"] == pytest.approx(equity) and info["cash"] == pytest.approx(cash)
    assert reward == pytest.approx(math.log(equity / 10_000))
    assert info["fees"] == pytest.approx(sum(fees)) and info["trades"] == 2
    assert info["turnover"] == pytest.approx(sum(u * p for u, p in zip(units, prices, strict=True)) / 10_000)
    np.testing.assert_allclose(
        info["weights"], [cash / equity, units[0] * closes[0] / equity, units[1] * closes[1] / equity]
    )
    assert info["asset_pnl"].sum() == pytest.approx(equity - 10_000)
    assert info["asset_pnl"][0] == pytest.approx(units[0] * closes[0] - units[0] * prices[0] - fees[0])


def test_dead_band_sends_no_order_and_sells_come_first() -> None:
    env = CryptoPortfolioEnv(frames(3), window_size=4, episode_length=None, split="all", norm_warmup=10, dead_band=0.05)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_for_weights([0.1, 0.3, 0.3, 0.3]))
    held = env.ledger.positions
    assert info["trades"] == 3
    # Weights drifted a little with prices; a target within 5 % of every current weight sends nothing.
    _, _, _, _, info = env.step(env.action_for_weights(info["weights"] + np.array([0.02, -0.02, 0.01, -0.01])))
    assert info["trades"] == 3 and env.ledger.positions == held and info["fees"] == 0.0
    # Rotate out of A00 into A02: A00's sell is filled before A02's buy, A01 is inside the band.
    current = info["weights"]
    _, _, _, _, info = env.step(env.action_for_weights([current[0], 1e-9, current[2], 1 - current[0] - current[2]]))
    new = env.ledger.fills[3:]
    assert [(f.asset, f.side) for f in new] == [(0, -1), (2, 1)]
    assert env.ledger.cash >= 0.0


def test_long_short_weights_respect_the_gross_cap() -> None:
    env = CryptoPortfolioEnv(**SMALL, allow_short=True, max_gross_leverage=1.5, dead_band=0.0)
    env.reset(seed=0)
    everything = np.ones(3, dtype=bool)
    w = env.weights_for(np.array([0.0, 1.0, -1.0, 0.5]), everything)
    np.testing.assert_allclose(w[1:], 1.5 * np.array([1.0, -1.0, 0.5]) / 2.5)
    assert np.abs(w[1:]).sum() == pytest.approx(1.5) and w.sum() == pytest.approx(1.0)
    small = env.weights_for(np.array([0.9, 0.2, -0.1, 0.0]), everything)  # gross below 1: not scaled up
    np.testing.assert_allclose(small, [1 - 1.5 * 0.1, 0.3, -0.15, 0.0])
    _, _, _, _, info = env.step(np.array([0.0, 1.0, -1.0, 0.5], dtype=np.float32))
    assert env.ledger.positions[1] < 0 < env.ledger.positions[0]
    assert np.abs(info["weights"][1:]).sum() == pytest.approx(1.5, rel=0.05)


def test_long_only_weights_are_a_softmax_over_the_tradable_assets() -> None:
    env = CryptoPortfolioEnv(**SMALL, logit_scale=2.0)
    env.reset(seed=0)
    action = np.array([0.5, -0.2, 1.0, 0.1])
    w = env.weights_for(action, np.array([True, False, True]))
    expected = np.exp(2.0 * np.array([0.5, -0.2, 0.1]))
    np.testing.assert_allclose(w, np.insert(expected / expected.sum(), 2, 0.0))
    assert env.weights_for(action, np.ones(3, dtype=bool)).min() > 0
    np.testing.assert_allclose(env.weights_for(env.action_for_weights([0.1, 0.2, 0.3, 0.4])), [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match=r"action must have shape \(4,\)"):
        env.step(np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="action must be finite"):
        env.step(np.array([0.0, np.nan, 0.0, 0.0]))


def lifetimes() -> dict[str, pd.DataFrame]:
    """A00 for the whole clock, A01 listed at row 40, A02 delisted after row 70 (120 daily bars)."""
    data = frames(3)
    return {"A00": data["A00"], "A01": data["A01"].iloc[40:], "A02": data["A02"].iloc[:71]}


def test_assets_outside_their_life_are_masked_untradable_and_closed_at_delisting() -> None:
    data = lifetimes()
    slippage, fee = 0.001, 0.002
    env = CryptoPortfolioEnv(
        data, window_size=5, episode_length=None, split="all", norm_warmup=10, dead_band=0.0, fee=fee, slippage=slippage
    )
    market = env.market
    assert market.listed_until.tolist() == [119, 119, 70]
    obs, info = env.reset(seed=0)
    equal = env.action_for_weights([0.25, 0.25, 0.25, 0.25])
    seen = []
    while True:
        t = info["bar"]
        windows, _ = env.observation_layout.split(obs)
        alive = windows[:, :, -1]
        rows = np.arange(t - 4, t + 1)
        # A01's rows before its listing (row 40; its first row's features use its own open) are masked.
        assert (alive[1] == (rows >= 40)).all() and (windows[1][rows < 40] == 0).all()
        assert (alive[2] == (rows <= 70)).all() and (windows[2][rows > 70] == 0).all()
        target = env.weights_for(equal)
        assert (target[2] == 0.0) == (t < 40) and (target[3] == 0.0) == (t >= 70)
        obs, _, _, truncated, info = env.step(equal)
        seen.append(info)
        if info["bar"] == 71:
            closing = [f for f in env.ledger.fills if f.asset == 2][-1]
            assert info["delisted"] == ["A02"] and closing.bar == 70 and closing.side == -1
            assert closing.price == pytest.approx(data["A02"]["close"].iloc[70] * (1 - slippage))
            assert closing.fee == pytest.approx(closing.units * closing.price * fee)
            assert env.ledger.positions[2] == 0.0 and info["weights"][3] == 0.0
        if truncated:
            break
    assert any(info["bar"] == 71 for info in seen)
    assert all(np.isfinite(info["equity"]) for info in seen)
    # A01 was bought only from the decision on its first bar (row 40), filled at the open of row 41.
    assert min(f.bar for f in env.ledger.fills if f.asset == 1) == 41


def test_future_of_one_asset_changes_nothing_before_it() -> None:
    """Perturb A01's bars after row k: observations and rewards up to k identical, the statistics too."""
    data = frames(3, n_bars=200)
    k = 150
    changed = dict(data)
    frame = data["A01"].copy()
    frame.iloc[k + 1 :, :4] *= np.linspace(1.5, 0.3, len(frame) - k - 1)[:, None]
    frame.iloc[k + 1 :, 4] *= 3.0
    frame["high"] = frame[["open", "high", "low", "close"]].max(axis=1)
    frame["low"] = frame[["open", "high", "low", "close"]].min(axis=1)
    changed["A01"] = frame
    kwargs = {"window_size": 6, "episode_length": None, "split": "all", "norm_warmup": 20, "reward": "excess"}
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, 4).astype(np.float32) for _ in range(400)]
    envs = [CryptoPortfolioEnv(d, **kwargs) for d in (data, changed)]
    (obs_a, rew_a, info_a), (obs_b, rew_b, info_b) = (walk(env, actions) for env in envs)
    for name in data:
        np.testing.assert_array_equal(envs[0].market.normalizers[name].mean, envs[1].market.normalizers[name].mean)
    upto = [i for i, info in enumerate(info_a) if info["bar"] <= k]
    assert len(upto) > 100
    for i in upto:
        np.testing.assert_array_equal(obs_a[i], obs_b[i])
        assert info_a[i]["equity"] == info_b[i]["equity"]
        if i:
            assert rew_a[i - 1] == rew_b[i - 1]
    after = upto[-1] + 1
    assert not np.array_equal(obs_a[after], obs_b[after])  # the perturbation is visible once it happened


def test_perturbing_the_test_split_leaves_the_statistics_and_training_observations() -> None:
    data = frames(3, n_bars=300)
    market = build_portfolio_market(data, norm_warmup=0.2)
    test_start = market.splits["test"][0]
    changed = {name: frame.copy() for name, frame in data.items()}
    for frame in changed.values():
        frame.iloc[test_start:, :4] *= 7.0
        frame.iloc[test_start:, 4] *= 0.1
    other = build_portfolio_market(changed, norm_warmup=0.2)
    for name in data:
        np.testing.assert_array_equal(market.normalizers[name].mean, other.normalizers[name].mean)
        np.testing.assert_array_equal(market.normalizers[name].std, other.normalizers[name].std)
    np.testing.assert_array_equal(market.windows[:, :test_start], other.windows[:, :test_start])


def test_late_listing_is_normalised_with_pooled_warmup_statistics() -> None:
    market = build_portfolio_market(lifetimes(), norm_warmup=20)
    assert market.pooled == ("A01",)
    own = build_portfolio_market({"A00": lifetimes()["A00"], "A02": lifetimes()["A02"]}, norm_warmup=20)
    assert market.normalizers["A00"].mean.tolist() == own.normalizers["A00"].mean.tolist()


def test_data_sources_give_the_same_env(tmp_path: Path) -> None:
    """The CoinMarketCap long file by asset list equals a dict of its frames; a directory of per-asset
    files equals the dict of those frames."""
    kwargs = {"window_size": 5, "episode_length": None, "split": "all", "norm_warmup": 10}
    from_file = CryptoPortfolioEnv(str(FIXTURE), assets=["ETHEthereum", "BTCBitcoin"], **kwargs)
    assert from_file.assets == ("ETHEthereum", "BTCBitcoin")
    assert from_file.observation_layout.channels == ("close_return", "alive")
    from_dict = CryptoPortfolioEnv({a: from_file.market.panel.frames[a] for a in from_file.assets}, **kwargs)
    data = frames(3, n_bars=80)
    folder = tmp_path / "coins"
    folder.mkdir()
    for asset, frame in data.items():
        frame.to_csv(folder / f"{asset}.csv")
    from_folder = CryptoPortfolioEnv(str(folder), assets=["A02", "A00"], **kwargs)
    from_frames = CryptoPortfolioEnv({"A02": data["A02"], "A00": data["A00"]}, **kwargs)
    assert from_folder.assets == ("A02", "A00")
    for one, other in ((from_file, from_dict), (from_folder, from_frames)):
        action = np.array([0.0, 1.0, -0.5], dtype=np.float32)
        (obs_a, rewards_a, _), (obs_b, rewards_b, _) = walk(one, [action] * 100), walk(other, [action] * 100)
        assert len(rewards_a) > 40
        np.testing.assert_allclose(np.stack(obs_a), np.stack(obs_b), rtol=1e-6, atol=1e-6)  # CSV round trip
        np.testing.assert_allclose(rewards_a, rewards_b, rtol=1e-9, atol=1e-12)
    with pytest.raises(DataError, match="no data files"):
        CryptoPortfolioEnv(str(tmp_path), **kwargs)


def test_excess_reward_is_over_the_equal_weight_buy_and_hold() -> None:
    kwargs = {**SMALL, "fee": 0.0, "slippage": 0.0}
    plain, excess = (CryptoPortfolioEnv(**kwargs, dead_band=0.0, reward=reward) for reward in ("log_return", "excess"))
    action = np.array([0.3, -0.1, 0.8, 0.0], dtype=np.float32)
    _, a_info = plain.reset(seed=4)
    excess.reset(seed=4)
    assert a_info["benchmark_equity"] == pytest.approx(10_000.0)
    for _ in range(10):
        previous = a_info["benchmark_equity"]
        _, a, *_, a_info = plain.step(action)
        _, b, *_ = excess.step(action)
        assert b == pytest.approx(a - math.log(a_info["benchmark_equity"] / previous))
    t, start = a_info["bar"], a_info["bar"] - 10
    close = plain.market.close
    assert a_info["benchmark_equity"] == pytest.approx(10_000 / 3 * (close[t] / close[start]).sum())
    # Holding the equal-weight portfolio without costs earns the benchmark (the reward is ~0).
    held = CryptoPortfolioEnv(**kwargs, reward="excess", dead_band=0.3)  # buys once, then holds
    held.reset(seed=4)
    rewards = [held.step(held.action_for_weights([0.0, 1 / 3, 1 / 3, 1 / 3]))[1] for _ in range(10)]
    assert abs(sum(rewards[1:])) < 0.01


def test_episodes_start_at_random_bars_of_the_split_reproducibly() -> None:
    env = CryptoPortfolioEnv(**SMALL)
    starts = [env.reset(seed=s)[1]["bar"] for s in range(6)]
    assert len(set(starts)) > 1 and starts == [env.reset(seed=s)[1]["bar"] for s in range(6)]
    assert all(env.first_bar <= s <= env.last_bar - 23 for s in starts)
    test = CryptoPortfolioEnv(**{**SMALL, "split": "test", "episode_length": None})
    assert test.reset(seed=0)[1]["bar"] == test.market.splits["test"][0]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"fee": [0.001, 0.002]}, ValueError, r"fee must be a list of 3 fractions"),
        ({"slippage": [0.0, 0.0, 1.5]}, ValueError, r"slippage\[2\] \(A02\) must be a number in \[0, 1\)"),
        ({"max_gross_leverage": 2.0}, ValueError, r"max_gross_leverage=2.0 needs allow_short=True"),
        ({"assets": ["A00", "A09"]}, DataError, r"assets=\['A00', 'A09'\]: .*unknown asset 'A09'"),
        ({"assets": ["A00"]}, ValueError, r"assets must name at least 2 assets"),
        ({"synthetic_kwargs": {"signal": "trend"}}, ValueError, r"synthetic_kwargs\['signal'\] must be one of"),
        ({"synthetic_kwargs": {"n_assets": 1}}, ValueError, r"\['n_assets'\] must be an integer in \[2, "),
        ({"synthetic_kwargs": {"n_assets": 3, "n_bars": 400, "bogus": 1}}, ValueError, r"bogus"),
        ({"reward": "multi"}, ValueError, r"reward must be one of 'log_return', 'excess'"),
        ({"episode_length": 10_000}, DataError, r"episode_length=10000 exceeds the \d+ decision bars"),
        ({"logit_scale": 0}, ValueError, r"logit_scale must be a number in \(0, 50\]"),
        ({"dead_band": "x"}, ValueError, r"dead_band must be a number in \[0, 1\)"),
    ],
)
def test_bad_keywords_are_refused_naming_them(kwargs: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        CryptoPortfolioEnv(**{**SMALL, **kwargs})


def test_yaml_strings_are_converted() -> None:
    env = CryptoPortfolioEnv(**{**SMALL, "allow_short": "true", "max_gross_leverage": "2", "fee": "0.001"})
    assert env.allow_short is True and env.max_gross_leverage == 2.0 and env.ledger.fee_rates == [0.001] * 3


def test_synthetic_panel_is_seeded_and_plants_a_cross_sectional_signal() -> None:
    a, b = synthetic_panel(n_assets=6, n_bars=2000, seed=5), synthetic_panel(n_assets=6, n_bars=2000, seed=5)
    assert all(a[k].equals(b[k]) for k in a)
    assert not a["A00"].equals(synthetic_panel(n_assets=6, n_bars=2000, seed=6)["A00"])

    def lead_lag(signal: str, span: int = 1) -> float:
        """Correlation of an asset's last ``span`` bars' return (minus the cross-section's mean) with
        its next bar's open-to-close return: what a decision on a close can earn at the next open."""
        data = synthetic_panel(n_assets=6, n_bars=2000, seed=5, signal=signal, signal_strength=0.3)
        close = pd.DataFrame({k: f["close"] for k, f in data.items()})
        intrabar = np.log(close / pd.DataFrame({k: f["open"] for k, f in data.items()}))
        last = np.log(close).diff(span)
        deviation = last.sub(last.mean(axis=1), axis=0)
        x, y = deviation.iloc[span:-1].to_numpy().ravel(), intrabar.shift(-1).iloc[span:-1].to_numpy().ravel()
        return float(np.corrcoef(x, y)[0, 1])

    assert lead_lag("reversal") < -0.1  # 12,000 pairs: a standard error of about 0.009
    assert lead_lag("momentum", span=5) > 0.03
    assert abs(lead_lag("none")) < 0.03 and abs(lead_lag("none", span=5)) < 0.03
    returns = np.log(pd.DataFrame({k: f["close"] for k, f in a.items()})).diff().dropna()
    correlations = returns.corr().to_numpy()[np.triu_indices(6, 1)]
    assert correlations.min() > 0.1  # the common market factor


def test_the_planted_reversal_pays_after_costs_for_a_policy_that_reads_the_observation() -> None:
    """A right answer exists on the test split: tilting towards the assets whose last observed return
    was lowest (read from the window) beats the equal-weight buy-and-hold after fees and slippage;
    on a panel without a signal the same rule only pays costs."""
    results = {}
    for signal in ("reversal", "none"):
        env = CryptoPortfolioEnv(
            synthetic_kwargs={"n_assets": 6, "n_bars": 2000, "signal": signal, "signal_strength": 0.2, "seed": 1},
            split="test",
            episode_length=None,
            window_size=4,
            dead_band=0.0,
        )
        layout = env.observation_layout
        channel = layout.channels.index("close_return")
        obs, info = env.reset(seed=0)
        done = False
        while not done:
            last = layout.split(obs)[0][:, -1, channel]
            action = np.concatenate(([-1.0], np.clip(last.mean() - last, -1.0, 1.0))).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        results[signal] = info["equity"] / info["benchmark_equity"]
        assert info["fees_paid"] > 0.01 * 10_000
    assert results["reversal"] > 2.0
    assert results["none"] < 1.0


#: Built-ins, a user function and a higher timeframe, computed on each asset's own bars.
SPEC = {
    "base": "zscore",
    "indicators": [
        {"name": "rsi", "period": 14},
        {"name": "macd", "fast": 12, "slow": 26, "signal": 9},
        {"function": "helpers:momentum_feature", "kwargs": {"span": 6}, "lookback": 7},
        {"name": "rsi", "period": 14, "timeframe": "4h"},
    ],
}


def test_feature_spec_works_per_asset_without_look_ahead() -> None:
    hourly = synthetic_panel(n_assets=3, n_bars=900, freq="1h", seed=2)
    data = {"A00": hourly["A00"], "A01": hourly["A01"].iloc[150:], "A02": hourly["A02"]}  # A01 listed late
    kwargs = {"features": SPEC, "window_size": 8, "episode_length": None, "split": "all", "norm_warmup": 120}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("CryptoPortfolio-v0", data=data, **kwargs).unwrapped
        gym_check_env(env)
        sb3_check_env(env)
    channels = env.observation_layout.channels
    assert channels[:5] == ("open_return", "high_return", "low_return", "close_return", "log_volume")
    assert {"rsi_14", "macd_hist_12_26_9", "mom", "mom_ema", "rsi_14@4h", "alive"} <= set(channels)
    market = env.market
    first_ready = market.ready.argmax(axis=0)
    assert first_ready[1] > 150 + 26  # A01's own indicator warm-up, after its listing: nothing back-filled
    assert (market.windows[1, : first_ready[1]] == 0).all() and market.pooled == ("A01",)
    assert first_ready[0] == first_ready[2] == market.features_start
    # Perturb A02 after row k: the same observations and rewards up to k.
    k = 600
    changed = dict(data)
    frame = data["A02"].copy()
    frame.iloc[k + 1 :, :4] *= 1.3
    changed["A02"] = frame
    actions = [np.random.default_rng(s).uniform(-1, 1, 4).astype(np.float32) for s in range(900)]
    (obs_a, rew_a, info_a), (obs_b, rew_b, _) = (
        walk(CryptoPortfolioEnv(d, **kwargs), actions) for d in (data, changed)
    )
    upto = [i for i, info in enumerate(info_a) if info["bar"] <= k]
    assert len(upto) > 300
    for i in upto:
        np.testing.assert_array_equal(obs_a[i], obs_b[i])
        assert i == 0 or rew_a[i - 1] == rew_b[i - 1]
    assert not np.array_equal(obs_a[upto[-1] + 1], obs_b[upto[-1] + 1])


def test_a_peeking_user_feature_is_refused_naming_the_asset() -> None:
    spec = {"indicators": [{"function": "helpers:peek_next", "name": "tomorrow"}]}
    with pytest.raises(LeakError, match=r"^panel \[A00\]: feature 'tomorrow' .* looks ahead"):
        CryptoPortfolioEnv(frames(2, n_bars=200), features=spec, episode_length=None)


def test_the_generic_rollout_walks_a_whole_split() -> None:
    """``run_policy`` (what the backtests and callbacks use) reads the env's equity, times and fills."""
    from sb3_crypto.evaluation.rollout import run_policy

    env = gym.make("CryptoPortfolio-v0", **{**SMALL, "split": "test", "episode_length": None})
    weights = env.unwrapped.action_for_weights([0.1, 0.3, 0.3, 0.3])

    class Constant:
        def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True) -> Any:
            return weights, None

    result = run_policy(Constant(), env)
    base = env.unwrapped
    start, stop = base.market.splits["test"]
    assert len(result.equity) == stop - 1 - start + 1 and result.equity[0] == 10_000.0
    assert result.timestamps[-1] == base.market.frame.index[stop - 1]
    assert result.trades == base.ledger.n_trades >= 3
    assert result.extra["fills"][0][0] == base.market.frame.index[start + 1]  # filled at the next open
    assert result.fees_paid == pytest.approx(sum(f.fee for f in base.ledger.fills))
