"""Portfolio env steps per second: CryptoPortfolio-v0 against FinRL's StockPortfolioEnv, 10 and 50 assets.

Both step through the same synthetic daily panel (``sb3_crypto.data.synthetic.synthetic_panel``)
with the same random logits, one after another in the same process, in many short interleaved
rounds (paired: each round runs every env once); the best round of each counts and the ratios are
printed. One thread (torch is not involved; numpy's BLAS is limited to one thread too).

What each does per step:

* CryptoPortfolio-v0 (``gym.make``, the wrappers users get): softmax of the logits to target
  weights, the dead band, a rebalance at the next bar's opens through the one accounting core (the
  Ledger: sells before buys, per-asset fee and slippage, every fill recorded), mark-to-market of
  every asset, the log-return reward, and a fresh observation: every asset's window of
  ``window_size`` bars x channels plus the weights.
* FinRL 0.3.7 ``PortfolioOptimizationEnv`` (its EIIE env, optional: it needs the old ``gym`` package
  and ``quantstats``, so run it from a separate venv): the softmax, the transaction-remainder-factor
  commission (a fixed-point iteration), the portfolio value from the price relatives, and the next
  window of close / high / low for every asset, selected from its long DataFrame by time and ticker.
* FinRL 0.3.7 ``StockPortfolioEnv`` (``finrl.meta.env_portfolio_allocation.env_portfolio``): softmax of
  the actions to weights, the portfolio return from the close-to-close returns (no fill, no cost:
  its ``transaction_cost_pct`` is unused), and the next day's covariance matrix plus indicator rows
  looked up in its DataFrame as the observation.

FinRL's package ``__init__`` imports its whole trading stack (brokers, data sources); only the env's
module is loaded here, from its file (it needs gymnasium, pandas, matplotlib and SB3). Install the
peer with ``pip install finrl==0.3.7`` (the ``bench`` extra; it brings no other package).

Run: ``python benchmarks/bench_portfolio_env.py [--steps 500] [--rounds 40] [--assets 10 50]``. For
the EIIE peer, a throwaway venv that sees the project's packages and adds gym::

    python3 -m venv /tmp/bench-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/bench-venv/lib/python3.11/site-packages/project.pth
    /tmp/bench-venv/bin/pip install gym quantstats
    PYTHONPATH=. /tmp/bench-venv/bin/python benchmarks/bench_portfolio_env.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import gymnasium as gym
import numpy as np
import pandas as pd

N_BARS = 1_500
WINDOW = 32
INDICATORS = ("ret_1", "ret_5", "ret_20", "vol_20")


def panel(n_assets: int) -> dict[str, pd.DataFrame]:
    from sb3_crypto.data.synthetic import synthetic_panel

    return synthetic_panel(n_assets=n_assets, n_bars=N_BARS, seed=0)


def make_ours(frames: dict[str, pd.DataFrame]) -> gym.Env:
    import sb3_crypto  # noqa: F401

    return gym.make(
        "CryptoPortfolio-v0", data=frames, window_size=WINDOW, episode_length=None, split="all", norm_warmup=64
    )


def finrl_frame(frames: dict[str, pd.DataFrame], lookback: int = WINDOW) -> pd.DataFrame:
    """FinRL's input: one row per (day, ticker) with ``date``, ``tic``, ``close``, the indicators and
    the day's covariance matrix of the last ``lookback`` daily returns (``cov_list``), index = day."""
    close = pd.DataFrame({name: frame["close"] for name, frame in frames.items()})
    returns = close.pct_change()
    indicators = {
        "ret_1": returns,
        "ret_5": close.pct_change(5),
        "ret_20": close.pct_change(20),
        "vol_20": returns.rolling(20).std(),
    }
    values = returns.to_numpy()
    rows = []
    for day in range(lookback, len(close)):
        cov = np.cov(values[day - lookback + 1 : day + 1].T)
        for k, name in enumerate(close.columns):
            row = {"date": close.index[day], "tic": name, "close": close.iat[day, k], "cov_list": cov}
            row.update({key: frame.iat[day, k] for key, frame in indicators.items()})
            rows.append(row)
    out = pd.DataFrame(rows).fillna(0.0)
    out.index = out["date"].factorize()[0]
    return out


def make_finrl(frames: dict[str, pd.DataFrame]) -> gym.Env:
    module = _finrl_module("meta/env_portfolio_allocation/env_portfolio.py", "finrl_env_portfolio")
    n_assets = len(frames)
    return module.StockPortfolioEnv(
        df=finrl_frame(frames),
        stock_dim=n_assets,
        hmax=100,
        initial_amount=1_000_000,
        transaction_cost_pct=0.001,
        reward_scaling=1e-4,
        state_space=n_assets,
        action_space=n_assets,
        tech_indicator_list=list(INDICATORS),
        lookback=WINDOW,
    )


def _finrl_module(relative: str, name: str) -> Any:
    """A module of FinRL loaded from its file (FinRL's package ``__init__`` imports its whole stack)."""
    spec = importlib.util.find_spec("finrl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("FinRL is not installed: pip install finrl==0.3.7 (the bench extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def make_finrl_eiie(frames: dict[str, pd.DataFrame]) -> Any:
    """FinRL's ``PortfolioOptimizationEnv`` (its EIIE env: ``(features, assets, time_window)`` windows,
    cash first in the action, the transaction-remainder-factor commission). It runs on the
    unmaintained ``gym`` package and needs ``quantstats``: install both in a separate venv, not in the
    test environment (``gym`` 0.26 predates numpy 2)."""
    module = _finrl_module(
        "meta/env_portfolio_optimization/env_portfolio_optimization.py", "finrl_env_portfolio_optimization"
    )
    rows = []
    for name, frame in frames.items():
        part = frame[["close", "high", "low"]].copy()
        part["date"] = frame.index.tz_localize(None).strftime("%Y-%m-%d")
        part["tic"] = name
        rows.append(part)
    df = pd.concat(rows, ignore_index=True)[["date", "tic", "close", "high", "low"]]
    _RESULTS.append(tempfile.TemporaryDirectory())  # its last step writes figures there
    return module.PortfolioOptimizationEnv(
        df,
        initial_amount=1_000_000,
        comission_fee_model="trf",
        comission_fee_pct=0.001,
        features=["close", "high", "low"],
        time_window=WINDOW,
        new_gym_api=True,
        cwd=_RESULTS[-1].name,
    )


#: Folders FinRL's envs may write into, removed when the process ends.
_RESULTS: list[tempfile.TemporaryDirectory] = []


def steps_per_second(env: gym.Env, actions: np.ndarray) -> float:
    """Steps per second over ``actions`` from a fresh reset (the reset is not timed). The episodes
    are longer than a round, so no env ends an episode inside the timing (FinRL's last step writes
    figures to ``results/``)."""
    try:
        env.reset(seed=0)
    except TypeError:  # gym-era reset() without a seed
        env.reset()
    step = env.step
    start = time.perf_counter()
    for action in actions:
        step(action)
    return len(actions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500, help="steps per round")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds; the best of each env counts")
    parser.add_argument("--assets", type=int, nargs="+", default=[10, 50], help="panel sizes")
    parser.add_argument("--slow-steps", type=int, default=50, help="steps per round of PortfolioOptimizationEnv")
    args = parser.parse_args()
    if args.steps > N_BARS - 2 * WINDOW - 100:
        parser.error(f"--steps must leave room in the {N_BARS}-bar panel")

    print(f"{'assets':>7}{'environment':>38}{'steps/s':>12}{'us/step':>10}{'ours / it':>11}")
    for n_assets in args.assets:
        frames = panel(n_assets)
        envs = {"CryptoPortfolio-v0": make_ours(frames), "FinRL StockPortfolioEnv": make_finrl(frames)}
        rng = np.random.default_rng(0)
        logits = rng.normal(size=(args.steps, n_assets + 1)).astype(np.float32)
        actions = {
            "CryptoPortfolio-v0": list(logits),
            "FinRL StockPortfolioEnv": list(logits[:, 1:]),  # FinRL has no cash weight
        }
        try:
            envs["FinRL PortfolioOptimizationEnv"] = make_finrl_eiie(frames)
            # cash first, as ours; fewer steps per round: its step takes milliseconds
            actions["FinRL PortfolioOptimizationEnv"] = list(logits[: args.slow_steps])
        except ImportError as exc:
            print(f"(FinRL PortfolioOptimizationEnv skipped: {exc}; it needs gym and quantstats, see its docstring)")
        best = dict.fromkeys(envs, 0.0)
        for _ in range(args.rounds):
            for name, env in envs.items():
                best[name] = max(best[name], steps_per_second(env, actions[name]))
        ours = best["CryptoPortfolio-v0"]
        for name, rate in best.items():
            print(f"{n_assets:>7}{name:>38}{rate:>12,.0f}{1e6 / rate:>10.1f}{ours / rate:>10.2f}x")
        shape = envs["CryptoPortfolio-v0"].observation_space.shape
        theirs = envs["FinRL StockPortfolioEnv"].observation_space.shape
        print(f"{'':>7}(ours: {shape[0]}-value observations; FinRL: {theirs})")


if __name__ == "__main__":
    main()
