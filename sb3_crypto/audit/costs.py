"""The cost sweep: the trained agent re-run on the test split with its fees and slippage scaled.

At each multiple ``m`` of the run's costs (``fee``/``commission`` and ``slippage`` times ``m``) the
agent walks the test split once with deterministic actions. The sweep gives the **PnL before costs**
(``m = 0``), the **break-even cost** (the multiple, and the fee it means, where PnL crosses zero),
and how the agent trades at the run's own costs: fills, **turnover** (traded notional over mean
equity, in all and per bar), mean **holding period** (bars a position of one sign is held), time in
the market and fees paid as a share of the starting capital. When the agent earns before costs and
loses after them, :func:`cost_sweep` names that **fee churn** in its findings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_crypto import metrics
from sb3_crypto.audit.stats import break_even_multiple
from sb3_crypto.envs.registration import env_class
from sb3_crypto.evaluation.rollout import PolicyLike, predictor, rollout

#: Env keywords that are trading costs (scaled together by the sweep).
COST_KEYWORDS = ("fee", "commission", "slippage")
#: Default multiples of the run's costs.
DEFAULT_MULTIPLES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)


def run_costs(env_id: str, env_kwargs: Mapping[str, Any]) -> dict[str, float]:
    """The cost keywords of ``env_id`` and their values (the run's, else the env's defaults)."""
    cls = env_class(env_id)
    defaults: dict[str, Any] = {}
    if cls is not None:
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for name, parameter in inspect.signature(init).parameters.items():
                if name in COST_KEYWORDS and name not in defaults and parameter.default is not inspect.Parameter.empty:
                    defaults[name] = parameter.default
    return {name: float(env_kwargs.get(name, value)) for name, value in defaults.items()}


def holding_periods(positions: Sequence[float]) -> list[int]:
    """Lengths (bars) of the runs of a non-zero position of one sign."""
    signs = np.sign(np.asarray(positions, dtype=np.float64))
    runs: list[int] = []
    length = 0
    previous = 0.0
    for sign in signs:
        if sign != 0 and sign == previous:
            length += 1
        else:
            if length:
                runs.append(length)
            length = 1 if sign != 0 else 0
        previous = sign
    if length:
        runs.append(length)
    return runs


def trade_record(policy: PolicyLike, env_id: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """One deterministic pass over the test split: returns, PnL, Sharpe, fills, turnover, holding."""
    env = gym.make(env_id, **{**env_kwargs, "split": "test", "episode_length": None})
    try:
        episode = rollout(env, predictor(policy, True), seed=0)[0]
        base = env.unwrapped
        equity = np.asarray([step["equity"] for step in episode.infos], dtype=np.float64)
        positions = [float(step.get("position", 0.0)) for step in episode.infos[1:]]
        fills = list(getattr(getattr(base, "ledger", None), "fills", []))
        notional = float(sum(fill.units * fill.price for fill in fills))
        per_year = float(base.market.periods_per_year)
    finally:
        env.close()
    returns = metrics.returns_from_equity(equity)
    runs = holding_periods(positions)
    mean_equity = float(equity.mean())
    bars = max(len(returns), 1)
    return {
        "total_return": metrics.total_return(returns),
        "sharpe": metrics.sharpe_ratio(returns, per_year),
        "fills": len(fills),
        "fees_paid": float(episode.final_info.get("fees_paid", 0.0)),
        "fees_share_of_capital": float(episode.final_info.get("fees_paid", 0.0)) / float(equity[0]),
        "turnover": notional / mean_equity if mean_equity > 0 else float("nan"),
        "turnover_per_bar": notional / mean_equity / bars if mean_equity > 0 else float("nan"),
        "mean_holding_bars": float(np.mean(runs)) if runs else 0.0,
        "time_in_market": float(np.mean(np.asarray(positions) != 0)) if positions else 0.0,
        "bars": len(returns),
        "periods_per_year": per_year,
        "returns": returns,
    }


def cost_sweep(
    policy: PolicyLike,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    multiples: Sequence[float] = DEFAULT_MULTIPLES,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Re-run ``policy`` on the test split at each multiple of the run's costs (``1.0`` is always
    included); returns the sweep, the break-even point and the findings (see the module docstring)."""
    costs = run_costs(env_id, env_kwargs)
    grid = sorted({float(m) for m in multiples} | {0.0, 1.0})
    rows = []
    at_cost: dict[str, Any] = {}
    gross: dict[str, Any] = {}
    for multiple in grid:
        scaled = {name: value * multiple for name, value in costs.items()}
        record = trade_record(policy, env_id, {**env_kwargs, **scaled})
        if multiple == 1.0:
            at_cost = record
        if multiple == 0.0:
            gross = record
        rows.append({"multiple": multiple, **scaled, **{k: v for k, v in record.items() if k != "returns"}})
        if progress is not None:
            progress(multiple)
    pnl = [row["total_return"] for row in rows]
    crossing = break_even_multiple(grid, pnl)
    fee_name = next((name for name in ("fee", "commission") if name in costs), None)
    break_even_fee = (
        None if crossing is None or fee_name is None else crossing * costs[fee_name]
    )  # with slippage scaled alike
    findings = churn_findings(gross, at_cost, crossing, costs)
    return {
        "costs": costs,
        "sweep": rows,
        "pnl_before_costs": gross["total_return"],
        "pnl_after_costs": at_cost["total_return"],
        "sharpe_before_costs": gross["sharpe"],
        "break_even_multiple": crossing,
        "break_even_fee": break_even_fee,
        "fee_keyword": fee_name,
        "fills": at_cost["fills"],
        "fees_share_of_capital": at_cost["fees_share_of_capital"],
        "turnover": at_cost["turnover"],
        "turnover_per_bar": at_cost["turnover_per_bar"],
        "mean_holding_bars": at_cost["mean_holding_bars"],
        "time_in_market": at_cost["time_in_market"],
        "fee_churn": bool(findings["fee_churn"]),
        "findings": findings["text"],
        "returns": at_cost["returns"],
        "periods_per_year": at_cost["periods_per_year"],
    }


def churn_findings(
    gross: Mapping[str, Any], net: Mapping[str, Any], crossing: float | None, costs: Mapping[str, float]
) -> dict[str, Any]:
    """Plain-language findings of a sweep; ``fee_churn`` when costs turn a gain before costs into a loss."""
    text = []
    before, after = gross["total_return"], net["total_return"]
    # Churn: costs turn a gain into a loss, or take more than the agent loses before them.
    churn = not after > 0 and (before > 0 or (before - after) > abs(before))
    cost_text = ", ".join(f"{name} {value:.4%}" for name, value in costs.items())
    if not net["fills"] and not gross["fills"]:
        return {"fee_churn": False, "text": ["the agent never trades on the test split (0 fills): it stays flat"]}
    if churn:
        if before > 0:
            change = f"makes {before:+.1%} before costs but {after:+.1%} after them"
        else:
            change = f"loses only {-before:.1%} before costs but {-after:.1%} after them"
        text.append(
            f"fee churn: the agent {change} ({cost_text}); "
            f"it trades {net['fills']} times with a turnover of {net['turnover']:.1f}x its capital "
            f"({net['turnover_per_bar']:.3f} per bar), holds a position {net['mean_holding_bars']:.1f} bars on "
            f"average and pays fees of {net['fees_share_of_capital']:.1%} of its starting capital"
        )
        if crossing is not None and before > 0:
            text.append(f"it breaks even at {crossing:.2f}x the run's costs")
    elif before > 0:
        if crossing is None:
            text.append(f"costs do not erase the gain: {before:+.1%} before costs, {after:+.1%} after")
        else:
            text.append(
                f"the gain of {after:+.1%} after costs ({before:+.1%} before) survives up to {crossing:.2f}x the "
                "run's costs"
            )
    else:
        text.append(f"no gain even before costs ({before:+.1%}): costs are not what the agent lacks")
    return {"fee_churn": churn, "text": text}


__all__ = ["COST_KEYWORDS", "DEFAULT_MULTIPLES", "churn_findings", "cost_sweep", "holding_periods", "run_costs"]
