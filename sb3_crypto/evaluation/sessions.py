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
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from torch import nn

from sb3_crypto import metrics
from sb3_crypto.envs.futures import CLOSE, HOLD, LONG, SHORT, CryptoFuturesSessionEnv, SessionRecord, run_sessions
from sb3_crypto.policies.extractors import WindowExtractor, WindowMlpExtractor


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
    observations, labels = [], []
    for _ in range(env.n_sessions):
        obs, _ = env.reset()
        bars = env.sessions.bars[env._index]
        observations.append(obs)
        labels.append(float(bars[-1, 3] > bars[env.context, 0]))  # last close above the first fill's open
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


def session_summary(pnl: np.ndarray, balance: float) -> dict[str, float]:
    """Per-session statistics: mean / total PnL, win rate, profit factor, per-session Sharpe."""
    stats = metrics.trade_statistics(pnl)
    return {
        "sessions": float(len(pnl)),
        "mean_pnl": float(pnl.mean()) if len(pnl) else float("nan"),
        "total_pnl": float(pnl.sum()),
        "win_rate": stats["win_rate"],
        "profit_factor": stats["profit_factor"],
        "sharpe_per_session": metrics.sharpe_ratio(pnl / balance, periods_per_year=1.0),
    }


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


def format_session_table(summaries: dict[str, dict[str, float]]) -> str:
    """Plain-text comparison of the session strategies."""
    header = f"{'strategy':<16}{'sessions':>9}{'mean PnL':>11}{'total PnL':>12}{'win rate':>10}{'sharpe/s':>10}"
    lines = [header, "-" * len(header)]
    for name, s in summaries.items():
        lines.append(
            f"{name:<16}{int(s['sessions']):>9d}{s['mean_pnl']:>11.2f}{s['total_pnl']:>12.2f}"
            f"{100 * s['win_rate']:>9.1f}%{s['sharpe_per_session']:>10.3f}"
        )
    return "\n".join(lines)


MARKERS = {LONG: ("^", "green", "long"), SHORT: ("v", "red", "short"), CLOSE: ("x", "black", "close")}


def plot_sessions(records: list[SessionRecord], out: Path, n_extremes: int = 3) -> list[Path]:
    """``pnl_hist.png`` (histograms of PnL per session and of the win rate per block of sessions) and
    ``best_worst.png`` (the best and worst sessions: price with the signal bar and hold / long /
    short / close markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pnl = np.array([r.pnl for r in records])
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    left.hist(
        [pnl[pnl > 0], pnl[pnl <= 0]],
        bins=30,
        stacked=True,
        color=["seagreen", "firebrick"],
        label=[f"wins ({(pnl > 0).mean():.0%})", "losses"],
    )
    left.set_xlabel("PnL per session (quote currency, after costs)")
    left.set_ylabel("sessions")
    left.legend()
    # Win rate of consecutive blocks of sessions: how stable the hit rate is over the split.
    block = max(1, len(pnl) // 10)
    rates = [float((pnl[k : k + block] > 0).mean()) for k in range(0, len(pnl), block)]
    right.hist(rates, bins=np.linspace(0, 1, 11), color="steelblue")
    right.axvline(float((pnl > 0).mean()), color="black", ls="--", label="overall")
    right.set_xlabel(f"win rate per block of {block} sessions")
    right.legend()
    figure.tight_layout()
    figure.savefig(out / "pnl_hist.png", dpi=100)
    plt.close(figure)

    order = np.argsort(pnl)
    chosen = [*order[::-1][:n_extremes], *order[:n_extremes]]
    figure, axes = plt.subplots(2, n_extremes, figsize=(4 * n_extremes, 6), squeeze=False)
    for axis, index in zip(axes.flat, chosen):
        record = records[index]
        axis.plot(record.closes, color="grey", lw=1)
        axis.axvline(record.context - 1, color="orange", ls="--", lw=1)
        for step, action in enumerate(record.actions):
            bar = record.context - 1 + step
            if action in MARKERS:
                marker, color, _ = MARKERS[action]
                axis.scatter(bar, record.closes[bar], marker=marker, color=color, zorder=3)
            else:
                axis.scatter(bar, record.closes[bar], marker=".", color="grey", s=8, zorder=3)
        axis.set_title(f"{record.key[0]} {record.key[1]:%Y-%m-%d %H:%M}\nPnL {record.pnl:+.1f}", fontsize=8)
    figure.suptitle("best (top) and worst (bottom) sessions: ^ long, v short, x close, . hold; -- signal")
    figure.tight_layout()
    figure.savefig(out / "best_worst.png", dpi=100)
    plt.close(figure)
    return [out / "pnl_hist.png", out / "best_worst.png"]


def write_session_results(
    records: dict[str, list[SessionRecord]], summaries: dict[str, dict[str, float]], out: Path, meta: dict
) -> None:
    """``metrics.json``, ``sessions.csv`` (PnL of every strategy per session), ``trades.csv`` (the
    agent's fills) and the plots."""
    import json

    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    agent = records["agent"]
    (out / "metrics.json").write_text(
        json.dumps({"meta": {k: str(v) for k, v in meta.items()}, "results": summaries}, indent=2, default=float)
    )
    table = pd.DataFrame({name: [r.pnl for r in recs] for name, recs in records.items()})
    table.insert(0, "ticker", [r.key[0] for r in agent])
    table.insert(1, "signal_time", [r.key[1] for r in agent])
    table.to_csv(out / "sessions.csv", index=False)
    rows = [
        (
            r.key[0],
            r.key[1],
            fill.bar,
            "buy" if fill.side > 0 else "sell",
            fill.units,
            fill.price,
            fill.fee,
            fill.realized_pnl,
        )
        for r in agent
        for fill in r.fills
    ]
    columns = ["ticker", "signal_time", "bar", "side", "size", "price", "fee", "pnl"]
    pd.DataFrame(rows, columns=columns).to_csv(out / "trades.csv", index=False)
    plot_sessions(agent, out)
