"""Run a trained policy over a whole split and compare it with baselines under the same costs.

``python -m sb3_crypto.backtest --model logs/sac/CryptoTrading-v0_1/CryptoTrading-v0.zip`` evaluates
an RL Zoo run on the untouched ``test`` split (the environment settings are read from the run's
saved ``config.yml``) and prints the agent beside buy-and-hold and staying flat.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_crypto import metrics

PolicyLike = Any  # an SB3 model (has ``predict``) or a callable ``obs -> action``


@dataclass
class BacktestResult:
    """Equity curve and costs of one pass over a split."""

    name: str
    equity: np.ndarray  #: equity after reset, then after every step
    timestamps: list  #: timestamp of the latest bar each equity value is marked on
    fees_paid: float
    trades: int
    periods_per_year: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def returns(self) -> np.ndarray:
        """Per-bar simple returns of the equity curve."""
        return metrics.returns_from_equity(self.equity)

    def summary(self) -> dict[str, float]:
        """:func:`sb3_crypto.metrics.summary` of the curve (fractions, annualised with the bar
        frequency) plus the number of fills and the fees paid."""
        return {
            **metrics.summary(self.returns, self.periods_per_year),
            "trades": float(self.trades),
            "fees_paid": self.fees_paid,
        }


def _predictor(policy: PolicyLike, deterministic: bool) -> Callable[[np.ndarray, bool], np.ndarray]:
    if hasattr(policy, "predict"):
        state: Any = None

        def predict(obs: np.ndarray, episode_start: bool) -> np.ndarray:
            nonlocal state
            action, state = policy.predict(
                obs, state=state, episode_start=np.array([episode_start]), deterministic=deterministic
            )
            return action

        return predict
    return lambda obs, episode_start: policy(obs)


def run_policy(
    policy: PolicyLike, env: gym.Env, *, name: str = "agent", deterministic: bool = True, seed: int = 0
) -> BacktestResult:
    """Run one episode (a whole split when the env has ``episode_length=None``) and record equity."""
    predict = _predictor(policy, deterministic)
    obs, info = env.reset(seed=seed)
    equity = [info["equity"]]
    timestamps = [info["timestamp"]]
    episode_start = True
    while True:
        action = predict(obs, episode_start)
        episode_start = False
        obs, _, terminated, truncated, info = env.step(action)
        equity.append(info["equity"])
        timestamps.append(info["timestamp"])
        if terminated or truncated:
            break
    base = env.unwrapped
    return BacktestResult(
        name=name,
        equity=np.asarray(equity, dtype=np.float64),
        timestamps=timestamps,
        fees_paid=float(info["fees_paid"]),
        trades=int(info["trades"]),
        periods_per_year=float(base.market.periods_per_year),
    )


def constant_exposure(env: gym.Env, exposure: float) -> Callable[[np.ndarray], np.ndarray]:
    """A policy that always targets ``exposure`` (1 = buy-and-hold, 0 = flat)."""
    action = env.unwrapped.action_for_exposure(exposure)
    return lambda obs: action


def compare_with_baselines(
    policy: PolicyLike, make_env: Callable[[], gym.Env], *, deterministic: bool = True
) -> list[BacktestResult]:
    """The agent, buy-and-hold and flat, each on a fresh env from ``make_env`` (same split, same costs)."""
    results = [run_policy(policy, make_env(), name="agent", deterministic=deterministic)]
    for name, exposure in (("buy_and_hold", 1.0), ("flat", 0.0)):
        env = make_env()
        results.append(run_policy(constant_exposure(env, exposure), env, name=name))
    return results


def format_table(results: list[BacktestResult]) -> str:
    """A plain-text comparison table (percentages for returns and drawdown)."""
    header = f"{'strategy':<14}{'total ret':>11}{'annual ret':>12}{'sharpe':>9}{'max dd':>9}{'trades':>8}{'fees':>11}"
    lines = [header, "-" * len(header)]
    for result in results:
        s = result.summary()
        lines.append(
            f"{result.name:<14}{100 * s['total_return']:>10.2f}%{100 * s['annual_return']:>11.2f}%"
            f"{s['sharpe']:>9.2f}{100 * s['max_drawdown']:>8.2f}%{int(s['trades']):>8d}{s['fees_paid']:>11.2f}"
        )
    return "\n".join(lines)


def saved_env_kwargs(model_path: Path) -> dict[str, Any]:
    """``env_kwargs`` from an RL Zoo run folder's ``config.yml`` next to the model, if there is one."""
    import yaml

    for folder in (model_path.parent / model_path.stem, model_path.parent):
        config = folder / "config.yml"
        if config.is_file():
            with open(config) as handle:
                # RL Zoo writes an OrderedDict as a list of pairs.
                loaded = yaml.load(handle, Loader=yaml.UnsafeLoader)
            entries = dict(loaded) if loaded else {}
            kwargs = entries.get("env_kwargs") or {}
            return dict(kwargs)
    return {}


def load_model(path: str | Path, algo: str | None = None) -> Any:
    """Load an SB3 / sb3-contrib model; the algorithm is read from an RL Zoo path when not given."""
    from sb3_crypto.zoo import ALGOS

    path = Path(path)
    if algo is None:
        candidates = [part for part in path.parts if part in ALGOS]
        if not candidates:
            raise ValueError(f"cannot tell the algorithm of {path}; pass --algo (one of {sorted(ALGOS)})")
        algo = candidates[-1]
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {sorted(ALGOS)}")
    return ALGOS[algo].load(path, device="cpu")


def main(argv: list[str] | None = None) -> list[BacktestResult]:
    """Command-line entry point: backtest a saved model on a split against the baselines."""
    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.utils import configure_threads

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="path to a saved model .zip")
    parser.add_argument("--env", default="CryptoTrading-v0", help="environment id")
    parser.add_argument("--algo", default=None, help="algorithm (inferred from an RL Zoo path)")
    parser.add_argument("--data", default=None, help="data file (default: the run's env_kwargs)")
    parser.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    parser.add_argument("--out", default=None, help="folder for metrics.json and equity.csv")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    args = parser.parse_args(argv)
    configure_threads()

    model_path = Path(args.model)
    env_kwargs = saved_env_kwargs(model_path)
    if args.data is not None:
        env_kwargs["data"] = args.data
    env_kwargs.update(split=args.split, episode_length=None)
    model = load_model(model_path, args.algo)
    results = compare_with_baselines(model, lambda: gym.make(args.env, **env_kwargs), deterministic=not args.stochastic)
    first, last = results[0].timestamps[0], results[0].timestamps[-1]
    print(f"Out-of-sample backtest on split {args.split!r}: {first} .. {last} ({len(results[0].equity) - 1} bars)")
    print(format_table(results))
    if args.out:
        write_results(results, Path(args.out), {"model": str(model_path), "env": args.env, "env_kwargs": env_kwargs})
    return results


def write_results(results: list[BacktestResult], out: Path, meta: Mapping[str, Any]) -> None:
    """Write ``metrics.json`` (all strategies) and ``equity.csv`` (all curves) into ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": {k: str(v) for k, v in meta.items()},
        "results": {r.name: r.summary() for r in results},
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))
    curves = pd.DataFrame({r.name: r.equity for r in results}, index=pd.Index(results[0].timestamps, name="timestamp"))
    curves.to_csv(out / "equity.csv")


if __name__ == "__main__":
    main()
