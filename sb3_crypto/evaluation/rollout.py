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
        frequency; profitable days / months; statistics of the fills that closed risk, net of their
        fee) plus the number of fills and the fees paid."""
        import pandas as pd

        closed = [pnl - fee for *_, fee, pnl in self.extra.get("fills", []) if pnl != 0.0]
        equity = pd.Series(self.equity, index=pd.DatetimeIndex(self.timestamps))
        return {
            **metrics.summary(self.returns, self.periods_per_year, trade_pnls=closed, equity=equity),
            "trades": float(self.trades),
            "fees_paid": self.fees_paid,
        }


def predictor(
    policy: PolicyLike, deterministic: bool = True, masks: Callable[[], np.ndarray] | None = None
) -> Callable[[np.ndarray, bool], Any]:
    """``act(obs, episode_start)`` for an SB3 model (recurrent state carried between calls and
    reset at episode starts; action masks from ``masks()`` when given) or a plain callable."""
    if hasattr(policy, "predict"):
        state: Any = None

        def predict(obs: np.ndarray, episode_start: bool) -> Any:
            nonlocal state
            extra = {"action_masks": masks()} if masks is not None else {}
            action, state = policy.predict(
                obs, state=state, episode_start=np.array([episode_start]), deterministic=deterministic, **extra
            )
            return action

        return predict
    return lambda obs, episode_start: policy(obs)


def run_policy(
    policy: PolicyLike, env: gym.Env, *, name: str = "agent", deterministic: bool = True, seed: int = 0
) -> BacktestResult:
    """Run one episode (a whole split when the env has ``episode_length=None``) and record equity."""
    predict = predictor(policy, deterministic)
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
    times = base.market.frame.index
    fills = [(times[fill.bar], *fill) for fill in base.ledger.fills]
    return BacktestResult(
        name=name,
        equity=np.asarray(equity, dtype=np.float64),
        timestamps=timestamps,
        fees_paid=float(info["fees_paid"]),
        trades=int(info["trades"]),
        periods_per_year=float(base.market.periods_per_year),
        extra={"fills": fills},
    )


def constant_exposure(env: gym.Env, exposure: float) -> Callable[[np.ndarray], np.ndarray]:
    """A policy that always targets ``exposure`` (1 = buy-and-hold, 0 = flat)."""
    action = env.unwrapped.action_for_exposure(exposure)
    return lambda obs: action


def random_baseline(make_env: Callable[[], gym.Env], seeds: tuple[int, ...] = (0, 1, 2)) -> BacktestResult:
    """A uniformly random policy (seeded), run once per seed; the curve is the mean across seeds."""
    runs = []
    for seed in seeds:
        env = make_env()
        env.action_space.seed(seed)
        runs.append(run_policy(lambda obs, space=env.action_space: space.sample(), env, name="random", seed=seed))
    first = runs[0]
    return BacktestResult(
        name="random",
        equity=np.mean([run.equity for run in runs], axis=0),
        timestamps=first.timestamps,
        fees_paid=float(np.mean([run.fees_paid for run in runs])),
        trades=round(np.mean([run.trades for run in runs])),
        periods_per_year=first.periods_per_year,
        extra={"seeds": list(seeds)},
    )


def compare_with_baselines(
    policy: PolicyLike,
    make_env: Callable[[], gym.Env],
    *,
    deterministic: bool = True,
    random_seeds: tuple[int, ...] = (0, 1, 2),
) -> list[BacktestResult]:
    """The agent, buy-and-hold, flat and a seeded random policy (mean over ``random_seeds``), each on
    fresh envs from ``make_env``: same split, same costs."""
    results = [run_policy(policy, make_env(), name="agent", deterministic=deterministic)]
    for name, exposure in (("buy_and_hold", 1.0), ("flat", 0.0)):
        env = make_env()
        results.append(run_policy(constant_exposure(env, exposure), env, name=name))
    if random_seeds:
        results.append(random_baseline(make_env, random_seeds))
    return results


#: S2's "production readiness" criteria: (metric, comparison, threshold).
READINESS_CRITERIA: dict[str, tuple[str, float]] = {
    "sharpe": (">", 1.2),
    "max_drawdown": (">", -0.15),
    "alpha": (">", 0.02),
    "win_rate": (">", 0.55),
    "calmar": (">", 0.8),
    "profitable_months": (">=", 0.70),
}


def production_readiness(
    summary: Mapping[str, float], criteria: Mapping[str, tuple[str, float]] | None = None, required: float = 0.8
) -> dict[str, Any]:
    """S2's check: each criterion passes or fails (a missing or nan metric fails); ready when the share
    of passed criteria is at least ``required``."""
    checks = {}
    for name, (operator, threshold) in (criteria or READINESS_CRITERIA).items():
        value = float(summary.get(name, float("nan")))
        passed = bool(value > threshold if operator == ">" else value >= threshold)
        checks[name] = {"value": value, "threshold": f"{operator} {threshold}", "passed": passed}
    share = sum(check["passed"] for check in checks.values()) / len(checks)
    return {"criteria": checks, "passed_share": share, "ready": share >= required}


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, trial_sharpe_variance: float) -> float:
    """Probability that the true Sharpe ratio exceeds the best one expected from ``n_trials`` tries of
    pure noise (Bailey & Lopez de Prado, 2014). Sharpe ratios here are per bar, not annualised.

    :param returns: per-bar returns of the selected strategy.
    :param n_trials: number of configurations tried (the selection it corrects for).
    :param trial_sharpe_variance: variance of the per-bar Sharpe ratios across those trials.
    """
    from statistics import NormalDist

    values = np.asarray(returns, dtype=np.float64)
    if values.size < 3 or n_trials < 1:
        raise ValueError("deflated_sharpe_ratio needs at least 3 returns and 1 trial")
    normal = NormalDist()
    sharpe = values.mean() / values.std(ddof=1)
    centred = values - values.mean()
    skew = np.mean(centred**3) / np.mean(centred**2) ** 1.5
    kurtosis = np.mean(centred**4) / np.mean(centred**2) ** 2
    euler = 0.5772156649015329
    if n_trials == 1:
        expected_max = 0.0
    else:
        expected_max = np.sqrt(trial_sharpe_variance) * (
            (1 - euler) * normal.inv_cdf(1 - 1 / n_trials) + euler * normal.inv_cdf(1 - 1 / (n_trials * np.e))
        )
    denominator = np.sqrt(1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2)
    return float(normal.cdf((sharpe - expected_max) * np.sqrt(values.size - 1) / denominator))


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
    """Load an SB3 / sb3-contrib model; the algorithm is read from an RL Zoo path or the saved policy
    class when not given."""
    from sb3_crypto.predictor import infer_algo
    from sb3_crypto.zoo import ALGOS, install

    install()  # the package's algorithms (rainbow, d3qn, ppo_mask) join RL Zoo's
    path = Path(path)
    if algo is None:
        algo = infer_algo(path)
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {sorted(ALGOS)}")
    return ALGOS[algo].load(path, device="cpu")


def main(argv: list[str] | None = None) -> Any:
    """Command-line entry point: backtest a saved model on a split against the baselines.

    Equity-curve envs give a table of return metrics against buy-and-hold, flat and random;
    ``CryptoFuturesSession-v0`` visits every session once against flat, long/short-and-hold, random
    and S3's supervised baseline; ``CryptoDCA-v0`` compares with S1's four DCA baselines.
    """
    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.utils import configure_threads

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="path to a saved model .zip")
    parser.add_argument("--env", default=None, help="environment id (default: from an RL Zoo model name)")
    parser.add_argument("--algo", default=None, help="algorithm (inferred from an RL Zoo path)")
    parser.add_argument("--data", default=None, help="data file (default: the run's env_kwargs)")
    parser.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    parser.add_argument("--out", default=None, help="folder for metrics.json and equity.csv")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    parser.add_argument(
        "--readiness",
        default=None,
        help='production-readiness criteria as JSON, e.g. \'{"sharpe": [">", 1.5], "max_drawdown": [">", -0.2]}\'',
    )
    args = parser.parse_args(argv)
    configure_threads()

    model_path = Path(args.model)
    if args.env is None:
        from sb3_crypto.registration import ENV_IDS

        args.env = model_path.stem if model_path.stem in ENV_IDS else "CryptoTrading-v0"
    env_kwargs = saved_env_kwargs(model_path)
    if args.data is not None:
        env_kwargs["data"] = args.data
    model = load_model(model_path, args.algo)
    meta = {"model": str(model_path), "env": args.env, "split": args.split, "env_kwargs": env_kwargs}
    if args.env == "CryptoFuturesSession-v0":
        return _backtest_sessions(model, env_kwargs, args, meta)
    if args.env == "CryptoDCA-v0":
        return _backtest_dca(model, env_kwargs, args, meta)
    env_kwargs.update(split=args.split, episode_length=None)
    results = compare_with_baselines(model, lambda: gym.make(args.env, **env_kwargs), deterministic=not args.stochastic)
    first, last = results[0].timestamps[0], results[0].timestamps[-1]
    print(f"Out-of-sample backtest on split {args.split!r}: {first} .. {last} ({len(results[0].equity) - 1} bars)")
    print(format_table(results))
    if args.out:
        criteria = {k: tuple(v) for k, v in json.loads(args.readiness).items()} if args.readiness else None
        write_results(results, Path(args.out), meta, criteria)
    return results


def _backtest_sessions(model: Any, env_kwargs: dict[str, Any], args: argparse.Namespace, meta: dict) -> Any:
    from sb3_contrib import MaskablePPO

    from sb3_crypto.session_backtest import backtest_sessions, format_session_table, write_session_results

    env_kwargs["split"] = args.split
    records, summaries = backtest_sessions(model, env_kwargs, use_masks=isinstance(model, MaskablePPO))
    print(f"Session backtest on split {args.split!r}: every session once, same fee and slippage")
    print(format_session_table(summaries))
    if args.out:
        write_session_results(records, summaries, Path(args.out), meta)
    return summaries


def _backtest_dca(model: Any, env_kwargs: dict[str, Any], args: argparse.Namespace, meta: dict) -> Any:
    from sb3_crypto.envs.dca import evaluate_dca

    results = evaluate_dca(model, **{**env_kwargs, "split": args.split})
    print(f"DCA timing on split {args.split!r}: mean saving against the cycle average price per cycle")
    for name, value in results.items():
        print(f"  {name:<14}{100 * value / env_kwargs.get('reward_scale', 1.0):>8.3f}%")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(
            json.dumps({"meta": {k: str(v) for k, v in meta.items()}, "results": results}, indent=2)
        )
    return results


def trade_log(result: BacktestResult) -> Any:
    """The fills of a run as a DataFrame: time, side, size, fill price, fee, realised PnL."""
    import pandas as pd

    columns = ["time", "bar", "side", "size", "price", "fee", "pnl"]
    frame = pd.DataFrame(result.extra.get("fills", []), columns=columns)
    frame["side"] = frame["side"].map({1: "buy", -1: "sell"})
    return frame.drop(columns="bar")


def plot_equity(results: list[BacktestResult], path: Path) -> Path:
    """Equity of every strategy (normalised to 1) above the agent's drawdown, with its fills marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    agent = results[0]
    times = pd.DatetimeIndex(agent.timestamps)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 1))
    for result in results:
        top.plot(times, result.equity / result.equity[0], label=result.name, lw=1.6 if result is agent else 1.0)
    position = {stamp: k for k, stamp in enumerate(agent.timestamps)}
    for time, _bar, side, *_ in agent.extra.get("fills", []):
        if time in position:
            k = position[time]
            top.scatter(
                times[k],
                agent.equity[k] / agent.equity[0],
                marker="^" if side > 0 else "v",
                color="green" if side > 0 else "red",
                s=12,
                zorder=3,
            )
    top.set_ylabel("equity (start = 1)")
    top.legend(loc="upper left")
    drawdown = agent.equity / np.maximum.accumulate(agent.equity) - 1.0
    bottom.fill_between(times, drawdown, 0.0, color="firebrick", alpha=0.4)
    bottom.set_ylabel("agent drawdown")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_results(
    results: list[BacktestResult],
    out: Path,
    meta: Mapping[str, Any],
    readiness_criteria: Mapping[str, tuple[str, float]] | None = None,
) -> None:
    """Write ``metrics.json`` (every strategy, the readiness check of the agent), ``equity.csv``,
    ``trades.csv`` (the agent's fills) and ``equity.png`` into ``out``."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    summaries = {r.name: r.summary() for r in results}
    benchmark = next((r for r in results if r.name == "buy_and_hold"), None)
    if benchmark is not None:
        alpha, beta = metrics.alpha_beta(results[0].returns, benchmark.returns, results[0].periods_per_year)
        summaries[results[0].name].update(alpha=alpha, beta=beta)
    payload = {
        "meta": {k: str(v) for k, v in meta.items()},
        "results": summaries,
        "production_readiness": production_readiness(summaries[results[0].name], readiness_criteria),
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=float))
    curves = pd.DataFrame({r.name: r.equity for r in results}, index=pd.Index(results[0].timestamps, name="timestamp"))
    curves.to_csv(out / "equity.csv")
    trade_log(results[0]).to_csv(out / "trades.csv", index=False)
    plot_equity(results, out / "equity.png")


if __name__ == "__main__":
    main()
