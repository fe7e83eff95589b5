"""Single-env steps per second: CryptoTrading-v0 against gym-anytrading and gym-trading-env.

All step through the same 20,000 synthetic hourly bars with random actions, inside ``gym.make``
(the wrappers users get), one after another in the same process, in many short interleaved rounds;
the best round of each counts (short rounds, so that on a busy machine each env has rounds that ran
undisturbed: with 5 rounds of 20,000 steps the ratios swung by +-5 % here, with 100 rounds of 2,000
by +-1 %). Ratios are printed against each peer, for CryptoTrading-v0 with its
default features and with ten features of the feature spec (19 channels).

What each does per step (ours does the most):
* CryptoTrading-v0: target-exposure order filled at the next open with slippage and fee, funding,
  mark-to-market, drawdown, a 32-bar x 5-channel normalised window + 4 account features, info dict;
  with ten features the window is 32 x 19 channels (features are precomputed when the env is built).
* gym-anytrading stocks-v0: long/short flag flip, profit update, 32-bar x 2-feature window.
* gym-trading-env TradingEnv: target position with fees, history record, 32-row window.

Run: ``python benchmarks/bench_env_speed.py [--steps 2000] [--rounds 100]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import gymnasium as gym
import numpy as np
import pandas as pd

#: Ten features of the feature spec (19 channels with the 5 base ones), as in bench_features.py.
TEN_FEATURES = {
    "base": "zscore",
    "indicators": [
        {"name": "rsi", "period": 14},
        {"name": "macd", "fast": 12, "slow": 26, "signal": 9},
        {"name": "atr", "period": 14},
        {"name": "bollinger_width", "period": 20, "k": 2},
        {"name": "adx", "period": 14},
        {"name": "realized_vol", "period": 24},
        {"name": "volume_zscore", "period": 48},
        {"name": "returns", "k": 4},
        {"name": "rsi", "period": 14, "timeframe": "4h"},
        {"name": "macd", "fast": 12, "slow": 26, "signal": 9, "timeframe": "1d"},
    ],
}


def make_ours(frame: pd.DataFrame) -> gym.Env:
    import sb3_crypto  # noqa: F401

    return gym.make("CryptoTrading-v0", data=frame, window_size=32, episode_length=None, split="all")


def make_ours_features(frame: pd.DataFrame) -> gym.Env:
    """CryptoTrading-v0 with ten features (precomputed and leak-checked when the env is built)."""
    import sb3_crypto  # noqa: F401

    return gym.make(
        "CryptoTrading-v0", data=frame, window_size=32, episode_length=None, split="all", features=TEN_FEATURES
    )


def make_anytrading(frame: pd.DataFrame) -> gym.Env:
    import gym_anytrading  # noqa: F401

    df = frame.rename(columns=str.capitalize)
    return gym.make("stocks-v0", df=df, window_size=32, frame_bound=(32, len(df)))


def make_trading_env(frame: pd.DataFrame) -> gym.Env:
    import gym_trading_env  # noqa: F401

    df = frame.copy()
    df.index = df.index.tz_localize(None)
    df["feature_close"] = df["close"].pct_change().fillna(0.0)
    df["feature_volume"] = np.log1p(df["volume"])
    env = gym.make(
        "TradingEnv",
        df=df,
        positions=[-1, 0, 1],
        windows=32,
        trading_fees=0.001,
        initial_position=0,
        verbose=0,
        disable_env_checker=True,
    )
    warnings.resetwarnings()  # its module turns every warning into an error when imported
    return env


def steps_per_second(env: gym.Env, n_steps: int, seed: int = 0) -> float:
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return n_steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2_000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds; the best of each env counts")
    args = parser.parse_args()

    from sb3_crypto.data import synthetic_ohlcv

    frame = synthetic_ohlcv(20_000, seed=0)
    makers = {
        "CryptoTrading-v0": make_ours,
        "CryptoTrading-v0 10 features": make_ours_features,
        "gym-anytrading stocks-v0": make_anytrading,
        "gym-trading-env TradingEnv": make_trading_env,
    }
    envs = {name: make(frame) for name, make in makers.items()}
    best = dict.fromkeys(envs, 0.0)
    for _ in range(args.rounds):
        for name, env in envs.items():
            best[name] = max(best[name], steps_per_second(env, args.steps))
    ours = best["CryptoTrading-v0"]
    featured = best["CryptoTrading-v0 10 features"]
    shape = envs["CryptoTrading-v0 10 features"].observation_space.shape
    print(f"{'environment':<32}{'steps/s':>12}{'ours / it':>12}{'10 features / it':>18}")
    for name, rate in best.items():
        print(f"{name:<32}{rate:>12,.0f}{ours / rate:>11.2f}x{featured / rate:>17.2f}x")
    print(f"(10 features: {shape[0]}-value observations, 19 channels x 32 bars + 4 account features)")


if __name__ == "__main__":
    main()
