"""Backtest of the portfolio env: the agent against portfolio baselines, every one run through the env.

Every baseline is a rule that gives target weights (cash first) at each decision bar; a
:class:`WeightsPolicy` turns them into the env's action and the env executes them exactly as it
executes the agent's: rebalanced at the next bar's opens through the one accounting core, with the
same fees, slippage, dead band and asset lifetimes. No second cost model exists.

Baselines (:func:`portfolio_baselines`):

* ``equal_weight_hold``: equal weights over the tradable assets at the first decision, then held
  (no trade: the weights drift with the prices);
* ``uniform_crp``: the uniform constant rebalanced portfolio, back to equal weights every bar;
* ``best_asset_hindsight``: all in the asset that did best over the split, held. It is chosen
  **with hindsight** (the split's last prices) and is not a strategy anyone could have run;
* ``olmar``: On-Line Moving Average Reversion (Li & Hoi 2012), computed by the
  ``universal-portfolios`` library (``pip install sb3_crypto[portfolio]``) from the closes up to the
  decision bar only.

:func:`compare_portfolio` runs the agent and them; :func:`write_portfolio_results` reports, beside
the usual metrics: turnover, concentration (HHI, effective number of assets), each asset's
contribution to the PnL, and the weights over time, in files and as one interactive page
(``report.html``, :func:`sb3_crypto.evaluation.reports.portfolio_page`). The backtester
(:mod:`sb3_crypto.evaluation.backtest`, ``python -m sb3_crypto.backtest``) runs both for envs whose
``evaluation`` is ``"portfolio"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto import metrics
from sb3_crypto.evaluation.html import plotly_available
from sb3_crypto.evaluation.plots import equity_png, weights_png
from sb3_crypto.evaluation.reports import REPORT_HTML, ExtraFigures, portfolio_page, trade_log
from sb3_crypto.evaluation.rollout import BacktestResult, PolicyLike, predictor, rollout
from sb3_crypto.files import check_output_dir, claim_output_dir, to_strict_json, write_bytes

#: Baseline name -> what it is (reports list them in this order).
BASELINES = {
    "equal_weight_hold": "equal weights over the tradable assets once, then held",
    "uniform_crp": "uniform constant rebalanced portfolio (equal weights every bar)",
    "best_asset_hindsight": "the split's best asset, chosen with hindsight, held",
    "olmar": "OLMAR (universal-portfolios), closes up to the decision bar",
}


def olps_weights(algo: Any, closes: pd.DataFrame) -> np.ndarray:
    """Weights an online portfolio selection algorithm of ``universal-portfolios`` (an ``Algo``, e.g.
    ``universal.algos.OLMAR()``) holds after each row of ``closes`` (rows: bars, columns: assets, NaN
    where an asset has no price): row ``t`` of the result uses ``closes[: t + 1]`` only.

    The library's ``B`` row ``t`` holds the weights for the period ending on row ``t``, chosen from the
    rows before it; row ``t + 1`` is therefore the portfolio to hold after row ``t``. A copy of the
    last row is appended so that the last row has one too (it does not influence any row's weights).
    """
    if closes.shape[0] < 1 or closes.shape[1] < 1:
        raise ValueError(f"olps_weights: closes must have at least one row and one asset, got {closes.shape}")
    padded = pd.concat([closes, closes.iloc[[-1]]], ignore_index=True)
    with warnings.catch_warnings():
        # universal-portfolios' ratio conversion (for its own result object, unused here) assigns
        # through a chained index, which pandas >= 3 warns about; the weights do not go through it.
        warnings.simplefilter("ignore")
        weights = algo.run(padded, log_progress=False).B.to_numpy(dtype=np.float64)
    return weights[1:]


def olmar(**kwargs: Any) -> Any:
    """``universal.algos.OLMAR(**kwargs)``, with a clear error when the library is missing."""
    try:
        from universal.algos import OLMAR
    except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
        raise ImportError("the OLMAR baseline needs universal-portfolios: pip install 'sb3_crypto[portfolio]'") from exc
    return OLMAR(**kwargs)


# ---------------------------------------------------------------------------------------- baselines
#: ``rule(env, t, current) -> weights``: target weights (cash first) at decision bar ``t``, given the
#: current weights; ``None`` holds the book (no order).
WeightsRule = Callable[[Any, int, np.ndarray], "np.ndarray | None"]


class WeightsPolicy:
    """A policy (``obs -> action``) that plays a :data:`WeightsRule` through a portfolio env: each
    decision's target weights become the env's action (``action_for_weights``), so the env trades
    them exactly as it trades an agent's actions. Holding targets the current weights, which the
    env's dead band turns into no order (with ``dead_band=0`` the float32 action's rounding can
    trade dust)."""

    def __init__(self, env: Any, rule: WeightsRule) -> None:
        self.env = env.unwrapped
        self.rule = rule

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        env = self.env
        start = env.observation_layout.window_dim
        current = np.asarray(obs[start : start + env.n_assets + 1], dtype=np.float64)
        target = self.rule(env, env.current_bar, current)
        if target is None:
            target = current / current.sum() if not env.allow_short else current
        return env.action_for_weights(target)


def _equal(env: Any, t: int) -> np.ndarray:
    """Equal weights over the assets tradable at decision ``t`` (all cash when none is)."""
    tradable = env.tradable_at(t)
    weights = np.zeros(env.n_assets + 1)
    if tradable.any():
        weights[1:][tradable] = 1.0 / tradable.sum()
    else:
        weights[0] = 1.0
    return weights


def _held(first: Callable[[Any, int], np.ndarray]) -> WeightsRule:
    """A rule that sets ``first(env, t)``'s weights at its first decision, then holds them."""
    started = False

    def rule(env: Any, t: int, current: np.ndarray) -> np.ndarray | None:
        nonlocal started
        if started:
            return None
        started = True
        return first(env, t)

    return rule


def equal_weight_hold() -> WeightsRule:
    """Equal weights over the tradable assets at the first decision, then held."""
    return _held(_equal)


def uniform_crp() -> WeightsRule:
    """The uniform constant rebalanced portfolio: equal weights over the tradable assets every bar."""
    return lambda env, t, current: _equal(env, t)


def best_asset_hindsight(env: Any) -> tuple[WeightsRule, str]:
    """All in the asset with the best return over ``env``'s episode (from the first decision's close
    to the last bar's), held: **hindsight**, it reads the split's last prices. Returns the rule and
    the asset's name."""
    base = env.unwrapped
    first, last = base.first_bar, base.last_bar + 1
    mark = base.market.mark
    tradable = base.tradable_at(first)
    if not tradable.any():
        raise ValueError(f"best_asset_hindsight: no asset is tradable at the split's first decision (bar {first})")
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = np.where(tradable & (mark[first] > 0), mark[last] / mark[first], -np.inf)
    best = int(np.argmax(growth))

    def all_in(env: Any, t: int) -> np.ndarray:
        weights = np.zeros(env.n_assets + 1)
        weights[1 + best] = 1.0
        return weights

    return _held(all_in), base.assets[best]


def olps_rule(env: Any, algo: Any) -> WeightsRule:
    """An online portfolio selection algorithm of ``universal-portfolios`` (e.g. :func:`olmar`) over
    ``env``'s episode: started at the first decision bar with the closes from there on, its weights
    at decision ``t`` use the closes up to ``t`` only (:func:`olps_weights`); assets that are not
    tradable at ``t`` get weight 0 and the rest is scaled up (no cash: the algorithms are fully
    invested)."""
    base = env.unwrapped
    first, last = base.first_bar, base.last_bar
    closes = pd.DataFrame(base.market.close[first : last + 1], columns=list(base.assets))
    table = olps_weights(algo, closes)

    def rule(env: Any, t: int, current: np.ndarray) -> np.ndarray:
        weights = np.zeros(env.n_assets + 1)
        row = np.where(env.tradable_at(t), np.nan_to_num(table[t - first]), 0.0)
        total = row.sum()
        if total <= 0:
            return _equal(env, t)
        weights[1:] = row / total
        return weights

    return rule


# ---------------------------------------------------------------------------------------- running
def run_portfolio_policy(
    policy: PolicyLike, env: Any, *, name: str = "agent", deterministic: bool = True, seed: int = 0
) -> BacktestResult:
    """One pass of ``policy`` over ``env`` (``episode_length=None``: the whole split), recording what
    :class:`~sb3_crypto.evaluation.rollout.BacktestResult` records plus, in ``extra``: ``weights``
    (after the reset and after every step, cash first), ``turnover`` (per step), ``asset_pnl``
    (per asset, summed over the steps: its contribution to the PnL, fees included), ``assets``,
    ``fill_assets`` (the asset of every fill) and ``benchmark_equity`` (the env's equal-weight
    buy-and-hold).

    A pass that ruined the account (equity at or below 0 ends the episode) is extended flat to the
    split's last bar, nothing held, so every strategy's curve covers the same bars;
    ``extra["ended"]`` then names the bar it ended on."""
    episode = rollout(env, predictor(policy, deterministic), seed=seed)[0]
    base = env.unwrapped
    infos = list(episode.infos)
    times = base.market.times
    ledger_fills = base.ledger.fills
    extra: dict[str, Any] = {}
    end = int(infos[0]["bar"]) + base.n_decisions
    if episode.terminated and int(infos[-1]["bar"]) < end:
        last = infos[-1]
        extra["ended"] = {"bar": int(last["bar"])}
        flat = {**last, "turnover": 0.0, "asset_pnl": np.zeros(base.n_assets), "weights": np.zeros(base.n_assets + 1)}
        infos += [{**flat, "bar": bar, "timestamp": times[bar]} for bar in range(int(last["bar"]) + 1, end + 1)]
    steps = infos[1:]
    return BacktestResult(
        name=name,
        equity=np.asarray([info["equity"] for info in infos], dtype=np.float64),
        timestamps=[info["timestamp"] for info in infos],
        fees_paid=float(infos[-1]["fees_paid"]),
        trades=int(infos[-1]["trades"]),
        periods_per_year=float(base.market.periods_per_year),
        extra={
            "fills": [(times[f.bar], f.bar, f.side, f.units, f.price, f.fee, f.realized_pnl) for f in ledger_fills],
            "fill_assets": [base.assets[f.asset] for f in ledger_fills],
            "assets": list(base.assets),
            "weights": np.asarray([info["weights"] for info in infos], dtype=np.float64),
            "turnover": np.asarray([info["turnover"] for info in steps], dtype=np.float64),
            "asset_pnl": np.sum([info["asset_pnl"] for info in steps], axis=0) if steps else np.zeros(base.n_assets),
            "benchmark_equity": np.asarray([info["benchmark_equity"] for info in infos], dtype=np.float64),
            **extra,
        },
    )


def portfolio_baselines(
    make_env: Callable[[], Any], *, olmar_kwargs: Mapping[str, Any] | None = None
) -> list[BacktestResult]:
    """Every baseline of :data:`BASELINES`, each on a fresh env from ``make_env`` (same split, same
    costs, run through the env). ``olmar_kwargs`` go to ``universal.algos.OLMAR``."""
    results = []
    for name, rule in (("equal_weight_hold", equal_weight_hold()), ("uniform_crp", uniform_crp())):
        env = make_env()
        results.append(run_portfolio_policy(WeightsPolicy(env, rule), env, name=name))
    env = make_env()
    rule, asset = best_asset_hindsight(env)
    result = run_portfolio_policy(WeightsPolicy(env, rule), env, name="best_asset_hindsight")
    result.extra["asset"] = asset
    results.append(result)
    env = make_env()
    results.append(
        run_portfolio_policy(WeightsPolicy(env, olps_rule(env, olmar(**(olmar_kwargs or {})))), env, name="olmar")
    )
    return results


def compare_portfolio(
    policy: PolicyLike, make_env: Callable[[], Any], *, deterministic: bool = True, baselines: bool = True
) -> list[BacktestResult]:
    """The agent, then every baseline (:func:`portfolio_baselines`), each on a fresh env from
    ``make_env``: same split, same costs, one accounting core."""
    env = make_env()
    results = [run_portfolio_policy(policy, env, name="agent", deterministic=deterministic)]
    if baselines:
        results += portfolio_baselines(make_env)
    return results


# ---------------------------------------------------------------------------------------- reports
#: The files :func:`write_portfolio_results` writes.
PORTFOLIO_RESULT_FILES = (
    "metrics.json",
    "equity.csv",
    "weights.csv",
    "asset_pnl.csv",
    "trades.csv",
    "equity.png",
    "weights.png",
    REPORT_HTML,
)


def portfolio_summary(result: BacktestResult) -> dict[str, float]:
    """:meth:`BacktestResult.summary` plus the portfolio's ``turnover`` (mean traded value / equity
    per bar), ``annual_turnover``, concentration (``hhi``, ``effective_assets``, ``max_weight``,
    ``invested``: :func:`sb3_crypto.metrics.portfolio_concentration` over the weights held after
    every step) and ``deflated_sharpe`` (one trial: the probability that the true Sharpe ratio is
    above 0; :func:`sb3_crypto.metrics.deflated_sharpe_ratio` corrects for more trials)."""
    out = result.summary()
    turnover = result.extra["turnover"]
    out["turnover"] = float(turnover.mean()) if turnover.size else float("nan")
    out["annual_turnover"] = out["turnover"] * result.periods_per_year
    out.update(metrics.portfolio_concentration(result.extra["weights"][1:, 1:]))
    returns = result.returns
    enough = returns.size >= 3 and np.std(returns) > 0
    out["deflated_sharpe"] = metrics.deflated_sharpe_ratio(returns, 1, 0.0) if enough else float("nan")
    return out


def format_portfolio_table(results: list[BacktestResult]) -> str:
    """Plain-text comparison: returns, Sharpe, drawdown, turnover, effective assets, fees."""
    header = (
        f"{'strategy':<22}{'total ret':>11}{'annual ret':>12}{'sharpe':>9}{'max dd':>9}"
        f"{'turnover':>10}{'eff. N':>8}{'fees':>11}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        s = portfolio_summary(result)
        lines.append(
            f"{result.name:<22}{100 * s['total_return']:>10.2f}%{100 * s['annual_return']:>11.2f}%"
            f"{s['sharpe']:>9.2f}{100 * s['max_drawdown']:>8.2f}%{s['turnover']:>10.3f}"
            f"{s['effective_assets']:>8.2f}{s['fees_paid']:>11.2f}"
        )
    return "\n".join(lines)


def portfolio_report(
    results: list[BacktestResult],
    meta: Mapping[str, Any],
    readiness_criteria: Mapping[str, tuple[str, float]] | None = None,
) -> dict[str, Any]:
    """The content of ``metrics.json``: every strategy's :func:`portfolio_summary` (the agent's with
    alpha / beta against ``equal_weight_hold``), each asset's PnL contribution per strategy, the
    hindsight asset, and the agent's production-readiness check."""
    summaries = {r.name: portfolio_summary(r) for r in results}
    agent = results[0]
    benchmark = next((r for r in results if r.name == "equal_weight_hold"), None)
    if benchmark is not None:
        alpha, beta = metrics.alpha_beta(agent.returns, benchmark.returns, agent.periods_per_year)
        summaries[agent.name].update(alpha=alpha, beta=beta)
    contributions = {r.name: dict(zip(r.extra["assets"], map(float, r.extra["asset_pnl"]))) for r in results}
    hindsight = next((r.extra.get("asset") for r in results if r.name == "best_asset_hindsight"), None)
    return {
        "meta": {k: str(v) for k, v in meta.items()},
        "baselines": {name: BASELINES[name] for name in summaries if name in BASELINES},
        "hindsight_asset": hindsight,
        "results": summaries,
        "asset_pnl": contributions,
        "production_readiness": metrics.production_readiness(summaries[agent.name], readiness_criteria),
    }


def write_portfolio_results(
    results: list[BacktestResult],
    out: Path,
    meta: Mapping[str, Any],
    readiness_criteria: Mapping[str, tuple[str, float]] | None = None,
    *,
    overwrite: bool = False,
    html: bool | None = None,
    extra_figures: ExtraFigures = (),
) -> None:
    """Write :data:`PORTFOLIO_RESULT_FILES` into ``out``: ``metrics.json`` (:func:`portfolio_report`),
    ``equity.csv`` (every strategy), ``weights.csv`` (the agent's weights after every step),
    ``asset_pnl.csv`` (each asset's PnL contribution per strategy), ``trades.csv`` (the agent's fills
    with their asset), ``equity.png`` (equity against every baseline), ``weights.png`` (the
    agent's stacked weights) and ``report.html`` (:func:`~sb3_crypto.evaluation.reports.portfolio_page`;
    written when plotly is installed, or as ``html`` says; ``extra_figures`` are added to it).
    Refuses (``OutputExistsError``) an ``out`` that holds any of them, unless ``overwrite``; every
    file is computed first, then written atomically."""
    check_output_dir(out, PORTFOLIO_RESULT_FILES, overwrite=overwrite)
    agent = results[0]
    index = pd.Index(agent.timestamps, name="timestamp")
    names = ["cash", *agent.extra["assets"]]
    curves = pd.DataFrame({r.name: r.equity for r in results}, index=index)
    weights = pd.DataFrame(agent.extra["weights"], index=index, columns=names)
    pnl = pd.DataFrame({r.name: r.extra["asset_pnl"] for r in results}, index=pd.Index(names[1:], name="asset"))
    trades = trade_log(agent)
    trades.insert(1, "asset", agent.extra["fill_assets"])
    plain = [BacktestResult(r.name, r.equity, r.timestamps, r.fees_paid, r.trades, r.periods_per_year) for r in results]
    payload = portfolio_report(results, meta, readiness_criteria)
    files = {
        "metrics.json": (to_strict_json(payload, default=float) + "\n").encode(),
        "equity.csv": curves.to_csv().encode(),
        "weights.csv": weights.to_csv().encode(),
        "asset_pnl.csv": pnl.to_csv().encode(),
        "trades.csv": trades.to_csv(index=False).encode(),
        "equity.png": equity_png(plain),  # no fill markers: a portfolio fills several assets a bar
        "weights.png": weights_png(agent.timestamps, agent.extra["weights"], names, agent.name),
    }
    if plotly_available() if html is None else html:
        page = portfolio_page(
            results,
            meta,
            payload["results"],
            payload["asset_pnl"],
            payload["production_readiness"],
            baselines=payload["baselines"],
            extra_figures=extra_figures,
        )
        files[REPORT_HTML] = page.render().encode()
    out = Path(out)
    claim_output_dir(out, files, overwrite=overwrite)
    for name, data in files.items():
        write_bytes(out / name, data)
