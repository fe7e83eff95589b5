"""Reference system S3's strategy layer over a trained Q-network, tuned without touching the test data.

A :class:`QStrategy` trades ``CryptoFuturesSession-v0`` sessions with a Q-model's values instead of
its greedy actions:

* **advantage filter** - open long (short) only when ``Q(long) - Q(hold)`` (``Q(short) - Q(hold)``)
  exceeds its threshold; close when ``Q(close) - Q(hold)`` exceeds ``close_threshold``;
* **MC-dropout ensemble** (``mc_samples > 0``) - the advantage is averaged over K stochastic passes
  with dropout on; the mean must pass the threshold and the standard deviation stay below
  ``max_std``;
* **risk management** - stop-loss, take-profit and trailing stop (fractions of the entry price,
  checked against the low / high of each bar from the entry bar on and filled at the stop level,
  or at the bar's open when it gaps through; when both could trigger in one bar the adverse stop
  is assumed first; the trailing stop follows the best close since entry), at most
  ``max_positions`` sessions open at once, each with ``position_fraction`` of the balance.

Fills, fees and slippage go through the shared :class:`~sb3_crypto.envs.ledger.Ledger`. Q-values
are cached per **full observation** (its bytes), not per (ticker, time) as in S3, whose cache
replayed stale values when anything else in the observation changed. :func:`tune_strategy` runs
an Optuna search on the validation split only; :func:`report_strategy` evaluates the chosen
settings on the test split and says that split was not used for tuning.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch as th

from sb3_crypto.envs.futures import CLOSE, HOLD, LONG, SHORT, CryptoFuturesSessionEnv
from sb3_crypto.envs.ledger import Ledger
from sb3_crypto.evaluation.plots import plot_optimization_history
from sb3_crypto.evaluation.sessions import session_summary
from sb3_crypto.files import check_output_dir, claim_output_dir, write_json
from sb3_crypto.rainbow import noise_off


@dataclass
class StrategyConfig:
    """Thresholds and risk limits of a :class:`QStrategy` (fractions of price where relevant)."""

    long_threshold: float = 0.0
    short_threshold: float = 0.0
    close_threshold: float = 0.0
    mc_samples: int = 0
    max_std: float = float("inf")
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    max_positions: int = 1
    position_fraction: float = 1.0


#: The files :func:`tune_strategy` writes into ``out``.
TUNING_FILES = ("best_strategy.json", "optimization_history.png")


class QValueSource:
    """Q-values of a DQN / QR-DQN / Rainbow model for observations, with an optional cache.

    :param model: an SB3 model whose policy has a ``q_net`` (deterministic: noise off, eval mode).
    :param cache: keep values per observation bytes so repeated backtests skip the network.
    """

    def __init__(self, model: Any, cache: bool = True, seed: int = 0) -> None:
        self.q_net = model.policy.q_net
        self.device = model.device
        self.cache: dict[tuple[bytes, int], np.ndarray] | None = {} if cache else None
        self.calls = 0
        self.hits = 0
        self.seed = seed

    def __call__(self, obs: np.ndarray, samples: int = 0) -> np.ndarray:
        """``(n_actions,)`` Q-values, or ``(samples, n_actions)`` MC-dropout samples when ``samples > 0``."""
        key = (np.ascontiguousarray(obs, dtype=np.float32).tobytes(), samples)
        if self.cache is not None and key in self.cache:
            self.hits += 1
            return self.cache[key]
        self.calls += 1
        tensor = th.as_tensor(obs[None], dtype=th.float32, device=self.device)
        with th.no_grad(), noise_off(self.q_net):
            if samples:
                generator_state = th.random.get_rng_state()
                th.manual_seed(self.seed + zlib.crc32(key[0]))  # same draws for the same observation
                self.q_net.train()  # dropout on
                values = th.cat([self.q_net(tensor) for _ in range(samples)]).cpu().numpy()
                self.q_net.eval()
                th.random.set_rng_state(generator_state)
            else:
                self.q_net.eval()
                values = self.q_net(tensor)[0].cpu().numpy()
        if self.cache is not None:
            self.cache[key] = values
        return values


@dataclass
class StrategyResult:
    """Per-session outcome of a strategy run."""

    pnl: np.ndarray  #: PnL per session after costs (quote currency)
    exits: list[str]  #: how each session's position ended ("none", "signal", "stop_loss", ...)
    skipped: int  #: sessions never entered because max_positions were open whenever they wanted to
    trades: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, balance: float) -> dict[str, float]:
        """Mean / total PnL, win rate over traded sessions, per-session Sharpe, skipped entries."""
        traded = np.array([e != "none" for e in self.exits], dtype=bool)
        return {**session_summary(self.pnl, balance, traded=traded), "skipped_entries": float(self.skipped)}


class QStrategy:
    """Trade every session of a split with filtered Q-values and stops (see the module docstring)."""

    def __init__(self, q_values: QValueSource, config: StrategyConfig, **env_kwargs: Any) -> None:
        self.q_values = q_values
        self.config = config
        self.env = CryptoFuturesSessionEnv(**{**env_kwargs, "sequential": True})

    def _advantage(self, obs: np.ndarray, action: int) -> tuple[float, float]:
        samples = self.config.mc_samples
        q = self.q_values(obs, samples)
        if samples:
            advantage = q[:, action] - q[:, HOLD]
            return float(advantage.mean()), float(advantage.std())
        return float(q[action] - q[HOLD]), 0.0

    def _entry(self, obs: np.ndarray) -> int:
        config = self.config
        best, best_value = HOLD, -np.inf
        for action, threshold in ((LONG, config.long_threshold), (SHORT, config.short_threshold)):
            mean, std = self._advantage(obs, action)
            if mean > threshold and std < config.max_std and mean > best_value:
                best, best_value = action, mean
        return best

    def _stop_exit(self, side: int, entry: float, extreme: float, bar: np.ndarray) -> tuple[str, float] | None:
        """Whether a stop triggers inside ``bar`` (open, high, low, ...) and at which reference price."""
        config = self.config
        open_, high, low = bar[0], bar[1], bar[2]
        levels = []
        if config.stop_loss is not None:
            levels.append(("stop_loss", entry * (1 - side * config.stop_loss)))
        if config.trailing_stop is not None:
            levels.append(("trailing_stop", extreme * (1 - side * config.trailing_stop)))
        for name, level in levels:  # adverse exits first (conservative when both trigger in one bar)
            if (side > 0 and low <= level) or (side < 0 and high >= level):
                gapped = (side > 0 and open_ <= level) or (side < 0 and open_ >= level)
                return name, open_ if gapped else level
        if config.take_profit is not None:
            level = entry * (1 + side * config.take_profit)
            if (side > 0 and high >= level) or (side < 0 and low <= level):
                gapped = (side > 0 and open_ >= level) or (side < 0 and open_ <= level)
                return "take_profit", open_ if gapped else level
        return None

    def run(self) -> StrategyResult:
        """Walk every session of the split once, in signal-time order."""
        env = self.env
        config = self.config
        bar_ns = pd.Timedelta(env.sessions.meta.get("freq", "1min")).value
        open_until: list[int] = []  # end times (ns) of sessions holding a position
        pnl, exits, trades, skipped = [], [], [], 0
        for _ in range(env.n_sessions):
            obs, info = env.reset()
            bars = env.sessions.bars[env._index]
            signal_ns = pd.Timestamp(info["session"][1]).value
            ledger = Ledger(env.initial_balance, env.ledger.fee_rate, env.ledger.slippage, allow_short=True)
            side, entry, extreme, exit_kind, refused = 0, 0.0, 0.0, "none", False
            for step in range(env.session):
                decision_bar = env.context - 1 + step
                last = step == env.session - 1
                env_action = HOLD  # mirrored into the env so its observation shows the position
                if side:
                    # The bar that just closed (the entry bar or a later one) may have hit a stop.
                    stop = self._stop_exit(side, entry, extreme, bars[decision_bar])
                    if stop is not None:
                        exit_kind, reference = stop
                        ledger.close(reference, decision_bar)
                        side, env_action = 0, CLOSE
                    elif last or self._advantage(obs, CLOSE)[0] > config.close_threshold:
                        exit_kind = "forced" if last else "signal"
                        ledger.close(bars[decision_bar + 1, 0], decision_bar + 1)
                        side, env_action = 0, CLOSE
                    else:
                        close = bars[decision_bar, 3]
                        extreme = max(extreme, close) if side > 0 else min(extreme, close)
                elif exit_kind == "none" and not last:
                    action = self._entry(obs)
                    if action != HOLD:
                        now = signal_ns + step * bar_ns
                        open_until = [end for end in open_until if end > now]
                        if len(open_until) >= config.max_positions:
                            refused = True  # all slots busy now; a later bar may still find one
                        else:
                            side = 1 if action == LONG else -1
                            price = bars[decision_bar + 1, 0]
                            units = ledger.units_for_exposure(side * config.position_fraction, price)
                            ledger.trade(units, price, decision_bar + 1)
                            entry = extreme = price
                            open_until.append(signal_ns + env.session * bar_ns)
                            env_action = action
                obs, *_ = env.step(env_action)
            skipped += refused and exit_kind == "none"
            pnl.append(ledger.realized_pnl - ledger.fees_paid)
            exits.append(exit_kind)
            trades += [{"session": info["session"], **fill._asdict()} for fill in ledger.fills]
        return StrategyResult(np.asarray(pnl), exits, skipped, trades)


def tune_strategy(
    q_values: QValueSource,
    n_trials: int = 50,
    seed: int = 0,
    out: Path | None = None,
    *,
    overwrite: bool = False,
    **env_kwargs: Any,
) -> tuple[StrategyConfig, Any]:
    """Optuna search over thresholds and stops on the **validation** split (maximising total PnL).

    Writes ``best_strategy.json`` (strict JSON) and ``optimization_history.png`` into ``out`` when
    given, each atomically once the search is over; an ``out`` that holds them already is refused
    before the search starts, unless ``overwrite``.
    """
    import optuna

    if out is not None:
        check_output_dir(out, TUNING_FILES, overwrite=overwrite)
    kwargs = {**env_kwargs, "split": "validation"}

    def objective(trial: optuna.Trial) -> float:
        config = StrategyConfig(
            long_threshold=trial.suggest_float("long_threshold", -0.01, 0.05),
            short_threshold=trial.suggest_float("short_threshold", -0.01, 0.05),
            close_threshold=trial.suggest_float("close_threshold", -0.01, 0.05),
            stop_loss=trial.suggest_float("stop_loss", 0.002, 0.05, log=True),
            take_profit=trial.suggest_float("take_profit", 0.002, 0.1, log=True),
            trailing_stop=trial.suggest_float("trailing_stop", 0.002, 0.05, log=True),
        )
        return float(QStrategy(q_values, config, **kwargs).run().pnl.sum())

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    best = StrategyConfig(**study.best_params)
    if out is not None:
        out = claim_output_dir(out, TUNING_FILES, overwrite=overwrite)
        payload = {
            "tuned_on": "validation",
            "n_trials": n_trials,
            "best_value": study.best_value,
            "config": asdict(best),
        }
        write_json(out / "best_strategy.json", payload, default=float)
        values = [t.value for t in study.trials if t.value is not None]
        plot_optimization_history(values, out / "optimization_history.png", ylabel="validation PnL")
    return best, study


def report_strategy(q_values: QValueSource, config: StrategyConfig, **env_kwargs: Any) -> dict[str, Any]:
    """The tuned strategy on the untouched **test** split."""
    strategy = QStrategy(q_values, config, **{**env_kwargs, "split": "test"})
    result = strategy.run()
    return {
        "split": "test",
        "used_for_tuning": False,
        "config": asdict(config),
        "summary": result.summary(strategy.env.initial_balance),
    }
