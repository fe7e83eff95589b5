"""Causal features, chronological splits and train-only normalisation.

Feature layout (time-major): row ``t`` of the feature matrix describes bar ``t`` using bars
``t`` and ``t - 1`` only. For full OHLCV data the channels are ::

    open_return  = log(open_t  / close_{t-1})
    high_return  = log(high_t  / close_{t-1})
    low_return   = log(low_t   / close_{t-1})
    close_return = log(close_t / close_{t-1})
    log_volume   = log(1 + volume_t)

(bar 0 uses its own open in place of the missing previous close). Close-only data has the single
channel ``close_return``. An observation window is the ``(window, channels)`` block of rows
``t - window + 1 .. t``, oldest first, flattened row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords

OHLCV_FEATURES = ("open_return", "high_return", "low_return", "close_return", "log_volume")
PCT_FEATURES = ("open_pct", "high_pct", "low_pct", "close_pct", "volume_pct")
CLOSE_FEATURES = ("close_return",)
SPLIT_NAMES = ("train", "validation", "test")


def feature_channels(frame: pd.DataFrame) -> tuple[str, ...]:
    """The channel names :func:`compute_features` produces for this frame."""
    return CLOSE_FEATURES if frame.attrs.get("close_only", False) else OHLCV_FEATURES


def compute_features(frame: pd.DataFrame) -> np.ndarray:
    """Raw (un-normalised) causal features, shape ``(n_bars, channels)``, float64."""
    close = frame["close"].to_numpy(dtype="float64")
    previous = np.empty_like(close)
    previous[0] = frame["open"].iloc[0]
    previous[1:] = close[:-1]
    log_previous = np.log(previous)
    if feature_channels(frame) == CLOSE_FEATURES:
        return (np.log(close) - log_previous)[:, None]
    columns = [np.log(frame[name].to_numpy(dtype="float64")) - log_previous for name in ("open", "high", "low")]
    columns.append(np.log(close) - log_previous)
    columns.append(np.log1p(frame["volume"].to_numpy(dtype="float64")))
    return np.stack(columns, axis=1)


def compute_pct_features(frame: pd.DataFrame, clip: float = 100.0) -> np.ndarray:
    """Reference system S4's features: percentage change x 100 of each OHLCV column against the
    previous bar (bar 0 is all zeros; a change from zero volume counts as 0), clipped to +-``clip``.
    Scale-free, so nothing is fitted and nothing can leak."""
    values = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype="float64")
    out = np.zeros_like(values)
    previous = values[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[1:] = np.where(previous > 0, (values[1:] / previous - 1.0) * 100.0, 0.0)
    return np.clip(out, -clip, clip)


@dataclass
class FeatureNormalizer:
    """Per-channel z-scoring with statistics fitted once and reused for every later split.

    ``clip`` bounds the normalised values (crypto jumps give z-scores of 20+).
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float = 10.0

    @classmethod
    def fit(cls, features: np.ndarray, clip: float = 10.0) -> FeatureNormalizer:
        """Fit on the given rows only (pass the training split, or its warm-up portion).

        NaN values (an indicator's warm-up) are left out of a channel's statistics; each channel needs
        at least 2 finite values.
        """
        if len(features) < 2:
            raise ValueError(f"FeatureNormalizer.fit needs at least 2 rows, got {len(features)}")
        if np.isnan(features).any():
            counts = (~np.isnan(features)).sum(axis=0)
            if (counts < 2).any():
                channel = int(np.flatnonzero(counts < 2)[0])
                raise ValueError(
                    f"FeatureNormalizer.fit needs at least 2 finite values per channel, channel {channel} has "
                    f"{int(counts[channel])}"
                )
            mean, std = np.nanmean(features, axis=0), np.nanstd(features, axis=0)
        else:
            mean, std = features.mean(axis=0), features.std(axis=0)
        return cls(mean=mean, std=np.where(std > 1e-12, std, 1.0), clip=clip)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Normalise and clip; returns float32 for the observation (NaN stays NaN)."""
        z = (features - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict[str, list[float] | float]:
        """A YAML/JSON-friendly copy of the statistics."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, stats: dict) -> FeatureNormalizer:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            np.asarray(stats["mean"], dtype="float64"),
            np.asarray(stats["std"], dtype="float64"),
            stats["clip"],
        )


def chronological_split(
    index: pd.DatetimeIndex,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    dates: Sequence[str | pd.Timestamp] | None = None,
) -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the train / validation / test splits, in time order.

    :param fractions: shares of the rows for train, validation and test (``split_fractions``: three
        non-negative numbers summing to 1; a zero share gives an empty split).
    :param dates: instead of fractions, the two boundaries ``(validation_start, test_start)``
        (``split_dates``) as UTC times; each split begins at the first bar at or after its boundary.
        The dates must increase and leave every split at least one bar of the data.
    :raises ValueError: naming ``split_fractions`` or ``split_dates`` (and, for dates, the data's
        first and last timestamps).
    """
    n = len(index)
    if dates is not None and not keywords.is_none(dates):
        return _split_by_dates(index, dates)
    shares = keywords.fractions("split_fractions", fractions)
    bounds = [round(n * shares[0]), round(n * (shares[0] + shares[1]))]
    bounds = [min(max(bound, 0), n) for bound in bounds]
    return {"train": (0, bounds[0]), "validation": (bounds[0], bounds[1]), "test": (bounds[1], n)}


def _split_by_dates(index: pd.DatetimeIndex, dates: Sequence[str | pd.Timestamp]) -> dict[str, tuple[int, int]]:
    n = len(index)
    values = keywords.items("split_dates", dates, 2, "dates (validation_start, test_start)")
    stamps = [keywords.timestamp(f"split_dates[{k}]", value) for k, value in enumerate(values)]
    given = f"split_dates=({', '.join(stamp.isoformat() for stamp in stamps)})"
    if n == 0:
        raise ValueError(f"{given}: the data hold no bars")
    span = f"the data run from {index[0].isoformat()} to {index[-1].isoformat()} ({n} bars)"
    if not stamps[0] < stamps[1]:
        raise ValueError(f"{given}: split_dates must increase (validation_start < test_start); {span}")
    bounds = [int(index.searchsorted(stamp)) for stamp in stamps]
    empty = [
        name
        for name, (start, stop) in zip(SPLIT_NAMES, ((0, bounds[0]), (bounds[0], bounds[1]), (bounds[1], n)))
        if stop <= start
    ]
    if empty:
        raise ValueError(
            f"{given} leave the {' and '.join(empty)} split(s) empty: {span}; each split needs at least one bar"
        )
    return {"train": (0, bounds[0]), "validation": (bounds[0], bounds[1]), "test": (bounds[1], n)}
