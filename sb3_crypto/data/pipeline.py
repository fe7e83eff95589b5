"""The feature spec: base features, indicators, user functions and higher timeframes, leak-checked.

An env's ``features`` keyword is one of the strings ``"zscore"`` / ``"pct_change"`` (the base
features of :mod:`sb3_crypto.data.features`, exactly as before) or a mapping, e.g. in YAML::

    features:
      base: zscore              # zscore (default) | pct_change | none
      leak_check: true          # default: every feature is leak-checked when the env is built
      indicators:
        - {name: rsi, period: 14}
        - {name: macd, fast: 12, slow: 26, signal: 9}
        - {name: atr, period: 14}
        - {name: bollinger_width, period: 20, k: 2}
        - {name: realized_vol, period: 24}
        - {name: volume_zscore, period: 48}
        - {name: returns, k: 4}
        - {name: rsi, period: 14, timeframe: 4h}           # on 4-hour bars made from the base bars
        - function: mypackage.features:my_feature          # a user function
          columns: [close, volume]                         # the columns it receives (default: all)
          lookback: 20                                     # bars of history it needs (default 1)
          kwargs: {span: 10}                               # keyword arguments (default none)
          name: mine                                       # channels become mine_<column> (optional)

Every item is one **feature**; it gives one or more **channels** of the observation window, named
``rsi_14``, ``macd_12_26_9``, ``macd_signal_12_26_9``, ``rsi_14@4h`` (see
:mod:`sb3_crypto.data.indicators` for every built-in and its parameters). The whole spec is plain
YAML-serialisable data (:meth:`FeatureSpec.to_dict`); the only fitted state of the pipeline is the
:class:`~sb3_crypto.data.features.FeatureNormalizer`, which z-scores every channel on the training
warm-up (the ``pct_change`` base channels keep their scale-free values: mean 0, standard deviation 1).

**User functions** are named ``module.sub:function``; the function gets a DataFrame of the bars
(the ``columns`` asked for, the bars' UTC open-time index, a copy) and returns a DataFrame with the
same index, one numeric column per channel. The channels take the returned column names (prefixed
by ``name_`` when ``name`` is given). The first ``lookback - 1`` rows are treated as its warm-up.

**Higher timeframes** (``timeframe: 4h``, ``1d``, ``15min``, ``1w``: a whole multiple of the bar
spacing) resample the base bars into bins aligned on the Unix epoch (days start at 00:00 UTC),
compute the feature on them and show, at base bar *t*, the value of the last higher bar whose close
time (bin open + timeframe) is at or before bar *t*'s close time (its open + the bar spacing). Index
timestamps are bar **open** times: a 4h bar opening at 00:00 closes at 04:00 and is first visible
on the hourly bar opening at 03:00 (which closes at 04:00).

**Leak check** (``leak_check: true``, the default): each feature is computed on the whole data and
again on prefixes of it that end at a few cut points (:func:`leak_check_cuts`: at the first bar of
each split, at the end of the normalisation warm-up, at a quarter, half and three quarters of the
data and one bar before its end). On the bars both share the values must agree within float
round-off (``|a - b| <= 1e-12 + 1e-9 |b|``) and NaN where the other is NaN; otherwise
:class:`LeakError` names the feature, the channel and the first bar that changed. A causal feature
(one that reads only bars up to its own) always passes; ``shift(-1)``, centred windows and
statistics over the whole sample fail.

**Warm-up**: leading NaN rows of a feature are its warm-up. Episodes start once every channel is
finite over the whole observation window (:attr:`~sb3_crypto.data.market.Market.features_start`);
a NaN after a feature's warm-up, or an infinite value anywhere, is a :class:`FeatureError` naming
the feature, the channel and the bar.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.features import (
    PCT_FEATURES,
    compute_features,
    compute_pct_features,
    feature_channels,
)
from sb3_crypto.data.indicators import INDICATORS, check_parameters
from sb3_crypto.data.loaders import DataError, _nanos

#: The base features a spec can start from (``none``: indicators only).
BASE_KINDS = ("zscore", "pct_change", "none")
#: The keys of a spec mapping.
SPEC_OPTIONS = ("base", "indicators", "leak_check")
#: The keys of a user-function item.
FUNCTION_OPTIONS = ("function", "columns", "lookback", "kwargs", "name", "timeframe")
#: Leak-check tolerance: values on shared bars must satisfy ``|a - b| <= LEAK_ATOL + LEAK_RTOL * |b|``.
LEAK_RTOL = 1e-9
LEAK_ATOL = 1e-12
#: Largest ``lookback`` a user function may declare.
MAX_LOOKBACK = 100_000

_UNITS = {"s": "s", "sec": "s", "min": "min", "h": "h", "d": "D", "w": "W"}
_TIMEFRAME = re.compile(r"^\s*(\d+)\s*(s|sec|min|h|d|w)\s*$", re.IGNORECASE)
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: How each canonical column aggregates into a higher-timeframe bar.
_AGGREGATE = {
    "open": "first",
    "high": "max",
    "low": "min",
    "close": "last",
    "volume": "sum",
    "trades": "sum",
    "vwap": "volume-weighted mean",
}


class FeatureError(DataError):
    """A feature cannot be used: a user function fails or returns the wrong thing, or a feature is
    NaN after its warm-up or infinite (the message names the feature, the channel and the bar)."""


class LeakError(FeatureError):
    """A feature's value at some bar changes when later bars are removed: it looks ahead."""


def timeframe_label(step: pd.Timedelta) -> str:
    """A duration as channel names show it: ``4h``, ``1d``, ``15min``, ``1w``, ``30s``."""
    seconds = int(step.total_seconds())
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_timeframe(name: str, value: Any) -> pd.Timedelta:
    """A higher timeframe such as ``"4h"``, ``"1d"``, ``"15min"``, ``"1w"`` (a fixed duration)."""
    expected = f"{name} must be a duration such as '15min', '4h', '1d' or '1w'"
    if not isinstance(value, str):
        raise TypeError(f"{expected}, got {keywords.describe(value)}")
    match = _TIMEFRAME.match(value)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{expected}, got {keywords.describe(value)}")
    return pd.Timedelta(int(match.group(1)), unit=_UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class FeatureItem:
    """One entry of ``indicators``: a built-in (``indicator`` and its ``params``) or a user function
    (``function``, its ``params`` are the ``kwargs``), optionally on a higher ``timeframe``."""

    position: str
    indicator: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    function: str | None = None
    columns: tuple[str, ...] | None = None
    lookback: int = 1
    prefix: str | None = None
    timeframe: pd.Timedelta | None = None
    target: Callable[..., Any] | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        """How messages name the feature: ``rsi(period=14)@4h``, or the function's ``name`` / path."""
        if self.indicator is not None:
            text = f"{self.indicator}({', '.join(f'{k}={v}' for k, v in self.params.items())})"
        else:
            text = self.prefix or str(self.function)
        return text + (f"@{timeframe_label(self.timeframe)}" if self.timeframe is not None else "")

    @property
    def suffix(self) -> str:
        """What the channel names of this feature end with (``@4h``, or nothing)."""
        return "" if self.timeframe is None else f"@{timeframe_label(self.timeframe)}"

    def to_dict(self) -> dict[str, Any]:
        """The item as it is written in YAML."""
        out: dict[str, Any]
        if self.indicator is not None:
            out = {"name": self.indicator, **self.params}
        else:
            out = {"function": self.function, "lookback": self.lookback}
            if self.columns is not None:
                out["columns"] = list(self.columns)
            if self.params:
                out["kwargs"] = dict(self.params)
            if self.prefix is not None:
                out["name"] = self.prefix
        if self.timeframe is not None:
            out["timeframe"] = timeframe_label(self.timeframe)
        return out


@dataclass(frozen=True)
class FeatureSpec:
    """A checked feature spec (see the module docstring). ``shorthand`` is true when the spec was
    given as the plain string ``"zscore"`` / ``"pct_change"``."""

    base: str = "zscore"
    indicators: tuple[FeatureItem, ...] = ()
    leak_check: bool = True
    shorthand: bool = False

    @property
    def needs_fit(self) -> bool:
        """Whether any channel is z-scored (and so a normalisation warm-up is needed)."""
        return self.base == "zscore" or bool(self.indicators)

    def to_dict(self) -> dict[str, Any]:
        """The spec as YAML-serialisable data (``feature_spec(spec.to_dict())`` gives it back)."""
        return {
            "base": self.base,
            "indicators": [item.to_dict() for item in self.indicators],
            "leak_check": self.leak_check,
        }


def feature_spec(value: Any, name: str = "features") -> FeatureSpec:
    """Check an env's ``features`` keyword: ``"zscore"``, ``"pct_change"`` or a spec mapping.

    :raises TypeError, ValueError: naming ``features`` (or the option inside it, such as
        ``features['indicators'][2]['period']``), the value and what is accepted; a user function
        that cannot be imported or is not callable is named with its path.
    """
    if isinstance(value, FeatureSpec):
        return value
    if isinstance(value, str):
        if value in ("zscore", "pct_change"):
            return FeatureSpec(base=value, shorthand=True)
        raise ValueError(
            f"unknown {name} {value!r}: {name} must be 'zscore', 'pct_change' or a feature spec mapping "
            f"(keys {', '.join(SPEC_OPTIONS)})"
        )
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be 'zscore', 'pct_change' or a feature spec mapping (keys {', '.join(SPEC_OPTIONS)}), "
            f"got {keywords.describe(value)}"
        )
    unknown = [key for key in value if key not in SPEC_OPTIONS]
    if unknown:
        raise ValueError(
            f"{name} has unknown option(s) {', '.join(repr(key) for key in unknown)}; known: {', '.join(SPEC_OPTIONS)}"
        )
    base = keywords.choice(f"{name}['base']", value.get("base", "zscore"), BASE_KINDS)
    leak_check = keywords.boolean(f"{name}['leak_check']", value.get("leak_check", True))
    given = value.get("indicators", ())
    listed = [] if keywords.is_none(given) else keywords.items(f"{name}['indicators']", given, what="feature items")
    items = tuple(feature_item(f"{name}['indicators'][{k}]", item) for k, item in enumerate(listed))
    if base == "none" and not items:
        raise ValueError(f"{name} has no channels: base is 'none' and indicators is empty")
    return FeatureSpec(base=base, indicators=items, leak_check=leak_check)


def feature_item(name: str, value: Any) -> FeatureItem:
    """One ``indicators`` entry: ``{name: rsi, period: 14[, timeframe: 4h]}`` or
    ``{function: module:function[, columns, lookback, kwargs, name, timeframe]}``."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a mapping such as {{name: rsi, period: 14}} or {{function: 'module:function'}}, "
            f"got {keywords.describe(value)}"
        )
    if "function" in value:
        return _function_item(name, value)
    if "name" not in value:
        raise ValueError(
            f"{name} needs 'name' (a built-in: {', '.join(INDICATORS)}) or 'function' ('module.sub:function'), "
            f"got {keywords.describe(dict(value))}"
        )
    indicator = keywords.choice(f"{name}['name']", value["name"], INDICATORS)
    timeframe = (
        None
        if keywords.is_none(value.get("timeframe"))
        else parse_timeframe(f"{name}['timeframe']", value["timeframe"])
    )
    given = {key: item for key, item in value.items() if key not in ("name", "timeframe")}
    params = check_parameters(INDICATORS[indicator], name, given)
    return FeatureItem(position=name, indicator=indicator, params=params, timeframe=timeframe)


def _function_item(name: str, value: Mapping[str, Any]) -> FeatureItem:
    unknown = [key for key in value if key not in FUNCTION_OPTIONS]
    if unknown:
        raise ValueError(
            f"{name} has unknown option(s) {', '.join(repr(key) for key in unknown)} for a user function; "
            f"known: {', '.join(FUNCTION_OPTIONS)}"
        )
    path = keywords.text(f"{name}['function']", value["function"]).strip()
    columns = None
    if not keywords.is_none(value.get("columns")):
        listed = keywords.items(f"{name}['columns']", value["columns"], what="column names")
        columns = tuple(keywords.text(f"{name}['columns'][{k}]", column) for k, column in enumerate(listed))
        if not columns:
            raise ValueError(
                f"{name}['columns'] must name at least one column, got {keywords.describe(value['columns'])}"
            )
    lookback = keywords.integer(f"{name}['lookback']", value.get("lookback", 1), low=1, high=MAX_LOOKBACK)
    kwargs = value.get("kwargs")
    if keywords.is_none(kwargs):
        kwargs = {}
    elif not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        raise TypeError(f"{name}['kwargs'] must be a mapping of keyword arguments, got {keywords.describe(kwargs)}")
    prefix = None if keywords.is_none(value.get("name")) else keywords.text(f"{name}['name']", value["name"])
    timeframe = (
        None
        if keywords.is_none(value.get("timeframe"))
        else parse_timeframe(f"{name}['timeframe']", value["timeframe"])
    )
    target = load_function(f"{name}['function']", path)
    return FeatureItem(
        position=name,
        params=dict(kwargs),
        function=path,
        columns=columns,
        lookback=lookback,
        prefix=prefix,
        timeframe=timeframe,
        target=target,
    )


def load_function(name: str, path: str) -> Callable[..., Any]:
    """The callable a ``module.sub:function`` path names; :class:`ValueError` naming the option and
    the path when it is malformed, cannot be imported, does not exist or is not callable."""
    if not _FUNCTION.match(path):
        raise ValueError(f"{name} must be a path 'module.sub:function', got {path!r}")
    module_name, attribute = path.split(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise ValueError(
            f"{name}: cannot import module {module_name!r} of {path!r} ({type(exc).__name__}: {exc})"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{name}: {path!r} does not exist (no attribute {part!r} in {module_name!r})")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{name}: {path!r} is not callable, it is {keywords.describe(target)}")
    return target


# ----------------------------------------------------------------------------------------- computing
@dataclass
class FeatureBlock:
    """The raw values of one feature over the data: ``values[t]`` for bar ``t`` (leading NaN rows are
    the feature's warm-up, ``lead`` of them)."""

    label: str
    position: str
    channels: tuple[str, ...]
    values: np.ndarray
    lead: int = 0


def resample_bars(frame: pd.DataFrame, timeframe: pd.Timedelta) -> pd.DataFrame:
    """Higher-timeframe bars from base bars: epoch-aligned bins ``[open, open + timeframe)`` labelled by
    their open time (open first, high max, low min, close last, volume and trades summed, vwap
    volume-weighted, or the plain mean in a bin without volume); bins without a base bar are left out.

    The same bins as ``frame.resample(timeframe, origin="epoch", label="left", closed="left")``, in
    numpy over the sorted index (several times faster: the leak check resamples every prefix).
    """
    if len(frame) == 0:
        return frame.copy()
    bins = _nanos(frame.index) // timeframe.value
    starts = np.flatnonzero(np.concatenate(([True], bins[1:] != bins[:-1])))
    ends = np.concatenate((starts[1:], [len(frame)])) - 1
    columns: dict[str, np.ndarray] = {}
    for name in frame.columns:
        values = frame[name].to_numpy(dtype="float64")
        if name == "open":
            columns[name] = values[starts]
        elif name == "close":
            columns[name] = values[ends]
        elif name == "high":
            columns[name] = np.maximum.reduceat(values, starts)
        elif name == "low":
            columns[name] = np.minimum.reduceat(values, starts)
        elif name in ("volume", "trades"):
            columns[name] = np.add.reduceat(values, starts)
        elif name == "vwap":
            volume = np.add.reduceat(frame["volume"].to_numpy(dtype="float64"), starts)
            weighted = np.add.reduceat(values * frame["volume"].to_numpy(dtype="float64"), starts)
            mean = np.add.reduceat(values, starts) / (ends - starts + 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                columns[name] = np.where(volume > 0, weighted / np.where(volume > 0, volume, 1.0), mean)
        else:
            raise ValueError(f"cannot resample column {name!r} to a higher timeframe (known: {', '.join(_AGGREGATE)})")
    index = pd.DatetimeIndex(pd.to_datetime(bins[starts] * timeframe.value, unit="ns", utc=True), name=frame.index.name)
    index = index.as_unit(frame.index.unit)
    higher = pd.DataFrame(columns, index=index)
    higher.attrs = dict(frame.attrs)
    return higher


def align_higher(
    values: np.ndarray,
    higher_index: pd.DatetimeIndex,
    timeframe: pd.Timedelta,
    index: pd.DatetimeIndex,
    step: pd.Timedelta,
) -> np.ndarray:
    """Map higher-timeframe values onto base bars: bar ``t`` shows the last higher bar whose close
    (open + ``timeframe``) is at or before bar ``t``'s close (open + ``step``); NaN before the first."""
    if len(higher_index) == 0:
        return np.full((len(index), values.shape[1]), np.nan)
    closes = _nanos(higher_index) + timeframe.value
    position = np.searchsorted(closes, _nanos(index) + step.value, side="right") - 1
    out = np.full((len(index), values.shape[1]), np.nan)
    visible = position >= 0
    out[visible] = values[position[visible]]
    return out


def base_block(frame: pd.DataFrame, base: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The base channels and raw values (``zscore``: log returns and log volume; ``pct_change``: S4)."""
    if base == "pct_change":
        return PCT_FEATURES, compute_pct_features(frame, clip=100.0)
    return feature_channels(frame), compute_features(frame)


def _check_columns(item: FeatureItem, frame: pd.DataFrame) -> None:
    """Refuse columns the data do not have, and indicators that need real high / low / volume on
    close-only data (where those are copies of the close and zeros)."""
    close_only = bool(frame.attrs.get("close_only", False))
    if item.indicator is not None:
        needs = INDICATORS[item.indicator].columns
        missing = [name for name in needs if name not in ("close",)] if close_only else []
        if missing:
            raise DataError(
                f"{frame.attrs.get('source', 'data')}: feature {item.label!r} ({item.position}) needs "
                f"{', '.join(missing)}, but the data are close-only"
            )
        return
    if item.columns is not None:
        missing = [name for name in item.columns if name not in frame.columns]
        if missing:
            raise DataError(
                f"feature {item.label!r} ({item.position}) asks for column(s) {missing} the data do not have; "
                f"columns: {', '.join(map(str, frame.columns))}"
            )


def call_function(item: FeatureItem, frame: pd.DataFrame) -> tuple[tuple[str, ...], np.ndarray]:
    """Run a user function on ``frame`` and check what it returns (a DataFrame, same index, numeric
    columns); :class:`FeatureError` naming the feature otherwise."""
    assert item.target is not None
    inputs = frame[list(item.columns)].copy() if item.columns is not None else frame.copy()
    where = f"feature {item.label!r} ({item.position})"
    try:
        result = item.target(inputs, **item.params)
    except Exception as exc:
        raise FeatureError(f"{where} raised {type(exc).__name__} on {len(frame)} bars: {exc}") from exc
    if not isinstance(result, pd.DataFrame):
        raise FeatureError(
            f"{where} returned {type(result).__name__}, expected a pandas DataFrame with one column per channel"
        )
    if len(result) != len(frame):
        raise FeatureError(f"{where} returned {len(result)} rows for {len(frame)} bars; it must return one row per bar")
    if not result.index.equals(frame.index):
        given = pd.Index(result.index)
        differs = np.flatnonzero(np.asarray(given != frame.index)) if len(given) else np.array([0])
        row = int(differs[0]) if len(differs) else 0
        raise FeatureError(
            f"{where} returned a frame whose index differs from the bars' at row {row} "
            f"(got {given[row]!r}, expected {frame.index[row]!r}); keep the index it was given"
        )
    if result.shape[1] == 0:
        raise FeatureError(f"{where} returned no columns; it must return one column per channel")
    names = [str(column) for column in result.columns]
    if len(set(names)) != len(names):
        raise FeatureError(f"{where} returned repeated column names {names}")
    values = np.empty(result.shape, dtype="float64")
    for k, column in enumerate(result.columns):
        try:
            values[:, k] = result[column].to_numpy(dtype="float64")
        except (TypeError, ValueError):
            raise FeatureError(
                f"{where} returned column {str(column)!r} of non-numeric {result[column].dtype}"
            ) from None
    if item.prefix is not None:
        names = [f"{item.prefix}_{name}" for name in names]
    return tuple(names), values


def compute_item(
    item: FeatureItem, frame: pd.DataFrame, step: pd.Timedelta | None
) -> tuple[tuple[str, ...], np.ndarray]:
    """Channels and raw values ``(len(frame), channels)`` of one spec item on ``frame``."""
    source = frame
    if item.timeframe is not None:
        assert step is not None
        source = resample_bars(frame, item.timeframe)
    if item.indicator is not None:
        indicator = INDICATORS[item.indicator]
        channels = indicator.channels(item.params)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.asarray(indicator.compute(source, item.params), dtype="float64")
    else:
        channels, values = call_function(item, source)
        if item.lookback > 1:
            values[: item.lookback - 1] = np.nan  # its declared warm-up
    if item.timeframe is not None:
        assert step is not None
        values = align_higher(values, source.index, item.timeframe, frame.index, step)
    return tuple(f"{name}{item.suffix}" for name in channels), values


def leak_check_cuts(
    n_bars: int, splits: Mapping[str, tuple[int, int]], warmup_end: int, min_bars: int = 2
) -> tuple[int, ...]:
    """Prefix lengths the leak check recomputes a feature on: data ending at the first bar of each
    split (``start + 1`` bars) and at the end of the normalisation warm-up, at 1/4, 1/2 and 3/4 of
    the data and one bar before its end; each at least ``min_bars`` and below ``n_bars``."""
    points = {warmup_end, n_bars // 4, n_bars // 2, (3 * n_bars) // 4, n_bars - 1}
    points.update(start + 1 for start, stop in splits.values() if stop > start)
    return tuple(sorted({max(k, min_bars) for k in points if max(k, min_bars) < n_bars}))


def check_leaks(
    label: str,
    position: str,
    compute: Callable[[pd.DataFrame], tuple[tuple[str, ...], np.ndarray]],
    frame: pd.DataFrame,
    channels: tuple[str, ...],
    values: np.ndarray,
    cuts: Sequence[int],
) -> None:
    """Recompute a feature on each prefix ``frame[:k]`` and compare with the full-data ``values`` on
    the shared bars; :class:`LeakError` at the earliest bar any prefix disagrees on."""
    first: tuple[int, int, int, float, float] | None = None  # row, cut, channel, full, prefix
    for k in cuts:
        prefix = frame.iloc[:k]
        prefix.attrs = dict(frame.attrs)
        try:
            names, part = compute(prefix)
        except FeatureError as exc:
            raise FeatureError(
                f"{exc} (leak check: the feature is recomputed on the first {k} bars of the data; declare the "
                "bars of history it needs with lookback)"
            ) from exc
        if names != channels:
            raise FeatureError(
                f"feature {label!r} ({position}) gave channels {list(names)} on the first {k} bars but "
                f"{list(channels)} on all {len(frame)} bars; its columns must not depend on the data's length"
            )
        reference = values[:k]
        same = part == reference  # exact agreement is the rule; NaN warm-ups and round-off only then
        if same.all():
            continue
        same |= np.isnan(part) & np.isnan(reference)
        if same.all():
            continue
        same |= np.isclose(part, reference, rtol=LEAK_RTOL, atol=LEAK_ATOL)
        if same.all():
            continue
        rows = np.flatnonzero(~same.all(axis=1))
        row = int(rows[0])
        if first is None or row < first[0]:
            column = int(np.flatnonzero(~same[row])[0])
            first = (row, k, column, float(reference[row, column]), float(part[row, column]))
    if first is not None:
        row, k, column, full, cut = first
        raise LeakError(
            f"feature {label!r} ({position}) looks ahead: channel {channels[column]!r} at bar "
            f"{frame.index[row].isoformat()} (row {row}) is {full:.10g} on the full data but {cut:.10g} when the data "
            f"end at {frame.index[k - 1].isoformat()} (row {k - 1}); a feature of bar t may only use bars up to t "
            "(no shift(-n), centred windows or statistics over the whole sample)"
        )


def warmup_rows(block: FeatureBlock, index: pd.DatetimeIndex) -> int:
    """Rows of leading NaN (the longest over the block's channels); :class:`FeatureError` for an
    infinite value, a NaN after the warm-up or a channel that is never finite."""
    values = block.values
    n = len(values)
    where = f"feature {block.label!r} ({block.position})"
    infinite = np.isinf(values)
    if infinite.any():
        row, column = (int(x[0]) for x in np.nonzero(infinite))
        raise FeatureError(
            f"{where}: channel {block.channels[column]!r} is infinite at bar {index[row].isoformat()} (row {row})"
        )
    finite = ~np.isnan(values)
    lead = np.where(finite.any(axis=0), finite.argmax(axis=0), n)
    never = np.flatnonzero(lead >= n)
    if len(never):
        raise FeatureError(f"{where}: channel {block.channels[never[0]]!r} is NaN on every one of the {n} bars")
    late = ~finite & (np.arange(n)[:, None] >= lead[None, :])
    if late.any():
        row = int(np.flatnonzero(late.any(axis=1))[0])
        column = int(np.flatnonzero(late[row])[0])
        raise FeatureError(
            f"{where}: channel {block.channels[column]!r} is NaN at bar {index[row].isoformat()} (row {row}), after "
            f"its warm-up (the first {int(lead[column])} bars); only a feature's leading bars may be NaN"
        )
    return int(lead.max()) if len(lead) else 0


def compute_blocks(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    *,
    splits: Mapping[str, tuple[int, int]],
    warmup_end: int,
    step: pd.Timedelta | None,
) -> list[FeatureBlock]:
    """Every feature of ``spec`` over ``frame``, each leak-checked (when ``spec.leak_check``) and
    checked for NaN after its warm-up; channel names must be unique across the spec."""
    n = len(frame)
    blocks: list[FeatureBlock] = []
    if spec.base != "none":
        channels, values = base_block(frame, spec.base)
        block = FeatureBlock(f"base {spec.base}", "features['base']", channels, values)
        if spec.leak_check:
            cuts = leak_check_cuts(n, splits, warmup_end)
            check_leaks(block.label, block.position, lambda f: base_block(f, spec.base), frame, channels, values, cuts)
        blocks.append(block)
    for item in spec.indicators:
        _check_columns(item, frame)
        ratio = 1
        if item.timeframe is not None:
            if step is None or item.timeframe <= step or item.timeframe.value % step.value:
                spacing = "unknown (fewer than 2 bars)" if step is None else timeframe_label(step)
                raise ValueError(
                    f"{item.position}['timeframe'] must be a whole multiple (2 or more) of the bar spacing "
                    f"{spacing}, got {timeframe_label(item.timeframe)}"
                )
            ratio = item.timeframe.value // step.value

        def compute(part: pd.DataFrame, item: FeatureItem = item) -> tuple[tuple[str, ...], np.ndarray]:
            return compute_item(item, part, step)

        channels, values = compute(frame)
        block = FeatureBlock(item.label, item.position, channels, values)
        if spec.leak_check:
            cuts = leak_check_cuts(n, splits, warmup_end, min_bars=max(2, item.lookback * ratio))
            check_leaks(block.label, block.position, compute, frame, channels, values, cuts)
        blocks.append(block)
    seen: dict[str, str] = {}
    for block in blocks:
        block.lead = warmup_rows(block, frame.index)
        for channel in block.channels:
            if channel in seen:
                raise ValueError(
                    f"features: channel {channel!r} is given twice ({seen[channel]} and {block.position}); "
                    "give a user function a 'name' to prefix its channels"
                )
            seen[channel] = block.position
    return blocks
