"""``CryptoFuturesSession-v0``: discrete futures trading inside volatility sessions (reference system S3).

One episode is one session (see :mod:`sb3_crypto.data.sessions`): the agent sees the context and
trades the ``session`` bars after the signal. Decisions are taken on bar closes and filled at the
next open through the shared :class:`~sb3_crypto.envs.ledger.Ledger` (fee and adverse slippage).

Actions (``Discrete(4)``): 0 hold, 1 open long, 2 open short, 3 close. Opening while in a position
and closing while flat are invalid: :meth:`action_masks` excludes them (MaskablePPO uses it), and
without masking they are ignored and counted in ``info["invalid_actions"]``. On the last step only
hold (when flat) or close (when in a position) is valid; an open position is closed regardless.

Reward: the change of realised PnL net of fees, divided by the initial balance, minus
``inaction_penalty`` when flat and holding.

The env trades at most 1x (``position_fraction <= 1``, never borrowing cash), over sessions of a few
dozen bars, so no margin or liquidation applies; leveraged perpetual-futures trading with margin,
liquidation and funding from data is ``CryptoTrading-v0`` with ``leverage > 1`` (see
:mod:`sb3_crypto.envs.margin`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pandas as pd

from sb3_crypto._aliases import moved_names
from sb3_crypto.data import keywords
from sb3_crypto.data.features import FeatureNormalizer
from sb3_crypto.data.loaders import DataError, freq_str, load_ohlcv
from sb3_crypto.data.market import SPLITS, checked_normalizer, data_file, normalizer_option
from sb3_crypto.data.pipeline import feature_spec
from sb3_crypto.data.sessions import (
    SessionSet,
    extract_sessions,
    session_market_options,
    session_values,
    split_sessions,
    synthetic_session_market,
)
from sb3_crypto.envs.base import (
    EpisodeGuard,
    LayoutBox,
    ObservationLayout,
    Reconfigurable,
    RecordsSettings,
    advance_cursor,
    money,
)
from sb3_crypto.envs.ledger import Ledger
from sb3_crypto.envs.observation import SessionAccount, make_spec

ACTION_MEANINGS = ("hold", "long", "short", "close")
#: Most past actions the observation may show (``history``).
MAX_HISTORY = 1000
HOLD, LONG, SHORT, CLOSE = range(4)
SESSION_FEATURES = (
    "open_return",
    "high_return",
    "low_return",
    "close_return",
    "log_volume",
    "vwap_return",
    "log_trades",
)


def session_features(bars: np.ndarray) -> np.ndarray:
    """Causal features per bar of ``(n, length, 7)`` session bars: log prices against the previous
    close (bar 0 against its own open), ``log1p`` of volume and trade count."""
    close = bars[:, :, 3]
    previous = np.concatenate((bars[:, :1, 0], close[:, :-1]), axis=1)
    log_prev = np.log(previous)
    out = np.empty(bars.shape, dtype=np.float64)
    for k, channel in enumerate((0, 1, 2, 3)):
        out[:, :, k] = np.log(bars[:, :, channel]) - log_prev
    out[:, :, 4] = np.log1p(bars[:, :, 4])
    out[:, :, 5] = np.log(bars[:, :, 5]) - log_prev
    out[:, :, 6] = np.log1p(bars[:, :, 6])
    return out


@lru_cache(maxsize=4)
def _synthetic_sessions(items: tuple, extract: tuple) -> SessionSet:
    options = dict(items)
    market = synthetic_session_market(**options)
    sessions = extract_sessions(market, **dict(extract))
    sessions.meta["freq"] = options.get("freq", "1min")
    sessions.meta["source"] = f"synthetic sessions (synthetic_kwargs={options!r})"
    return sessions


def resolve_sessions(
    data: str | os.PathLike | pd.DataFrame | SessionSet,
    *,
    context: int,
    session: int,
    signal_window: int,
    signal_threshold: float,
    contrast: float,
    synthetic_kwargs: Mapping[str, Any] | None = None,
) -> SessionSet:
    """Sessions from ``"synthetic"``, a ``.npz``/``.npy`` session file, a bar file or frame, or a SessionSet.

    The extraction rule and ``synthetic_kwargs`` are checked by name (unknown options, out-of-range
    values, options that do not apply to the data); a ``data`` of another kind raises
    :class:`TypeError` naming ``data``, a missing file :class:`DataError` naming the file.
    """
    context = keywords.integer("context", context, low=2)
    session = keywords.integer("session", session, low=1)
    signal_window = keywords.integer("signal_window", signal_window, low=1)
    if signal_window >= context:
        raise ValueError(f"signal_window must be below context, got signal_window={signal_window}, context={context}")
    signal_threshold = keywords.positive("signal_threshold", signal_threshold, high=10.0)
    contrast = keywords.real("contrast", contrast, low=1.0, high=1e6, high_inclusive=True)
    extract = {
        "context": context,
        "session": session,
        "signal_window": signal_window,
        "signal_threshold": signal_threshold,
        "contrast": contrast,
    }
    expected = "data must be 'synthetic', a session file (.npz/.npy), a bar file, a DataFrame or a SessionSet"
    if not isinstance(data, (SessionSet, pd.DataFrame, str, os.PathLike)):
        raise TypeError(f"{expected}, got {keywords.describe(data)}")
    if isinstance(data, str) and not data.strip():
        raise ValueError(f"{expected}, got {keywords.describe(data)}")
    is_synthetic = isinstance(data, str) and data == "synthetic"
    if not is_synthetic and not keywords.is_none(synthetic_kwargs) and synthetic_kwargs != {}:
        raise ValueError("synthetic_kwargs given but data is not 'synthetic'")
    if isinstance(data, SessionSet):
        sessions = data
    elif is_synthetic:
        options = session_market_options(synthetic_kwargs)
        try:
            sessions = _synthetic_sessions(tuple(sorted(options.items())), tuple(sorted(extract.items())))
        except ValueError as exc:  # DataError included: no session in this market, say which one
            raise type(exc)(f"{exc} (synthetic_kwargs={options!r})") from None
    elif isinstance(data, pd.DataFrame):
        sessions = extract_sessions(load_ohlcv(data), **extract)
    else:
        path = data_file(data)
        if path.suffix in (".npz", ".npy"):
            sessions = SessionSet.load(path, context=context)
        else:
            sessions = extract_sessions(load_ohlcv(path), **extract)
    if sessions.context < 1 or sessions.session < 1:
        raise DataError("sessions need at least one context bar and one trading bar")
    return sessions


class CryptoFuturesSessionEnv(RecordsSettings, EpisodeGuard, Reconfigurable, gym.Env):
    """Discrete long / short / close trading of volatility sessions (S3). See the module docstring.

    :param data: ``"synthetic"`` (planted momentum after spikes; options in ``synthetic_kwargs``), a
        session file (``.npz`` from :meth:`SessionSet.save`, or S3's ``(N, 150, 7)`` ``.npy``), a bar
        file / DataFrame to extract sessions from, or a :class:`SessionSet`.
    :param context: bars before the signal (S3: 90; demo preset 30).
    :param session: trading bars (S3: 60; demo preset 10).
    :param signal_window, signal_threshold, contrast: the extraction rule (10 bars, 5 %, 5.0).
    :param window_size: bars in the observation window (at most ``context``; default all of it).
    :param history: number of past actions shown one-hot in the observation.
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"`` (sessions in signal-time order).
    :param sequential: visit the split's sessions in order, each once per pass (evaluation);
        otherwise sessions are drawn at random (training).
    :param fee: taker fee (0.0004 = 0.04 %); ``slippage``: adverse fill move (0.0005 = 0.05 %); both
        in [0, 1).
    :param initial_balance: starting balance, in [1e-6, 1e15].
    :param position_fraction: share of equity committed when opening, in (0, 1].
    :param inaction_penalty: subtracted from the reward when flat and holding, in [0, 1].
    :param norm_warmup: share of the training sessions (the earliest) the normaliser is fitted on, in
        (0, 1); they are never traded, so no statistic comes from a session an agent trades later.
    :param split_fractions: train / validation / test shares of the sessions (three numbers >= 0
        summing to 1).
    :param synthetic_kwargs: options of :func:`~sb3_crypto.data.sessions.synthetic_session_market`
        (only with ``data="synthetic"``).
    :param features: only ``"zscore"`` (or the spec ``{base: zscore}``): the seven session channels
        above, z-scored on the warm-up sessions. Indicator specs are refused: the env observes S3's
        session arrays (a few dozen bars cut around each signal, possibly from many tickers, or
        loaded from a ``.npz`` without the bars around them), not one continuous bar series, so
        indicators would either spend most of a session on their warm-up or need bars the session
        files do not hold. Use ``CryptoTrading-v0`` or ``CryptoSpot-v0`` for indicator features.
    :param normalizer: fitted feature statistics (a ``FeatureNormalizer`` or its ``to_dict()``) used
        instead of fitting them on the earliest training sessions, which are then traded too
        (``norm_warmup`` is unused): a trained env's statistics applied to other sessions.

    Ranges of the rest: ``context`` >= 2, ``session`` >= 1, ``signal_window`` in [1, context - 1],
    ``signal_threshold`` in (0, 10], ``contrast`` in [1, 1e6], ``history`` in [0, 1000]. Every
    keyword is checked by name: a bad value raises :class:`TypeError` or :class:`ValueError` naming
    it, its value and the accepted range; numbers and booleans given as strings are converted.
    """

    metadata: dict[str, Any] = {"render_modes": []}
    account_features = ("position", "unrealized_pnl", "time_elapsed", "time_remaining")
    #: Evaluation visits every session of a split once, in order (see ``MarketEnv.evaluation``).
    evaluation: ClassVar[str] = "sessions"
    sequential_evaluation: ClassVar[bool] = True
    #: What each discrete action does (reported by the prediction service).
    action_meanings = ("hold", "long", "short", "close")
    #: What the account features are made of (see :mod:`sb3_crypto.envs.observation`).
    account_state = SessionAccount
    #: Keywords that choose the sessions and the split; an observer (:meth:`observer`) replaces them.
    data_keywords: ClassVar[tuple[str, ...]] = (
        "data",
        "synthetic_kwargs",
        "split",
        "sequential",
        "split_fractions",
        "norm_warmup",
        "normalizer",
    )

    def __init__(
        self,
        data: Any = "synthetic",
        *,
        context: int = 30,
        session: int = 10,
        signal_window: int = 10,
        signal_threshold: float = 0.05,
        contrast: float = 5.0,
        window_size: int | None = None,
        history: int = 4,
        split: str = "train",
        sequential: bool = False,
        split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
        norm_warmup: float = 0.1,
        fee: float = 0.0004,
        slippage: float = 0.0005,
        initial_balance: float = 10_000.0,
        position_fraction: float = 1.0,
        inaction_penalty: float = 0.001,
        synthetic_kwargs: Mapping[str, Any] | None = None,
        features: str | Mapping[str, Any] = "zscore",
        normalizer: FeatureNormalizer | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        given = normalizer_option(normalizer)
        spec = feature_spec(features)
        if spec.base != "zscore" or spec.indicators:
            raise ValueError(
                f"features: {type(self).__name__} observes S3's session arrays (seven z-scored channels per "
                "session bar), not a continuous bar series, so it takes no indicators, user functions or other "
                f"base features; only 'zscore' is accepted, got {keywords.describe(features)}"
            )
        window_size = keywords.optional_integer("window_size", window_size, low=1)
        history = keywords.integer("history", history, low=0, high=MAX_HISTORY)
        split = keywords.choice("split", split, SPLITS)
        sequential = keywords.boolean("sequential", sequential)
        split_fractions = keywords.fractions("split_fractions", split_fractions)
        norm_warmup = keywords.real("norm_warmup", norm_warmup, low=0.0, high=1.0, low_inclusive=False)
        fee = keywords.rate("fee", fee)
        slippage = keywords.rate("slippage", slippage)
        initial_balance = money("initial_balance", initial_balance)
        position_fraction = keywords.positive("position_fraction", position_fraction, high=1.0)
        inaction_penalty = keywords.real("inaction_penalty", inaction_penalty, low=0.0, high=1.0, high_inclusive=True)
        sessions = resolve_sessions(
            data,
            context=context,
            session=session,
            signal_window=signal_window,
            signal_threshold=signal_threshold,
            contrast=contrast,
            synthetic_kwargs=synthetic_kwargs,
        )
        self.sessions = sessions
        self.context = sessions.context
        self.session = sessions.session
        self.window_size = self.context if window_size is None else window_size
        if not 1 <= self.window_size <= self.context:
            raise ValueError(f"window_size must be between 1 and context ({self.context}), got {window_size}")
        found = (
            f"{len(sessions)} sessions of {sessions.meta.get('source', 'the data')} (context={sessions.context}, "
            f"session={sessions.session}, "
            f"signal_window={signal_window}, signal_threshold={signal_threshold}, contrast={contrast})"
        )
        splits = split_sessions(sessions, split_fractions)
        train = splits["train"]
        n_warmup = 0 if given is not None else max(1, round(norm_warmup * len(train)))
        if len(train) - n_warmup < 1 and given is None:
            raise DataError(
                f"only {len(train)} training sessions of {found} (split_fractions={split_fractions}): none "
                f"left after the normalisation warm-up (norm_warmup={norm_warmup}, {n_warmup} sessions)"
            )
        warmup = train[:n_warmup]
        splits["train"] = train[n_warmup:]
        splits["all"] = np.sort(np.concatenate([splits["train"], splits["validation"], splits["test"]]))
        self.episode_indices = splits[split]
        if len(self.episode_indices) == 0:
            raise DataError(f"split {split!r} holds no sessions ({found} in total, split_fractions={split_fractions})")
        self.split = split
        self.sequential = sequential

        raw = session_features(sessions.bars)
        if given is None:
            self.normalizer = FeatureNormalizer.fit(raw[warmup].reshape(-1, raw.shape[2]))
        else:
            self.normalizer = checked_normalizer(given, SESSION_FEATURES)
        self._warmup_sessions = warmup
        self._features = self.normalizer.transform(raw)
        self._open = sessions.bars[:, :, 0]
        self._close = sessions.bars[:, :, 3]
        step = pd.Timedelta(sessions.meta.get("freq", "1min"))
        self._bar_ns = step.value

        self.history = history
        extra = tuple(f"action_{-k}_{name}" for k in range(history, 0, -1) for name in ACTION_MEANINGS)
        self.observation_layout = ObservationLayout(self.window_size, SESSION_FEATURES, self.account_features, extra)
        self.obs_bound = self.normalizer.clip
        self.observation_space = LayoutBox(self.obs_bound, self.observation_layout)
        self.action_space = gym.spaces.Discrete(4)
        self.ledger = Ledger(initial_balance, fee, slippage, allow_short=True, max_leverage=1.0)
        self.position_fraction = position_fraction
        self.inaction_penalty = inaction_penalty
        self.initial_balance = initial_balance
        self._cursor = -1
        self._index = int(self.episode_indices[0])
        self._step = 0
        self._actions: list[int] = []
        self.executed_actions: list[int] = []  #: actions executed this session (invalid ones replaced)
        self._invalid = 0

    @property
    def n_sessions(self) -> int:
        """Sessions in the split (episodes per pass in sequential mode)."""
        return len(self.episode_indices)

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start the next session (in order when ``sequential``, else at random)."""
        self._apply_pending()
        super().reset(seed=seed)
        if self.sequential:
            self._cursor = advance_cursor(self._cursor, self.n_sessions, restart=seed is not None)
            self._index = int(self.episode_indices[self._cursor])
        else:
            self._index = int(self.episode_indices[self.np_random.integers(self.n_sessions)])
        self._step = 0
        self._actions = [HOLD] * self.history
        self.executed_actions: list[int] = []
        self._invalid = 0
        self.ledger.reset()
        self._stop = ""
        return self._observation(), self._info()

    def action_masks(self) -> np.ndarray:
        """Valid actions now: ``[hold, long, short, close]``."""
        in_position = self.ledger.position != 0.0
        if self._step == self.session - 1:
            return np.array([not in_position, False, False, in_position])
        return np.array([True, not in_position, not in_position, in_position])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Fill the decision at the next open; reward the realised PnL change net of fees."""
        action = self._validate(action)
        if self._stop:
            self._refuse_step()
        ledger = self.ledger
        bar = self.context - 1 + self._step  # the decision bar (row within the session)
        fill_bar = bar + 1
        price = float(self._open[self._index, fill_bar])
        last = self._step == self.session - 1
        net_before = ledger.realized_pnl - ledger.fees_paid
        in_position = ledger.position != 0.0
        if not self.action_masks()[action]:
            self._invalid += 1  # ignored (or, on the last bar, replaced by the forced close)
            action = CLOSE if last and in_position else HOLD
        if action in (LONG, SHORT):
            target = self.position_fraction if action == LONG else -self.position_fraction
            ledger.trade(ledger.units_for_exposure(target, price), price, fill_bar)
        elif action == CLOSE:
            ledger.close(price, fill_bar)
        reward = (ledger.realized_pnl - ledger.fees_paid - net_before) / self.initial_balance
        if action == HOLD and ledger.position == 0.0:
            reward -= self.inaction_penalty
        self.executed_actions.append(action)
        if self.history:
            self._actions = [*self._actions[1:], action]
        self._step += 1
        terminated = self._step >= self.session
        if terminated:
            self._stop = "terminated"
        return self._observation(), float(reward), terminated, False, self._info(terminated)

    # ------------------------------------------------------------------ observing recent bars
    @classmethod
    def observer(
        cls, bars: pd.DataFrame, settings: Mapping[str, Any], normalizer: FeatureNormalizer
    ) -> CryptoFuturesSessionEnv:
        """An env over one session made of ``bars`` (a canonical frame: the session's ``context`` bars,
        then one more per step taken) with a trained env's ``settings`` and ``normalizer``.

        A session array has a fixed length (``context + session``): the rows after the last given bar
        repeat it. They are placeholders the observation never reads (features of a row read that row
        and the one before), which the bit-for-bit test of the builder checks."""
        kwargs = {name: value for name, value in settings.items() if name not in cls.data_keywords}
        context = keywords.integer("context", kwargs.get("context", 30), low=2)
        session = keywords.integer("session", kwargs.get("session", 10), low=1)
        values = session_values(bars)
        if not context <= len(values) < context + session:
            raise ValueError(
                f"a session's bars so far are its {context} context bars and one more per step (at most "
                f"{context + session - 1}), got {len(values)}"
            )
        padded = np.concatenate((values, np.repeat(values[-1:], context + session - len(values), axis=0)))
        freq = freq_str(pd.Timedelta(bars.index[1] - bars.index[0])) if len(bars) > 1 else None
        sessions = SessionSet(
            padded[None],
            np.array(["live"]),
            np.array([bars.index[context - 1].as_unit("ns").to_datetime64()], dtype="datetime64[ns]"),
            context,
            session,
            {"source": "bars", **({"freq": freq} if freq else {})},
        )
        return cls(sessions, **kwargs, split="all", split_fractions=(1.0, 0.0, 0.0), normalizer=normalizer)

    def observation_at(self, t: int, account: Any = None) -> np.ndarray:
        """The observation on row ``t`` of the current session (``context - 1 + step``) for a
        :class:`~sb3_crypto.envs.observation.SessionAccount`: the ledger holds its position and entry
        price, the last ``history`` executed actions are shown; the env's own observation."""
        first = self.context - 1
        t = keywords.integer("t", t, low=first, high=first + self.session - 1)
        account = SessionAccount.of(account)
        step = t - first
        actions = list(account.actions or ())
        if len(actions) != step and (account.actions is not None or (step and self.history)):
            raise ValueError(
                f"account.actions must hold the {step} action(s) executed so far this session (one per bar after "
                f"the context), got {len(actions)}"
            )
        self.ledger.reset()
        self.ledger.position = account.position
        self.ledger.entry_price = account.entry_price if account.position else 0.0
        self._step = step
        self.executed_actions = actions
        self._actions = ([HOLD] * self.history + actions)[len(actions) :] if self.history else []
        self._invalid = 0
        return self._observation()

    def describe_action(self, action: Any) -> dict[str, Any]:
        """What ``action`` does now: itself when valid (see :meth:`action_masks`), else the hold (or,
        on the last step in a position, the close) the env executes instead."""
        choice = self._validate(action)
        valid = bool(self.action_masks()[choice])
        executed = choice
        if not valid:
            executed = CLOSE if self._step == self.session - 1 and self.ledger.position != 0.0 else HOLD
        meaning = ACTION_MEANINGS[choice]
        if not valid:
            meaning += f" (not valid now: the env executes {ACTION_MEANINGS[executed]})"
        return {"meaning": meaning, "valid": valid, "executed": ACTION_MEANINGS[executed]}

    def observation_spec(self) -> dict[str, Any]:
        """What builds this env's observations from a session's raw bars (see
        :mod:`sb3_crypto.envs.observation`): id, keyword arguments, the statistics fitted on the earliest
        training sessions, the layout, the account state and the bars (``context`` to
        ``context + session - 1`` of them, starting with the session's first context bar)."""
        freq = self.sessions.meta.get("freq")
        warmup = getattr(self, "_warmup_sessions", np.array([], dtype=int))
        fitted = None
        if len(warmup):
            times = self.sessions.signal_times[warmup]
            fitted = {
                "source": str(self.sessions.meta.get("source", "sessions")),
                "first_signal": pd.Timestamp(times.min(), tz="UTC").isoformat(),
                "last_signal": pd.Timestamp(times.max(), tz="UTC").isoformat(),
                "sessions": len(warmup),
            }
        most = self.context + self.session - 1
        bars = {
            "needed": self.context,
            "most": most,
            "window_size": self.window_size,
            "lookback": 0,
            "freq": None if freq is None else freq_str(pd.Timedelta(freq)),
            "close_only": False,
            "requirement": (
                f"the session's bars so far: its {self.context} context bars (ending with the signal bar) and one "
                f"more per step taken, {self.context} to {most} bars"
            ),
        }
        return make_spec(self, self.normalizer, bars, fitted)

    # ------------------------------------------------------------------ pieces
    def _validate(self, action: Any) -> int:
        array = np.asarray(action)
        if array.size != 1 or (
            not np.issubdtype(array.dtype, np.integer) and not float(array.reshape(-1)[0]).is_integer()
        ):
            raise ValueError(f"{type(self).__name__}: action must be one integer in 0..3, got {action!r}")
        value = int(array.reshape(-1)[0])
        if not 0 <= value <= 3:
            raise ValueError(f"{type(self).__name__}: action must be in 0..3 ({ACTION_MEANINGS}), got {value}")
        return value

    def _observation(self) -> np.ndarray:
        bar = self.context - 1 + self._step
        window = self._features[self._index, bar - self.window_size + 1 : bar + 1].reshape(-1)
        ledger = self.ledger
        price = float(self._close[self._index, bar])
        position = float(np.sign(ledger.position))
        unrealized = ledger.unrealized_pnl(price) / self.initial_balance
        account = [
            position,
            min(max(unrealized, -self.obs_bound), self.obs_bound),
            self._step / self.session,
            (self.session - self._step) / self.session,
        ]
        one_hot = np.zeros((self.history, 4), dtype=np.float32)
        if self.history:
            one_hot[np.arange(self.history), self._actions] = 1.0
        return np.concatenate((window, np.asarray(account, dtype=np.float32), one_hot.reshape(-1)))

    def _info(self, done: bool = False) -> dict[str, Any]:
        ledger = self.ledger
        bar = self.context - 1 + self._step
        ticker = str(self.sessions.tickers[self._index])
        signal = pd.Timestamp(self.sessions.signal_times[self._index], tz="UTC")
        info = {
            "session": (ticker, signal),
            "timestamp": signal + pd.Timedelta(self._bar_ns * (bar - self.context + 1), unit="ns"),
            "step": self._step,
            "position": ledger.position,
            "realized_pnl": ledger.realized_pnl - ledger.fees_paid,
            "fees_paid": ledger.fees_paid,
            "trades": ledger.n_trades,
            "invalid_actions": self._invalid,
            "equity": ledger.equity(float(self._close[self._index, bar])),
        }
        if done:
            info["profitable"] = info["realized_pnl"] > 0
        return info


__getattr__ = moved_names(
    __name__,
    {name: "sb3_crypto.evaluation.sessions" for name in ("SessionRecord", "run_sessions", "evaluate_sessions")},
)
