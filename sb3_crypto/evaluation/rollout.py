"""The one rollout loop: run a policy in an env and record what happened.

Everything that runs a policy through an env goes through :func:`rollout`: the backtester
(:func:`run_policy`), the session and DCA evaluations, the risk callbacks, the export's recording
of observations and the supervised session baseline. A policy is anything :func:`predictor` turns
into ``act(obs, episode_start) -> action``: an SB3 model (recurrent state carried within an
episode, action masks from the env when asked) or a plain callable ``obs -> action``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_crypto import metrics

PolicyLike = Any  # an SB3 model (has ``predict``) or a callable ``obs -> action``
Act = Callable[[np.ndarray, bool], Any]


def predictor(policy: PolicyLike, deterministic: bool = True, masks: Callable[[], np.ndarray] | None = None) -> Act:
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


@dataclass
class Episode:
    """One episode of a rollout: the info after ``reset`` and after every step, the actions, rewards
    and (when recorded) the observations the actions were chosen on."""

    infos: list[dict[str, Any]]
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    observations: list[np.ndarray] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False

    @property
    def final_info(self) -> dict[str, Any]:
        """The info of the last step (of ``reset`` when no step was taken)."""
        return self.infos[-1]

    @property
    def done(self) -> bool:
        """Whether the episode ended (rather than the step budget running out)."""
        return self.terminated or self.truncated


def rollout(
    env: gym.Env,
    act: Act,
    *,
    episodes: int | None = 1,
    max_steps: int | None = None,
    seed: int | None = None,
    record_observations: bool = False,
    on_episode_end: Callable[[gym.Env, Episode], None] | None = None,
) -> list[Episode]:
    """Run ``act`` in ``env`` for ``episodes`` episodes, or until ``max_steps`` steps in all
    (resetting after every episode); ``seed`` seeds the first reset only.

    :param on_episode_end: called with the env and the finished episode before the next reset (to
        read state the env keeps per episode, such as its ledger).
    """
    if episodes is None and max_steps is None:
        raise ValueError("rollout needs a number of episodes or of steps")
    done: list[Episode] = []
    steps = 0
    obs, info = env.reset(seed=seed)
    episode = Episode([info])
    while (episodes is None or len(done) < episodes) and (max_steps is None or steps < max_steps):
        if record_observations:
            episode.observations.append(obs)
        action = act(obs, not episode.actions)
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        episode.actions.append(action)
        episode.rewards.append(float(reward))
        episode.infos.append(info)
        if terminated or truncated:
            episode.terminated, episode.truncated = bool(terminated), bool(truncated)
            if on_episode_end is not None:
                on_episode_end(env, episode)
            done.append(episode)
            if (episodes is not None and len(done) >= episodes) or (max_steps is not None and steps >= max_steps):
                return done
            obs, info = env.reset()
            episode = Episode([info])
    if episode.actions:
        done.append(episode)  # cut short by max_steps
    return done


def closed_trade_pnls(fills: Iterable[Sequence[Any]]) -> list[float]:
    """Net PnL (realised PnL minus the fee) of every fill that closed risk. Each fill ends with its
    fee and realised PnL, as :class:`~sb3_crypto.envs.ledger.Fill` does."""
    return [pnl - fee for *_, fee, pnl in fills if pnl != 0.0]


@dataclass
class BacktestResult:
    """Equity curve and costs of one pass over a split."""

    name: str
    equity: np.ndarray  #: equity after reset, then after every step
    timestamps: list  #: timestamp of the latest bar each equity value is marked on
    fees_paid: float
    trades: int  #: executed orders (fills); reported as ``fills``
    periods_per_year: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def returns(self) -> np.ndarray:
        """Per-bar simple returns of the equity curve."""
        return metrics.returns_from_equity(self.equity)

    def closed_trade_pnls(self) -> list[float]:
        """Net PnL of every fill that closed risk (see :func:`closed_trade_pnls`)."""
        return closed_trade_pnls(self.extra.get("fills", []))

    def summary(self) -> dict[str, float]:
        """:func:`sb3_crypto.metrics.summary` of the curve (fractions, annualised with the bar
        frequency; profitable days / months; statistics of the round trips, i.e. the fills that
        closed risk, net of their fee: ``round_trips``, ``win_rate``, ...) plus ``fills`` (every
        executed order) and the fees paid."""
        import pandas as pd

        closed = self.closed_trade_pnls()
        equity = pd.Series(self.equity, index=pd.DatetimeIndex(self.timestamps))
        return {
            **metrics.summary(self.returns, self.periods_per_year, trade_pnls=closed, equity=equity),
            "fills": float(self.trades),
            "fees_paid": self.fees_paid,
        }


def run_policy(
    policy: PolicyLike, env: gym.Env, *, name: str = "agent", deterministic: bool = True, seed: int = 0
) -> BacktestResult:
    """Run one episode (a whole split when the env has ``episode_length=None``) and record equity."""
    episode = rollout(env, predictor(policy, deterministic), seed=seed)[0]
    info = episode.final_info
    base = env.unwrapped
    times = base.market.frame.index
    # (time, bar, side, units, price, fee, realised PnL): the fields up to the PnL, which
    # closed_trade_pnls and the trade log read last (a portfolio's fills also carry their asset).
    fills = [(times[fill.bar], *fill[:6]) for fill in base.ledger.fills]
    return BacktestResult(
        name=name,
        equity=np.asarray([step["equity"] for step in episode.infos], dtype=np.float64),
        timestamps=[step["timestamp"] for step in episode.infos],
        fees_paid=float(info["fees_paid"]),
        trades=int(info["trades"]),
        periods_per_year=float(base.market.periods_per_year),
        extra={"fills": fills},
    )
