"""Reward functions of the continuous trading environment.

* ``"log_return"`` (default): ``log(equity_t / equity_{t-1})`` per bar.
* ``"excess"``: the same minus the buy-and-hold log return of the bar (close to close).
* ``"multi"``: reference system S2's weighted sum, its breakdown returned in ``info``.

All are multiplied by the environment's ``reward_scale``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np

from sb3_crypto.data import keywords

REWARD_MODES = ("log_return", "excess", "multi")

#: S2's component weights.
S2_REWARD_WEIGHTS: dict[str, float] = {
    "excess_return": 0.40,
    "risk_adjusted": 0.25,
    "drawdown": 0.15,
    "volatility": 0.10,
    "diversity": 0.05,
    "cost": 0.05,
}


#: Largest single reward weight accepted.
MAX_REWARD_WEIGHT = 1e6
_WEIGHT_CHECKS = {
    name: keywords.check(keywords.real, low=0.0, high=MAX_REWARD_WEIGHT, high_inclusive=True)
    for name in S2_REWARD_WEIGHTS
}


def reward_weights(weights: Mapping[str, float] | None, name: str = "reward_weights") -> dict[str, float]:
    """Every component's weight: S2's for ``None``, else the given ones (numbers in [0, 1e6]) with 0
    for components left out. Unknown component names and weights that are all 0 are refused."""
    if keywords.is_none(weights):
        return dict(S2_REWARD_WEIGHTS)
    given = keywords.options(name, weights, _WEIGHT_CHECKS)
    if not any(given.values()):
        raise ValueError(f"{name} must give at least one component a weight > 0, got {keywords.describe(weights)}")
    return {component: given.get(component, 0.0) for component in S2_REWARD_WEIGHTS}


class MultiComponentReward:
    """S2's multi-component reward. Components (before weighting):

    * ``excess_return``: bar return of equity minus that of buy-and-hold, in percent;
    * ``risk_adjusted``: ``tanh(mean / std)`` of the last ``lookback`` equity returns (Sharpe-like);
    * ``drawdown``: ``-(100 * (drawdown - drawdown_free))**2 / 100`` beyond ``drawdown_free`` (quadratic);
    * ``volatility``: ``-(annualised volatility - vol_free)`` beyond ``vol_free``;
    * ``diversity``: standard deviation of the last ``lookback`` exposures (rewards not freezing);
    * ``cost``: fees of the bar as a percentage of equity, negated.
    """

    def __init__(
        self,
        periods_per_year: float,
        weights: Mapping[str, float] | None = None,
        lookback: int = 10,
        drawdown_free: float = 0.05,
        vol_free: float = 0.30,
    ) -> None:
        self.weights = reward_weights(weights)
        self.sqrt_periods = math.sqrt(periods_per_year)
        self.lookback = lookback
        self.drawdown_free = drawdown_free
        self.vol_free = vol_free
        self.returns: deque[float] = deque(maxlen=lookback)
        self.exposures: deque[float] = deque(maxlen=lookback)
        self.last_components: dict[str, float] = {}

    def reset(self) -> None:
        """Forget the return and exposure history (new episode)."""
        self.returns.clear()
        self.exposures.clear()

    def __call__(
        self,
        equity_return: float,
        benchmark_return: float,
        drawdown: float,
        fee_fraction: float,
        exposure: float,
    ) -> tuple[float, dict[str, float]]:
        """Weighted reward of one bar and its unweighted components."""
        self.returns.append(equity_return)
        self.exposures.append(exposure)
        risk_adjusted = 0.0
        volatility = 0.0
        if len(self.returns) >= 2:
            values = np.fromiter(self.returns, dtype=float)
            std = values.std()
            if std > 1e-12:
                risk_adjusted = math.tanh(values.mean() / std)
            annual_vol = std * self.sqrt_periods
            volatility = -(annual_vol - self.vol_free) if annual_vol > self.vol_free else 0.0
        excess = drawdown - self.drawdown_free
        components = {
            "excess_return": 100.0 * (equity_return - benchmark_return),
            "risk_adjusted": risk_adjusted,
            "drawdown": -((100.0 * excess) ** 2) / 100.0 if excess > 0 else 0.0,
            "volatility": volatility,
            "diversity": float(np.std(np.fromiter(self.exposures, dtype=float))) if len(self.exposures) > 1 else 0.0,
            "cost": -100.0 * fee_fraction,
        }
        total = sum(self.weights[name] * value for name, value in components.items())
        self.last_components = components
        return total, components
