"""Backtests of ``CryptoFuturesSession-v0`` policies: every session of a split once, with baselines.

Baselines, all on the same sessions with the same fee and slippage:

* ``flat`` - never trades;
* ``long_and_hold`` / ``short_and_hold`` - open at the first decision, closed on the last bar;
* ``random`` - uniformly random valid actions (seeded, mean over seeds);
* ``supervised`` - reference system S3's honest baseline: a classifier built from the agent's
  features extractor (similar parameter count), trained on the *training* split to predict whether
  the session closes above its entry price, trading that prediction (long or short at the first
  decision, closed on the last bar).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch as th
from torch import nn

from sb3_crypto import metrics
from sb3_crypto.envs.futures import HOLD, LONG, SHORT, CryptoFuturesSessionEnv
from sb3_crypto.evaluation.rollout import predictor, rollout
from sb3_crypto.policies.extractors import WindowExtractor, WindowMlpExtractor


@dataclass
class SessionRecord:
    """One evaluated session: its key, PnL, the actions taken and the prices it traded on."""

    key: tuple[str, pd.Timestamp]
    pnl: float  #: realised PnL after costs, quote currency
    actions: list[int]  #: executed action at each decision (invalid ones replaced, as the env did)
    closes: np.ndarray  #: closes of all context + session bars
    context: int
    fills: list  #: the ledger's fills (bar index within the session window)


def run_sessions(policy: Any, *, use_masks: bool = False, **env_kwargs: Any) -> list[SessionRecord]:
    """Visit every session of a split once, in order, and record what the policy did in each.

    :param policy: an SB3 model (deterministic ``predict``) or a callable ``obs -> action``.
    :param use_masks: pass ``action_masks`` to ``predict`` (MaskablePPO).
    :param env_kwargs: for :class:`CryptoFuturesSessionEnv` (``split="test"`` by default;
        ``sequential`` is forced on).
    """
    env = CryptoFuturesSessionEnv(**{"split": "test", **env_kwargs, "sequential": True})
    # A recurrent policy keeps its state within a session and starts afresh at the next.
    act = predictor(policy, masks=env.action_masks if use_masks else None)
    records: list[SessionRecord] = []

    def record(env: Any, episode: Any) -> None:
        base = env.unwrapped
        info = episode.final_info
        records.append(
            SessionRecord(
                key=info["session"],
                pnl=float(info["realized_pnl"]),
                actions=list(base.executed_actions),
                closes=base.sessions.bars[base._index, :, 3].copy(),
                context=base.context,
                fills=base.ledger.fills,
            )
        )

    rollout(env, act, episodes=env.n_sessions, on_episode_end=record)
    return records


def evaluate_sessions(policy: Any, *, use_masks: bool = False, **env_kwargs: Any) -> np.ndarray:
    """Realised PnL (quote currency, after costs) of every session of a split, visited once in order
    (see :func:`run_sessions` for the arguments)."""
    return np.array([record.pnl for record in run_sessions(policy, use_masks=use_masks, **env_kwargs)])


class RandomValidPolicy:
    """Uniformly random among the actions the env's mask allows (use with ``use_masks=True``)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
        action_masks: np.ndarray | None = None,
    ) -> tuple[int, None]:
        """SB3's ``predict`` signature: a random valid action, no state."""
        valid = np.flatnonzero(action_masks) if action_masks is not None else np.arange(4)
        return int(self.rng.choice(valid)), None


def open_then_hold(side: int, layout_offset: int) -> Callable[[np.ndarray], int]:
    """Open ``side`` (LONG / SHORT) at the first decision (``time_elapsed == 0``), then hold."""
    return lambda obs: side if obs[layout_offset + 2] == 0.0 else HOLD


class DirectionClassifier(nn.Module):
    """A features extractor plus a logistic head: P(session closes above its entry price)."""

    def __init__(self, extractor: WindowExtractor) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = nn.Linear(extractor.features_dim, 1)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return self.head(self.extractor(obs)).squeeze(1)


def _first_observations(env: CryptoFuturesSessionEnv) -> tuple[np.ndarray, np.ndarray]:
    """The observation at each session's first decision and whether the session went up from entry."""
    labels: list[float] = []

    def label(env: Any, episode: Any) -> None:
        bars = env.sessions.bars[env._index]
        labels.append(float(bars[-1, 3] > bars[env.context, 0]))  # last close above the first fill's open

    episodes = rollout(
        env, lambda obs, start: HOLD, episodes=env.n_sessions, record_observations=True, on_episode_end=label
    )
    observations = [episode.observations[0] for episode in episodes]
    return np.asarray(observations, dtype=np.float32), np.asarray(labels, dtype=np.float32)


def train_supervised_baseline(
    env_kwargs: dict[str, Any],
    extractor_class: type[WindowExtractor] = WindowMlpExtractor,
    extractor_kwargs: dict[str, Any] | None = None,
    epochs: int = 300,
    seed: int = 0,
) -> Callable[[np.ndarray], int]:
    """Train S3's honest baseline on the training split and return it as a session policy."""
    th.manual_seed(seed)
    train_env = CryptoFuturesSessionEnv(**{**env_kwargs, "split": "train", "sequential": True})
    observations, labels = _first_observations(train_env)
    model = DirectionClassifier(extractor_class(train_env.observation_space, **(extractor_kwargs or {})))
    optimizer = th.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = th.as_tensor(observations), th.as_tensor(labels)
    model.train()
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
    model.eval()
    offset = train_env.observation_layout.window_dim

    def policy(obs: np.ndarray) -> int:
        if obs[offset + 2] != 0.0:  # after the first decision: hold until the forced close
            return HOLD
        with th.no_grad():
            up = model(th.as_tensor(obs[None], dtype=th.float32)).item() > 0.0
        return LONG if up else SHORT

    policy.parameter_count = sum(p.numel() for p in model.parameters())  # type: ignore[attr-defined]
    return policy


def agent_extractor(model: Any) -> tuple[type[WindowExtractor], dict[str, Any]]:
    """The window extractor class (and its size) the agent uses, for a comparable supervised baseline."""
    for module in getattr(model, "policy", nn.Module()).modules():
        if isinstance(module, WindowExtractor):
            return type(module), {"features_dim": module.features_dim}
    return WindowMlpExtractor, {}


def session_summary(pnl: np.ndarray, balance: float, traded: np.ndarray | None = None) -> dict[str, float]:
    """Per-session statistics: mean / total PnL, win rate, profit factor, per-session Sharpe.

    :param traded: which sessions held a position (the win rate and profit factor are then over those
        only, and ``traded_sessions`` counts them); by default every session counts.
    """
    pnl = np.asarray(pnl, dtype=np.float64)
    stats = metrics.trade_statistics(pnl if traded is None else pnl[traded])
    out = {
        "sessions": float(len(pnl)),
        "mean_pnl": float(pnl.mean()) if len(pnl) else float("nan"),
        "total_pnl": float(pnl.sum()),
        "win_rate": stats["win_rate"],
        "profit_factor": stats["profit_factor"],
        "sharpe_per_session": metrics.sharpe_ratio(pnl / balance, periods_per_year=1.0),
    }
    if traded is not None:
        out["traded_sessions"] = float(np.count_nonzero(traded))
    return out


def backtest_sessions(
    model: Any, env_kwargs: dict[str, Any], *, use_masks: bool = False, random_seeds: tuple[int, ...] = (0, 1, 2)
) -> tuple[dict[str, list[SessionRecord]], dict[str, dict[str, float]]]:
    """The agent and every baseline over the split in ``env_kwargs``: records and summaries."""
    probe = CryptoFuturesSessionEnv(**{**env_kwargs, "sequential": True})
    offset = probe.observation_layout.window_dim
    extractor_class, extractor_kwargs = agent_extractor(model)
    strategies: dict[str, tuple[Any, bool]] = {
        "agent": (model, use_masks),
        "flat": (lambda obs: HOLD, False),
        "long_and_hold": (open_then_hold(LONG, offset), False),
        "short_and_hold": (open_then_hold(SHORT, offset), False),
        "supervised": (train_supervised_baseline(env_kwargs, extractor_class, extractor_kwargs), False),
    }
    records = {
        name: run_sessions(policy, use_masks=masks, **env_kwargs) for name, (policy, masks) in strategies.items()
    }
    summaries = {
        name: session_summary(np.array([r.pnl for r in recs]), probe.initial_balance) for name, recs in records.items()
    }
    if random_seeds:
        pnl = np.mean(
            [
                [r.pnl for r in run_sessions(RandomValidPolicy(seed), use_masks=True, **env_kwargs)]
                for seed in random_seeds
            ],
            axis=0,
        )
        summaries["random"] = session_summary(pnl, probe.initial_balance)
    return records, summaries
