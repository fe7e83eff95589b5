"""Training callbacks: risk metrics on a validation split (TensorBoard), best-model saving, early stopping.

Both callbacks work from RL Zoo YAML (``callback:`` entries with keyword arguments)::

    callback:
      - sb3_crypto.evaluation.callbacks.RiskMetricsCallback:
          eval_freq: 5000
          metric: sharpe
          best_model_save_path: logs/best_by_sharpe
      - sb3_crypto.evaluation.callbacks.EarlyStoppingCallback:
          eval_freq: 5000
          metric: sortino
          patience: 5
          min_delta: 0.05

Evaluation runs on the **validation split** of the training environment's own settings (read from
the env's spec), walking it once with deterministic actions: the whole split for the equity-curve
environments (``CryptoTrading-v0``, ``CryptoSpot-v0``), every session once for
``CryptoFuturesSession-v0`` (there ``sharpe`` / ``sortino`` are per session, not annualised).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback

from sb3_crypto import metrics
from sb3_crypto.envs.registration import env_class, evaluation_kwargs
from sb3_crypto.evaluation.rollout import run_policy
from sb3_crypto.evaluation.sessions import evaluate_sessions
from sb3_crypto.files import save_model

#: What the risk callbacks can measure (an env class's ``evaluation``).
MEASURABLE = ("equity_curve", "sessions")


def validation_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The training env's kwargs moved to the validation split (as RL Zoo's evaluation env gets
    them), walked whole (or each session once)."""
    return evaluation_kwargs(env_id, env_kwargs, whole_split=True)


class RiskMetricsCallback(BaseCallback):
    """Every ``eval_freq`` steps, backtest the current policy on the validation split and log
    ``risk/<metric>`` for every metric of :func:`sb3_crypto.metrics.summary` (``risk/sharpe``,
    ``risk/sortino``, ``risk/max_drawdown``, ``risk/win_rate``, ...) through SB3's logger; save the
    best model by ``metric`` (higher is better; ``max_drawdown`` is negative, so that holds too).

    Trade counts: on an equity curve, ``fills`` (every executed order) and ``round_trips`` (closed
    trades, which the win rate and profit factor are over); on sessions, ``sessions`` (the win rate
    is then over every session, a flat one counting as no win).

    :param eval_freq: evaluate every this many calls of the callback (environment steps per env).
    :param env_id: environment to evaluate; default: the training env's id.
    :param env_kwargs: its settings; default: the training env's (from its spec), moved to the
        validation split.
    :param metric: the metric that selects the best model.
    :param best_model_save_path: folder for ``best_model.zip`` (nothing is saved without it).
    """

    def __init__(
        self,
        eval_freq: int = 10_000,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
        metric: str = "sharpe",
        best_model_save_path: str | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be >= 1, got {eval_freq}")
        self.eval_freq = int(eval_freq)
        self.env_id = env_id
        self.env_kwargs = env_kwargs
        self.metric = metric
        self.best_model_save_path = best_model_save_path
        self.best_value = -np.inf
        self.last_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        #: Per-bar returns (equity curves) or per-session PnL over the balance (sessions) of the last
        #: evaluation, and the bars per year they are annualised with.
        self.last_returns: np.ndarray | None = None
        self.periods_per_year: float = 1.0
        self._eval_kwargs: dict[str, Any] = {}
        self._balance = 1.0
        self._kind = ""

    def _init_callback(self) -> None:
        spec = self.training_env.get_attr("spec")[0] if self.env_id is None or self.env_kwargs is None else None
        env_id = self.env_id or (spec.id if spec is not None else None)
        cls = env_class(env_id) if env_id is not None else None
        kind = getattr(cls, "evaluation", None)
        if kind is None:
            raise ValueError(f"{type(self).__name__}: cannot evaluate {env_id!r}; it is not one of the package's envs")
        if kind not in MEASURABLE:
            raise ValueError(f"{type(self).__name__}: {env_id} has no equity curve or sessions to measure risk on")
        settings = dict(self.env_kwargs if self.env_kwargs is not None else (spec.kwargs if spec else {}))
        self.env_id = env_id
        self._kind = kind
        self._eval_kwargs = validation_kwargs(env_id, settings)
        if kind == "sessions":
            self._balance = cls(**self._eval_kwargs).initial_balance  # type: ignore[misc]
        if self.best_model_save_path is not None:
            os.makedirs(self.best_model_save_path, exist_ok=True)

    def evaluate(self) -> dict[str, float]:
        """Backtest the current policy on the validation split and return its metrics."""
        assert self.env_id is not None
        if self._kind == "sessions":
            pnl = evaluate_sessions(self.model, use_masks=isinstance(self.model, MaskablePPO), **self._eval_kwargs)
            self.last_returns, self.periods_per_year = pnl / self._balance, 1.0
            values = metrics.summary(pnl / self._balance, periods_per_year=1.0, trade_pnls=pnl)
            values["sessions"] = values.pop("round_trips")  # every session counts, traded or not
            values["mean_pnl"] = float(pnl.mean())
            return values
        env = gym.make(self.env_id, **self._eval_kwargs)
        result = run_policy(self.model, env, deterministic=True)
        self.last_returns, self.periods_per_year = result.returns, float(result.periods_per_year)
        return {
            **metrics.summary(result.returns, result.periods_per_year, trade_pnls=result.closed_trade_pnls()),
            "fills": float(result.trades),
            "commission": result.fees_paid,
        }

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq == 0:
            values = self.evaluate()
            self.last_metrics = values
            self.history.append(values)
            for name, value in values.items():
                self.logger.record(f"risk/{name}", value)
            value = values.get(self.metric, np.nan)
            if value > self.best_value:
                self.best_value = value
                if self.best_model_save_path is not None:
                    save_model(self.model, os.path.join(self.best_model_save_path, "best_model"))
                if self.verbose:
                    print(f"New best {self.metric}: {value:.4f}")
            return self._after_evaluation(value)
        return True

    def _after_evaluation(self, value: float) -> bool:
        """Hook for subclasses: return False to stop training."""
        return True


class EarlyStoppingCallback(RiskMetricsCallback):
    """:class:`RiskMetricsCallback` that stops training when ``metric`` has not improved by more
    than ``min_delta`` for ``patience`` consecutive evaluations."""

    def __init__(self, *args: Any, patience: int = 5, min_delta: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.reference = -np.inf
        self.stale = 0
        self.stopped_early = False

    def _after_evaluation(self, value: float) -> bool:
        if value > self.reference + self.min_delta:
            self.reference = value
            self.stale = 0
            return True
        self.stale += 1
        self.logger.record("risk/evaluations_without_improvement", self.stale)
        if self.stale >= self.patience:
            self.stopped_early = True
            if self.verbose:
                print(f"Early stopping: {self.metric} has not improved by {self.min_delta} in {self.stale} evaluations")
            return False
        return True


class CurriculumCallback(RiskMetricsCallback):
    """Curriculum training (reference system S2): advance through environment ``stages`` when the
    validation ``metric`` reaches ``threshold``.

    Each stage is a dict of env keyword arguments applied over the training env's own (e.g. calmer
    to wilder synthetic markets via ``synthetic_kwargs``, or longer sessions); the training envs
    switch at their next reset (``env.reconfigure``), and evaluation moves to the new stage's
    validation split. Stage 0 is applied when training starts. Usable from RL Zoo YAML.
    """

    def __init__(self, stages: list[dict[str, Any]], threshold: float, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not stages:
            raise ValueError("a curriculum needs at least one stage")
        self.stages = [dict(stage) for stage in stages]
        self.threshold = float(threshold)
        self.stage = 0

    def _init_callback(self) -> None:
        super()._init_callback()
        self._enter(0)

    def _enter(self, stage: int) -> None:
        self.stage = stage
        self.training_env.env_method("reconfigure", **self.stages[stage])
        self._eval_kwargs = validation_kwargs(str(self.env_id), {**self._eval_kwargs, **self.stages[stage]})
        self.best_value = -np.inf  # a new stage is a new game: best models are compared within it
        self.logger.record("curriculum/stage", stage)
        if self.verbose:
            print(f"Curriculum: stage {stage} {self.stages[stage]}")

    def _after_evaluation(self, value: float) -> bool:
        if value >= self.threshold and self.stage + 1 < len(self.stages):
            self._enter(self.stage + 1)
        return True


class FinalMetricCallback(RiskMetricsCallback):
    """Evaluate ``metric`` on the validation split once, when training ends (Optuna objectives).

    Instances register themselves in :attr:`instances` so the trial that created one can read
    :attr:`value` after RL Zoo's objective has discarded the model. ``nan`` becomes ``-inf``.
    """

    instances: list[FinalMetricCallback] = []

    def __init__(self, metric: str = "sharpe", **kwargs: Any) -> None:
        super().__init__(eval_freq=2**62, metric=metric, **kwargs)
        self.value = float("-inf")
        FinalMetricCallback.instances.append(self)

    def _on_training_end(self) -> None:
        value = float(self.evaluate().get(self.metric, float("nan")))
        self.value = value if np.isfinite(value) else float("-inf")
