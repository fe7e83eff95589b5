"""One prepared market shared by every environment: prices, causal normalised features, splits.

Normalisation is fitted on a **warm-up** portion at the start of the training split
(``norm_warmup``) that no episode ever steps through. Every statistic an observation depends on is
therefore older than the first decision of any episode, in every split: perturbing bars after
``k`` can only change observations and rewards at or after bar ``k``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.features import SPLIT_NAMES, FeatureNormalizer, chronological_split
from sb3_crypto.data.loaders import DataError, infer_freq, load_ohlcv
from sb3_crypto.data.pipeline import FeatureSpec, compute_blocks, feature_spec
from sb3_crypto.data.synthetic import periods_per_year, synthetic_ohlcv, synthetic_options

DataSource = str | os.PathLike | pd.DataFrame
#: The splits an env may walk: the three of :func:`chronological_split` and ``"all"`` (the whole series).
SPLITS = (*SPLIT_NAMES, "all")
#: The ``features`` shorthands of :func:`build_market` (a feature spec mapping is the long form).
FEATURE_KINDS = ("zscore", "pct_change")


@lru_cache(maxsize=8)
def _cached_synthetic(items: tuple[tuple[str, Any], ...]) -> pd.DataFrame:
    return synthetic_ohlcv(**dict(items))


@lru_cache(maxsize=8)
def _cached_file(path: str, mtime: float, asset: str | None, fill_missing: bool) -> pd.DataFrame:
    del mtime  # part of the cache key only: an edited file is read again
    return load_ohlcv(path, asset=asset, fill_missing=fill_missing)


def resolve_frame(
    data: DataSource = "synthetic",
    *,
    synthetic_kwargs: Mapping[str, Any] | None = None,
    asset: str | None = None,
    fill_missing: bool = False,
) -> pd.DataFrame:
    """Turn an env's ``data`` argument into a canonical frame.

    ``data`` is ``"synthetic"`` (generator options in ``synthetic_kwargs``), a path to any format
    :func:`load_ohlcv` reads, or a DataFrame (validated the same way). Results are cached so that
    vectorised envs do not re-read a file; treat the returned frame as read-only.

    :raises TypeError, ValueError: for a ``data`` that is none of these (naming ``data``), unknown or
        out-of-range ``synthetic_kwargs``, options that do not apply to the data (``synthetic_kwargs``
        with a file, ``asset`` with synthetic data) or a bad ``asset`` / ``fill_missing``.
    :raises DataError: for a missing or malformed file (naming the file).
    """
    check_data(data)
    is_synthetic = isinstance(data, str) and data == "synthetic"
    fill_missing = keywords.boolean("fill_missing", fill_missing)
    asset = keywords.optional(keywords.text, "asset", asset)
    given_options = not keywords.is_none(synthetic_kwargs) and not (
        isinstance(synthetic_kwargs, Mapping) and not synthetic_kwargs
    )
    if given_options and not is_synthetic:
        raise ValueError("synthetic_kwargs given but data is not 'synthetic'")
    if isinstance(data, pd.DataFrame):
        return load_ohlcv(data, asset=asset, fill_missing=fill_missing)
    if is_synthetic:
        if asset is not None:
            raise ValueError(
                f"asset={asset!r} given but data is 'synthetic' (asset selects one asset of a long-format file)"
            )
        options = synthetic_options(synthetic_kwargs)
        try:
            return _cached_synthetic(tuple(sorted(options.items())))
        except ValueError as exc:
            raise ValueError(f"synthetic_kwargs={dict(options)!r}: {exc}") from None
    path = data_file(data)
    return _cached_file(str(path.resolve()), path.stat().st_mtime, asset, fill_missing)


def check_data(data: Any) -> None:
    """Refuse a ``data`` argument that is neither ``"synthetic"``, a file path nor a DataFrame."""
    if isinstance(data, pd.DataFrame):
        return
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"data must be 'synthetic', a file path or a DataFrame, got {keywords.describe(data)}")
    if isinstance(data, str) and not data.strip():
        raise ValueError(f"data must be 'synthetic', a file path or a DataFrame, got {keywords.describe(data)}")


def data_file(data: str | os.PathLike) -> Path:
    """The file a ``data`` path names; :class:`DataError` naming it when there is no such file (a
    folder, or a name the system cannot even look up, is no file either)."""
    path = Path(data)
    try:
        found = path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        shown = str(path) if str(path).isprintable() else repr(str(path))
        raise DataError(f"{shown}: file not found (data must be 'synthetic', a file path or a DataFrame)")
    return path


@dataclass
class Market:
    """Arrays an environment steps through. Row ``t`` is bar ``t``; ``times[t]`` its timestamp."""

    frame: pd.DataFrame
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    times: np.ndarray
    features: np.ndarray
    channels: tuple[str, ...]
    splits: dict[str, tuple[int, int]]
    warmup_end: int
    normalizer: FeatureNormalizer
    periods_per_year: float
    #: How the splits were made (``split_fractions=...`` or ``split_dates=...``), for messages.
    split_rule: str = "split_fractions=(0.7, 0.15, 0.15)"
    #: Bars before a bar that its features read (1: the previous close). An observation of
    #: ``window_size`` bars is reproduced exactly from ``window_size + lookback`` bars of data
    #: (features with unbounded memory, such as EMAs, need a history long enough to converge).
    lookback: int = 1
    #: First row where every channel is finite (the longest indicator warm-up; 0 for the base features).
    features_start: int = 0
    #: The checked feature spec the features were computed from (``spec.to_dict()`` is its YAML form).
    feature_spec: FeatureSpec | None = None

    @property
    def n_bars(self) -> int:
        """Number of bars."""
        return len(self.close)

    def split_range(self, split: str) -> tuple[int, int]:
        """Rows ``[start, stop)`` of a split; ``"all"`` is the whole series."""
        split = keywords.choice("split", split, SPLITS)
        if split == "all":
            return 0, self.n_bars
        return self.splits[split]

    def decision_range(self, split: str, window: int) -> tuple[int, int]:
        """First and last bar on whose close a decision can be taken in ``split``.

        A decision on bar ``t`` needs ``window`` bars of history whose features are all finite
        (``t - window + 1 >= features_start``: indicator warm-ups never reach an observation), must
        come after the normalisation warm-up (``t >= warmup_end``), and is filled at the open of
        ``t + 1``, which must still lie inside the split.
        """
        start, stop = self.split_range(split)
        first = max(start, window - 1 + self.features_start, self.warmup_end)
        last = stop - 2
        if last < first:
            indicators = (
                f", the features' warm-up (longest indicator lookback) ends at row {self.features_start}"
                if self.features_start
                else ""
            )
            raise DataError(
                f"{self.frame.attrs.get('source', 'data')}: split {split!r} (rows {start}..{stop - 1} of "
                f"{self.n_bars}, {self.split_rule}) has no room for a decision: window_size={window}, the "
                f"normalisation warm-up (norm_warmup) ends at row {self.warmup_end}{indicators}; use more data, "
                "a smaller window_size or a smaller norm_warmup" + (" or shorter indicators" if indicators else "")
            )
        return first, last


def build_market(
    data: DataSource = "synthetic",
    *,
    synthetic_kwargs: Mapping[str, Any] | None = None,
    asset: str | None = None,
    fill_missing: bool = False,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    split_dates: Sequence[str] | None = None,
    norm_warmup: float | int = 0.1,
    clip: float = 10.0,
    features: str | Mapping[str, Any] | FeatureSpec = "zscore",
    normalizer: FeatureNormalizer | Mapping[str, Any] | None = None,
) -> Market:
    """Load or generate data, split it chronologically, compute the features and normalise them causally.

    :param norm_warmup: the leading part of the training split the normaliser is fitted on:
        a fraction of the training split (``0 < x < 1``) or a number of bars (``>= 2``).
    :param clip: bound of the z-scored values (and so of the observation).
    :param features: ``"zscore"`` (log returns and log volume, z-scored on the warm-up, see
        :mod:`sb3_crypto.data.features`), ``"pct_change"`` (S4: percentage changes x 100, nothing
        fitted, no warm-up needed), or a feature spec mapping with indicators, user functions and
        higher timeframes (see :mod:`sb3_crypto.data.pipeline`): every feature is leak-checked, the
        channels are z-scored on the warm-up (``pct_change`` base channels are kept as they are, and
        the bound is then 100), and decisions start once every channel is finite.
    :param normalizer: fitted statistics (a :class:`FeatureNormalizer` or its ``to_dict()``) used
        instead of fitting them on this data's warm-up, e.g. a trained env's statistics applied to
        recent bars by the observation builder; there is then no warm-up (``norm_warmup`` is unused).
    :raises LeakError: a feature that changes when later bars are removed (names feature, channel, bar).
    :raises FeatureError: a user function that fails or returns the wrong thing, a NaN after a
        feature's warm-up, an infinite value.
    """
    spec = feature_spec(features)
    given = normalizer_option(normalizer)
    clip = keywords.real("clip", clip, low=0.0, low_inclusive=False)
    warmup = norm_warmup_option(norm_warmup)
    frame = resolve_frame(data, synthetic_kwargs=synthetic_kwargs, asset=asset, fill_missing=fill_missing)
    splits = chronological_split(frame.index, split_fractions, split_dates)
    train_start, train_stop = splits["train"]
    train_len = train_stop - train_start
    source = frame.attrs.get("source", "data")
    if not spec.needs_fit or given is not None:
        # pct_change alone is scale-free (nothing is fitted); given statistics were fitted elsewhere:
        # either way no warm-up of this data is held back.
        warmup_end = train_start
    else:
        warmup_bars = round(warmup * train_len) if isinstance(warmup, float) else warmup
        warmup_end = train_start + warmup_bars
        if warmup_bars < 2 or warmup_end > train_stop:
            raise DataError(
                f"{source}: the normalisation warm-up (norm_warmup={norm_warmup!r}: "
                f"{warmup_bars} bars) does not fit in the training split of {train_len} bars "
                f"({_split_rule(split_fractions, split_dates)}); it needs at least 2 bars"
            )
    step = infer_freq(frame.index)
    blocks = compute_blocks(frame, spec, splits=splits, warmup_end=warmup_end, step=step)
    raw = blocks[0].values if len(blocks) == 1 else np.concatenate([block.values for block in blocks], axis=1)
    channels = tuple(channel for block in blocks for channel in block.channels)
    features_start = max(block.lead for block in blocks)
    if given is not None:
        normalizer = checked_normalizer(given, channels)
    elif not spec.needs_fit:
        normalizer = FeatureNormalizer(np.zeros(raw.shape[1]), np.ones(raw.shape[1]), clip=100.0)
    else:
        positions = tuple(block.position for block in blocks for _ in block.channels)
        _check_warmup_values(raw, channels, positions, frame.index, train_start, warmup_end, norm_warmup, source)
        normalizer = FeatureNormalizer.fit(raw[train_start:warmup_end], clip=clip)
        if spec.base == "pct_change":  # S4's channels stay as they are; the bound is theirs
            n_base = len(blocks[0].channels)
            normalizer.mean[:n_base] = 0.0
            normalizer.std[:n_base] = 1.0
            normalizer.clip = 100.0
    return Market(
        frame=frame,
        open=frame["open"].to_numpy(dtype="float64"),
        high=frame["high"].to_numpy(dtype="float64"),
        low=frame["low"].to_numpy(dtype="float64"),
        close=frame["close"].to_numpy(dtype="float64"),
        times=frame.index.to_numpy(),
        features=np.ascontiguousarray(normalizer.transform(raw)),
        channels=channels,
        splits=splits,
        warmup_end=warmup_end,
        split_rule=_split_rule(split_fractions, split_dates),
        normalizer=normalizer,
        periods_per_year=periods_per_year(step) if step is not None else 365.0,
        features_start=features_start,
        feature_spec=spec,
        lookback=max(1, features_start),  # the base features read the previous close
    )


def normalizer_option(value: Any, name: str = "normalizer") -> FeatureNormalizer | None:
    """``normalizer`` checked: ``None``, a :class:`FeatureNormalizer` or its ``to_dict()`` (finite
    ``mean``, positive ``std``, positive ``clip``)."""
    if keywords.is_none(value):
        return None
    if isinstance(value, FeatureNormalizer):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a FeatureNormalizer or its to_dict() (mean, std, clip), got {keywords.describe(value)}"
        )
    missing = sorted({"mean", "std", "clip"} - set(value))
    if missing:
        raise ValueError(f"{name} lacks {', '.join(missing)} (it needs mean, std and clip, as to_dict() writes)")
    try:
        stats = FeatureNormalizer.from_dict(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: mean and std must be lists of numbers ({exc})") from None
    if stats.mean.ndim != 1 or stats.mean.shape != stats.std.shape:
        raise ValueError(
            f"{name}: mean and std must be lists of the same length, got {stats.mean.shape} and {stats.std.shape}"
        )
    if not (np.isfinite(stats.mean).all() and np.isfinite(stats.std).all() and (stats.std > 0).all()):
        raise ValueError(f"{name}: mean must be finite and std finite and > 0")
    stats.clip = keywords.real(f"{name}['clip']", stats.clip, low=0.0, low_inclusive=False)
    return stats


def checked_normalizer(normalizer: FeatureNormalizer, channels: Sequence[str]) -> FeatureNormalizer:
    """``normalizer`` when it has one statistic per feature channel, else a ValueError naming both."""
    if len(normalizer.mean) != len(channels):
        raise ValueError(
            f"normalizer has statistics for {len(normalizer.mean)} channel(s), but the features of this data "
            f"have {len(channels)} ({', '.join(channels)}); give the statistics of an env on data of the same kind"
        )
    return normalizer


def _check_warmup_values(
    raw: np.ndarray,
    channels: tuple[str, ...],
    positions: tuple[str, ...],
    index: pd.DatetimeIndex,
    start: int,
    stop: int,
    norm_warmup: Any,
    source: str,
) -> None:
    """Every channel needs at least 2 finite values inside the normalisation warm-up to be z-scored."""
    counts = np.isfinite(raw[start:stop]).sum(axis=0)
    short = np.flatnonzero(counts < 2)
    if len(short):
        k = int(short[0])
        finite = np.flatnonzero(np.isfinite(raw[:, k]))
        first = f"row {finite[0]} ({index[finite[0]].isoformat()})" if len(finite) else "no row"
        raise DataError(
            f"{source}: channel {channels[k]!r} ({positions[k]}) has {int(counts[k])} finite value(s) in the "
            "normalisation warm-up "
            f"(norm_warmup={norm_warmup!r}: rows {start}..{stop - 1}), it needs 2 to be z-scored; its first finite "
            f"value is at {first}: use a larger norm_warmup or a shorter indicator"
        )


def norm_warmup_option(value: Any, name: str = "norm_warmup") -> float | int:
    """``norm_warmup`` checked: a fraction of the training split in (0, 1) (a ``float``) or a bar
    count >= 2 (an ``int``); numeric strings are converted (``"0.1"``, ``"200"``)."""
    expected = f"{name} must be a fraction in (0, 1) or a bar count >= 2"
    try:
        x = keywords.real(name, value, low=0.0, low_inclusive=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{expected}, got {keywords.describe(value)}") from None
    if x < 1 and not isinstance(value, numbers.Integral):
        return x
    if x >= 2 and x.is_integer():
        return int(x)
    raise ValueError(f"{expected}, got {keywords.describe(value)}")


def _split_rule(split_fractions: Any, split_dates: Any) -> str:
    """How the splits were made, for messages."""
    if split_dates is not None and not keywords.is_none(split_dates):
        return f"split_dates={split_dates!r}"
    return f"split_fractions={split_fractions!r}"
