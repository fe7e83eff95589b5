"""Observations from raw bars and an account: one feature path from training to serving.

A model trained in one of the package's envs acts on live data only if it sees exactly the
observations it was trained on. Three pieces make sure of that:

* The **observation spec** (``env.observation_spec()``, a JSON-friendly dict, format
  :data:`SPEC_FORMAT`) is what builds an env's observations: the env id, the keyword arguments the
  env was made with (the ``features`` setting whatever it holds, ``window_size``, costs, ...), the
  normaliser statistics fitted on the **training** env's warm-up slice (``FeatureNormalizer.to_dict()``),
  the observation layout, the account state the env needs and how many raw bars it reads. It
  travels inside the model's zip (:func:`sb3_crypto.algorithms.model_io.save_observation_spec`) and
  in ONNX metadata.
* The **account state** (:class:`TradingAccount`, :class:`SpotAccount`, :class:`DCAAccount`,
  :class:`SessionAccount`; ``env_class.account_state`` names it) is what the account features of an
  observation are made of, at the close of the decision bar.
* :class:`ObservationBuilder` turns recent raw OHLCV bars (with timestamps) plus an account state
  into the env's observation at the last bar. It does not re-implement anything: it makes the env
  class itself over the given bars with the saved settings and statistics (``cls.observer``, which
  calls the same :func:`~sb3_crypto.data.build_market` / session functions as training) and asks it
  for its observation (``env.observation_at(t, account)``, which sets the ledger and episode state and
  returns the env's own ``_observation``). ``tests/envs/test_observation.py`` holds it bit-for-bit
  equal to the env's observation at every step of a test split, for every registered env id.

Bars needed: ``window_size + lookback`` (``lookback``: bars before a bar its features read, 1 for
``"zscore"`` and ``"pct_change"``); for ``CryptoFuturesSession-v0`` the session's bars so far (its
``context`` bars, then one more per step taken). Features with unbounded memory (EMA-based
indicators) match the training env only when given the same history: live use needs a history long
enough for such indicators to converge (send more bars than the minimum).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.features import FeatureNormalizer
from sb3_crypto.data.loaders import FRAME_HINT, DataError, GapWarning, freq_str, infer_freq, load_ohlcv
from sb3_crypto.envs.registration import ENV_IDS, env_class, register_envs
from sb3_crypto.version import __version__

#: ``format`` of an observation spec; ``version`` is :data:`SPEC_VERSION`.
SPEC_FORMAT = "sb3_crypto.observation_spec"
SPEC_VERSION = 1
#: Columns a bar may have (``timestamp`` plus these); others are refused by name.
BAR_FIELDS = ("open", "high", "low", "close", "volume", "vwap", "trades")


class ObservationInputError(ValueError):
    """Bars or an account state that cannot make an observation; the message names the bar or field."""


# ---------------------------------------------------------------------------------------- accounts
@dataclass(frozen=True)
class AccountState:
    """What an env's account features are made of at the close of the decision bar. Build one from a
    mapping with :meth:`of` (unknown names are refused, each value checked by name)."""

    #: Short description of each field (documentation and error messages).
    fields_help: ClassVar[dict[str, str]] = {}

    @classmethod
    def of(cls, value: Any) -> AccountState:
        """``value`` as this account state: ``None`` (the env's fresh account), an instance, or a mapping
        of field names to values."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ObservationInputError(
                f"account must be a mapping of {', '.join(cls.field_names())}, got {keywords.describe(value)}"
            )
        unknown = sorted(str(name) for name in value if name not in cls.field_names())
        if unknown:
            raise ObservationInputError(
                f"account: unknown field(s) {', '.join(unknown)} for {cls.__name__}; "
                f"its fields are {', '.join(cls.field_names())}"
            )
        try:
            return cls(**value)
        except (TypeError, ValueError) as error:
            raise ObservationInputError(str(error)) from None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The fields, in order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly values."""
        return {name: _plain(getattr(self, name)) for name in self.field_names()}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _real(name: str, value: Any, **limits: Any) -> float:
    return keywords.real(f"account.{name}", value, **limits)


@dataclass(frozen=True)
class TradingAccount(AccountState):
    """``CryptoTrading-v0`` at the close of the decision bar.

    :param cash: quote currency held (negative when buying with leverage, above the starting cash
        after a short sale); ``None``: the env's ``initial_cash`` (a fresh account).
    :param position: signed units of the asset (negative = short).
    :param entry_price: average entry price of the open position (0 when flat).
    :param peak_equity: highest equity marked at a close this episode (``None``: the current equity,
        i.e. no drawdown); the drawdown feature is ``1 - equity / max(peak_equity, equity)``.
    :param step: decisions already taken this episode (0 at the first).
    :param episode_length: decisions per episode (``None``: the training env's ``episode_length``);
        the ``time_left`` feature is ``(episode_length - step) / episode_length``. Live trading has no
        episode end: training saw ``time_left`` between ``1 / episode_length`` and 1, e.g. keep ``step``
        at 0, or count it up and wrap it around.

    Equity is ``cash + position * close`` of the decision bar and must be positive.
    """

    cash: float | None = None
    position: float = 0.0
    entry_price: float = 0.0
    peak_equity: float | None = None
    step: int = 0
    episode_length: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "cash", None if keywords.is_none(self.cash) else _real("cash", self.cash))
        set_(self, "position", _real("position", self.position))
        set_(self, "entry_price", _real("entry_price", self.entry_price, low=0.0))
        if not keywords.is_none(self.peak_equity):
            set_(self, "peak_equity", _real("peak_equity", self.peak_equity, low=0.0, low_inclusive=False))
        else:
            set_(self, "peak_equity", None)
        set_(self, "step", keywords.integer("account.step", self.step, low=0))
        set_(self, "episode_length", keywords.optional_integer("account.episode_length", self.episode_length, low=1))


@dataclass(frozen=True)
class SpotAccount(AccountState):
    """``CryptoSpot-v0`` at the close of the decision bar.

    :param cash: quote currency held (``None``: the env's ``initial_cash``).
    :param coins: units of the asset held (``None``: the env's ``initial_coins``).
    """

    cash: float | None = None
    coins: float | None = None

    def __post_init__(self) -> None:
        for name in ("cash", "coins"):
            value = getattr(self, name)
            checked = None if keywords.is_none(value) else _real(name, value, low=0.0)
            object.__setattr__(self, name, checked)


@dataclass(frozen=True)
class DCAAccount(AccountState):
    """``CryptoDCA-v0`` inside a cycle that has not bought yet.

    :param step: bars of the cycle already passed (0 on the cycle's first bar, ``cycle_length - 1``
        on its last, where the purchase is forced).
    """

    step: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "step", keywords.integer("account.step", self.step, low=0))


@dataclass(frozen=True)
class SessionAccount(AccountState):
    """``CryptoFuturesSession-v0`` inside a session; the step (trading bars passed) is the number of
    bars given after the session's ``context`` bars.

    :param position: signed units held (0 when flat).
    :param entry_price: entry price of the open position (0 when flat).
    :param actions: the actions executed so far this session, oldest first (0 hold, 1 long, 2 short,
        3 close; an invalid action counts as the hold or close the env executed instead), one per
        step; ``None`` when none were taken yet.
    """

    position: float = 0.0
    entry_price: float = 0.0
    actions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", _real("position", self.position))
        object.__setattr__(self, "entry_price", _real("entry_price", self.entry_price, low=0.0))
        if self.actions is not None:
            values = keywords.items("account.actions", self.actions, what="actions")
            checked = tuple(keywords.integer(f"account.actions[{k}]", v, low=0, high=3) for k, v in enumerate(values))
            object.__setattr__(self, "actions", checked)


# ---------------------------------------------------------------------------------------- the spec
def registered_id(env: Any) -> str | None:
    """The registered id of an env: its ``spec.id`` when made by ``gym.make``, else the id whose
    entry point is the env's class."""
    spec = getattr(env, "spec", None)
    if spec is not None and spec.id in ENV_IDS:
        return spec.id
    cls = type(env)
    entry = f"{cls.__module__}:{cls.__qualname__}"
    return next((env_id for env_id, point in ENV_IDS.items() if point == entry), None)


def json_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """An env's keyword arguments as JSON values, and a description of ``data`` when it is a frame.

    ``data`` keeps a path or ``"synthetic"``; a DataFrame becomes ``None`` (the builder never needs
    the training data). A value JSON cannot hold raises :class:`TypeError` naming the keyword.
    """
    out: dict[str, Any] = {}
    source = None
    for name, value in settings.items():
        if name == "data" and isinstance(value, pd.DataFrame):
            source = str(value.attrs.get("source", "DataFrame"))
            value = None
        elif name == "data" and isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif name == "funding" and isinstance(value, (pd.DataFrame, pd.Series)):
            value = None  # funding rates of the training bars: an observer never reads them
        elif name == "funding" and isinstance(value, os.PathLike):
            value = os.fspath(value)
        elif isinstance(value, FeatureNormalizer):
            value = value.to_dict()
        try:
            out[name] = json.loads(json.dumps(value, default=_json_default, allow_nan=False))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"env keyword {name}={keywords.describe(value)} cannot be written to the observation spec "
                f"(JSON): {error}"
            ) from None
    return out, source


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (pd.Timestamp, pd.Timedelta)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _space(space: Any) -> dict[str, Any]:
    if hasattr(space, "n"):
        return {"type": "Discrete", "n": int(space.n)}
    return {"type": type(space).__name__, "shape": list(space.shape)}


def make_spec(
    env: Any,
    normalizer: FeatureNormalizer,
    bars: dict[str, Any],
    statistics: dict[str, Any] | None,
) -> dict[str, Any]:
    """The observation spec of ``env`` (called by the env classes' ``observation_spec``).

    :param bars: what raw bars the builder needs: ``needed`` (fewest), ``most`` (``None``: no limit),
        ``freq`` (bar spacing, ``None`` when unknown), ``close_only``, ``window_size`` and ``lookback``.
    :param statistics: where the normaliser statistics were fitted (source and first / last bar of
        the warm-up slice), ``None`` when nothing was fitted.
    """
    settings, data_source = json_settings(getattr(env, "settings", {}) or {})
    account = env.account_state
    return {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSION,
        "env_id": registered_id(env),
        "env_kwargs": settings,
        "data_source": data_source,
        "normalizer": normalizer.to_dict(),
        "statistics_fitted_on": statistics,
        "observation_layout": env.observation_layout.to_dict(),
        "observation_shape": [int(env.observation_layout.size)],
        "action_space": _space(env.action_space),
        "account_state": {"type": account.__name__, "fields": list(account.field_names())},
        "account_features": list(env.observation_layout.account),
        "bars": bars,
        "package_version": __version__,
    }


def check_spec(spec: Any, source: str = "observation spec") -> dict[str, Any]:
    """``spec`` when it is an observation spec this version reads, else a ValueError naming ``source``."""
    if not isinstance(spec, Mapping) or spec.get("format") != SPEC_FORMAT:
        raise ValueError(f"{source}: not an sb3_crypto observation spec (format {SPEC_FORMAT!r})")
    if spec.get("version") != SPEC_VERSION:
        raise ValueError(
            f"{source}: observation spec version {spec.get('version')!r}; this sb3_crypto ({__version__}) reads "
            f"version {SPEC_VERSION}"
        )
    missing = [key for key in ("env_id", "env_kwargs", "normalizer", "observation_layout", "bars") if key not in spec]
    if missing:
        raise ValueError(f"{source}: observation spec without {', '.join(missing)}")
    return dict(spec)


# ---------------------------------------------------------------------------------------- bars
def bars_frame(bars: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Bars given as a DataFrame (a ``DatetimeIndex`` or a ``timestamp`` column) or as records
    ``[{"timestamp": ..., "open": ..., ...}, ...]``, as a frame with a ``timestamp`` column; only
    ``columns`` are kept when given (close-only models read the close alone)."""
    if isinstance(bars, pd.DataFrame):
        frame = bars.rename_axis("timestamp").reset_index() if isinstance(bars.index, pd.DatetimeIndex) else bars
        frame = frame.copy()
    else:
        if isinstance(bars, (str, bytes)) or not isinstance(bars, Sequence):
            raise ObservationInputError(
                f"bars must be a list of bars (timestamp, open, high, low, close, volume), got "
                f"{keywords.describe(bars)}"
            )
        for k, bar in enumerate(bars):
            if not isinstance(bar, Mapping):
                raise ObservationInputError(
                    f"bars[{k}] must be a mapping of timestamp and prices, got {keywords.describe(bar)}"
                )
            unknown = sorted(str(name) for name in bar if name != "timestamp" and name not in BAR_FIELDS)
            if unknown:
                raise ObservationInputError(
                    f"bars[{k}]: unknown field(s) {', '.join(unknown)}; a bar has timestamp, {', '.join(BAR_FIELDS)}"
                )
            if "timestamp" not in bar:
                raise ObservationInputError(f"bars[{k}] has no timestamp")
        frame = pd.DataFrame(
            [{key: (np.nan if value is None else value) for key, value in bar.items()} for bar in bars]
        )
    if columns is not None and len(frame):
        keep = [name for name in frame.columns if str(name).lower() in ("timestamp", *columns)]
        frame = frame[keep]
    frame.attrs = {"source": "bars"}
    return frame


def bar_records(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Bars of a canonical frame (``load_ohlcv``) as the records ``/act`` takes: ``{"timestamp": ISO text,
    "open": ..., ...}`` per bar, oldest first, with ``columns`` only when given (``["close"]`` for a
    close-only model)."""
    names = [name for name in (columns or BAR_FIELDS) if name in frame.columns]
    values = frame[names].to_numpy(dtype="float64").tolist()
    return [{"timestamp": time.isoformat(), **dict(zip(names, row))} for time, row in zip(frame.index, values)]


def spacing(text: str) -> pd.Timedelta:
    """A bar spacing as :func:`~sb3_crypto.data.loaders.freq_str` writes it (``"1d"``, ``"4h"``, ``"15min"``)."""
    text = str(text).strip()
    return pd.Timedelta(text[:-1] + "D") if text.endswith("d") and text[:-1].isdigit() else pd.Timedelta(text)


def _where(index: pd.DatetimeIndex, k: int) -> str:
    return f"bars[{k}] ({index[k].isoformat()})"


# ---------------------------------------------------------------------------------------- builder
@dataclass
class BuiltObservation:
    """An observation made by :class:`ObservationBuilder` with what the decision is about.

    ``env`` is the env that made it (its ledger and episode state set from the account):
    :meth:`describe_action` and ``action_masks`` read it.
    """

    observation: np.ndarray
    env: Any
    bar: int  #: row of the decision bar in the bars given (the last one)
    decided_on_close_of: pd.Timestamp  #: timestamp of the decision bar: the decision is taken on its close
    fills_at_open_of: pd.Timestamp  #: timestamp of the next bar: the order fills at its open
    n_bars: int  #: bars given
    account: AccountState  #: the account state the observation was built with

    @property
    def action_masks(self) -> np.ndarray | None:
        """The env's valid actions now, when it has action masks."""
        masks = getattr(self.env, "action_masks", None)
        return np.asarray(masks(), dtype=bool) if callable(masks) else None

    def describe_action(self, action: Any) -> dict[str, Any]:
        """What ``action`` does now: ``{"meaning": text, ...}`` from the env (target exposure for
        ``CryptoTrading-v0``, hold / long / short / close for the session env, ...)."""
        return self.env.describe_action(action)


class ObservationBuilder:
    """Raw recent bars plus an account state -> exactly the env's observation at the last bar.

    :param spec: an observation spec (``env.observation_spec()``, or read from a model with
        :func:`sb3_crypto.algorithms.model_io.load_observation_spec`).

    ``build(bars, account)`` validates the bars as the loader does (order, duplicates, NaN,
    non-positive prices, high < low, ...; each error names the bar, ``bars[k]``), requires at least
    :attr:`bars_needed` of them spaced as the training data (``spec["bars"]["freq"]``: a gap or an
    irregular step is refused naming the bar), makes the env class over them with the spec's
    settings and fitted statistics and returns its observation at the last bar with the decision
    and fill times. Errors raise :class:`ObservationInputError` (bars, account) naming what is wrong.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = check_spec(spec)
        register_envs()
        env_id = self.spec["env_id"]
        cls = env_class(env_id) if env_id is not None else None
        if cls is None or not hasattr(cls, "observer"):
            raise ValueError(
                f"observation spec of env {env_id!r}: not a registered sb3_crypto env id ({sorted(ENV_IDS)})"
            )
        self.env_id: str = env_id
        self.env_class = cls
        self.account_state: type[AccountState] = cls.account_state
        self.normalizer = FeatureNormalizer.from_dict(self.spec["normalizer"])
        self.settings: dict[str, Any] = dict(self.spec["env_kwargs"])
        bars = self.spec["bars"]
        self.bars_needed: int = int(bars["needed"])
        self.bars_most: int | None = None if bars.get("most") is None else int(bars["most"])
        self.freq: pd.Timedelta | None = None if bars.get("freq") is None else spacing(bars["freq"])
        self.close_only = bool(bars.get("close_only", False))

    @property
    def observation_size(self) -> int:
        """Length of the observation vector."""
        return int(self.spec["observation_shape"][0])

    def requirement(self) -> str:
        """How many bars are needed, in words."""
        return str(self.spec["bars"].get("requirement") or f"at least {self.bars_needed} bars")

    def frame(self, bars: Any) -> pd.DataFrame:
        """The bars validated into a canonical frame (see the class docstring)."""
        frame = bars_frame(bars, ("close",) if self.close_only else None)
        n = len(frame)
        if n < self.bars_needed:
            raise ObservationInputError(f"bars: {n} given, but {self.requirement()} are needed")
        if self.bars_most is not None and n > self.bars_most:
            raise ObservationInputError(f"bars: {n} given, but at most {self.bars_most} ({self.requirement()})")
        if self.close_only and "close" not in {str(c).lower() for c in frame.columns}:
            raise ObservationInputError("bars: no close prices (this model reads the close of each bar)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GapWarning)  # gaps are refused below, naming the bar
                canonical = load_ohlcv(frame, min_rows=1)
        except DataError as error:
            raise ObservationInputError(_bar_names(str(error), self.close_only)) from None
        index = canonical.index
        steps = np.diff(index.as_unit("ns").asi8)
        step = self.freq if self.freq is not None else infer_freq(index)
        if step is not None and len(steps):
            bad = np.flatnonzero(steps != step.value)
            if bad.size:
                k = int(bad[0]) + 1
                gap = pd.Timedelta(int(steps[bad[0]]), unit="ns")
                raise ObservationInputError(
                    f"bars: {_where(index, k)} comes {gap} after {_where(index, k - 1)}; bars must be consecutive "
                    f"{freq_str(step)} bars (as in training), with no gap"
                )
        return canonical

    def build(self, bars: Any, account: Any = None) -> BuiltObservation:
        """The env's observation at the last of ``bars`` for ``account`` (a mapping, an
        :attr:`account_state` or ``None`` for a fresh account)."""
        frame = self.frame(bars)
        state = self.account_state.of(account)
        # A close-only model's env gets the close alone, so that the loader makes close-only bars of it
        # as it did of the training file (a canonical frame's copied open / high / low would not be).
        data = frame[["close"]] if self.close_only else frame
        try:
            env = self.env_class.observer(data, self.settings, self.normalizer)
        except DataError as error:  # the bars cannot make this env's market (the settings can: they trained)
            raise ObservationInputError(_bar_names(str(error), self.close_only)) from None
        t = len(frame) - 1
        try:
            observation = env.observation_at(t, state)
        except (TypeError, ValueError) as error:
            raise ObservationInputError(str(error)) from None
        if observation.shape != (self.observation_size,):
            raise ValueError(
                f"{self.env_id} built an observation of shape {observation.shape}, the spec says "
                f"{self.spec['observation_shape']}: the env's settings changed since the model was saved"
            )
        decided = frame.index[-1]
        step = self.freq if self.freq is not None else infer_freq(frame.index)
        fills = decided + step if step is not None else decided
        return BuiltObservation(observation, env, t, decided, fills, len(frame), state)

    def observation(self, bars: Any, account: Any = None) -> np.ndarray:
        """Only the observation of :meth:`build`."""
        return self.build(bars, account).observation


def _bar_names(message: str, close_only: bool = False) -> str:
    """The loader names rows of a frame ``row k (time)``; the bars of a request are ``bars[k]`` (and the
    loader's hint to repair a file does not apply to them). Close-only bars are their close: the
    loader's copies of it as open / high / low are named as the close."""
    message = message.replace(FRAME_HINT, "Send the bars oldest first, one per timestamp.")
    if close_only:
        message = re.sub(r"column '(open|high|low)'", "column 'close'", message)
    return re.sub(r"\brow (\d+)\b", r"bars[\1]", message)


__all__ = [
    "SPEC_FORMAT",
    "SPEC_VERSION",
    "AccountState",
    "BuiltObservation",
    "DCAAccount",
    "ObservationBuilder",
    "ObservationInputError",
    "SessionAccount",
    "SpotAccount",
    "TradingAccount",
    "bar_records",
    "bars_frame",
    "check_spec",
    "json_settings",
    "make_spec",
    "registered_id",
]
