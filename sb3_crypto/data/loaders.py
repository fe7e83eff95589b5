"""Load market data from common crypto formats into one canonical OHLCV frame.

The canonical frame returned by :func:`load_ohlcv`:

* a UTC :class:`pandas.DatetimeIndex` named ``timestamp``, strictly ascending, no duplicates;
  each timestamp is the bar's *open* time as given by the source;
* float64 columns ``open, high, low, close, volume`` and, when the source has them,
  ``vwap`` and ``trades``;
* every price finite and > 0, ``low <= open, close <= high``, volume finite and >= 0.

Every violation raises :class:`DataError` naming the source, the column and the first offending row.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("vwap", "trades")

# Lower-cased, space/underscore-insensitive aliases of the canonical columns.
_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "date", "time", "datetime", "opentime", "unix", "ts", "opentimestamp", "dt"),
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice", "price", "priceusd", "last"),
    "volume": ("volume", "vol", "v", "basevolume", "volumebase"),
    "vwap": ("vwap", "volumeweightedaverage", "weightedaverage", "volumeweightedaverageprice"),
    "trades": ("trades", "numtrades", "tradecount", "numberoftrades", "count", "ntrades"),
}

_BINANCE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base",
    "taker_buy_quote",
    "ignore",
)

_CDD_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{1,2}-(AM|PM)$", re.IGNORECASE)


class DataError(ValueError):
    """Raised when market data is malformed; the message names the source, column and row."""


class GapWarning(UserWarning):
    """Emitted when bars are missing from an otherwise regular series."""


def _nanos(index: pd.DatetimeIndex) -> np.ndarray:
    """Integer nanoseconds whatever the index resolution (pandas 3 defaults to microseconds)."""
    return index.as_unit("ns").asi8


def _key(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _describe_row(frame: pd.DataFrame, position: int) -> str:
    label = frame.index[position]
    if isinstance(label, pd.Timestamp):
        return f"row {position} ({label.isoformat()})"
    return f"row {position}"


def _sniff_lines(path: Path, n: int = 3) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        return [handle.readline().strip() for _ in range(n)]


def _looks_numeric(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_file(path: Path, source: str) -> tuple[pd.DataFrame, str]:
    """Read a file into a raw frame and name the format it was recognised as."""
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".parquet", ".pq")):
        return pd.read_parquet(path), "parquet"
    lines = _sniff_lines(path)
    if not lines[0]:
        raise DataError(f"{source}: file is empty")
    first = next(csv.reader([lines[0]]))
    if len(first) == 12 and all(_looks_numeric(x) for x in first[:6]):
        frame = pd.read_csv(path, header=None, names=list(_BINANCE_COLUMNS))
        return frame, "binance"
    if len(first) <= 2 and len(next(csv.reader([lines[1]]))) > 3:
        # CryptoDataDownload: a banner line (URL) above the real header.
        return pd.read_csv(path, skiprows=1), "cryptodatadownload"
    return pd.read_csv(path), "csv"


def _parse_time(values: pd.Series, source: str, column: str) -> pd.DatetimeIndex:
    """Parse epoch seconds / milliseconds / microseconds or date strings into UTC."""
    if pd.api.types.is_datetime64_any_dtype(values):
        index = pd.DatetimeIndex(values)
        return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype="float64")
        bad = np.flatnonzero(~np.isfinite(numbers))
        if bad.size:
            raise DataError(f"{source}: column '{column}' has a missing or non-finite time at row {bad[0]}")
        magnitude = np.nanmedian(np.abs(numbers)) if numbers.size else 0.0
        unit = "us" if magnitude > 1e14 else "ms" if magnitude > 1e11 else "s"
        # Binance switched spot dumps to microseconds in 2025; mixed files exist, so decide per value.
        if unit != "s":
            units = np.where(np.abs(numbers) > 1e14, 1, 1000)
            micros = (numbers * units).astype("int64")
            return pd.DatetimeIndex(pd.to_datetime(micros, unit="us", utc=True))
        return pd.DatetimeIndex(pd.to_datetime(numbers, unit="s", utc=True))
    text = values.astype(str).str.strip()
    if len(text) and _CDD_DATE.match(text.iloc[0]):
        text = text.str.replace(r"^(\d{4}-\d{2}-\d{2}) (\d{1,2})-(AM|PM)$", r"\1 \2 \3", regex=True)
        parsed = pd.to_datetime(text, format="%Y-%m-%d %I %p", errors="coerce", utc=True)
    else:
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise DataError(f"{source}: column '{column}' has an unparseable time {text.iloc[bad[0]]!r} at row {bad[0]}")
    return pd.DatetimeIndex(parsed)


def _find_column(columns: Iterable[object], canonical: str) -> object | None:
    aliases = _ALIASES[canonical]
    for alias in aliases:  # alias order is the preference order
        for column in columns:
            if _key(column) == alias:
                return column
    return None


def _cdd_volume_column(frame: pd.DataFrame) -> object | None:
    """CryptoDataDownload names volumes per currency (``Volume BTC``, ``Volume USDT``): pick the base."""
    candidates = [c for c in frame.columns if _key(c).startswith("volume") and _key(c) != "volume"]
    if not candidates:
        return None
    symbol_column = _find_symbol_column(frame)
    if symbol_column is not None and len(frame):
        symbol = str(frame[symbol_column].iloc[0]).upper()
        base = re.split(r"[/\-_]", symbol)[0]
        for column in candidates:
            currency = _key(column)[len("volume") :].upper()
            if currency and (currency == base or (symbol.startswith(currency) and "/" not in symbol)):
                return column
    return candidates[0]


def _find_symbol_column(frame: pd.DataFrame) -> object | None:
    for column in frame.columns:
        if _key(column) in ("symbol", "asset", "ticker", "pair", "coin"):
            return column
    return None


def _select_asset(frame: pd.DataFrame, asset: str | None, source: str) -> pd.DataFrame:
    column = _find_symbol_column(frame)
    if column is None:
        if asset is not None:
            raise DataError(f"{source}: asset={asset!r} given but the data has no asset/symbol column")
        return frame
    names = frame[column].astype(str)
    unique = pd.unique(names)
    if asset is None:
        if len(unique) > 1:
            shown = ", ".join(map(str, unique[:8]))
            raise DataError(
                f"{source}: column '{column}' holds {len(unique)} assets ({shown}, ...); choose one with asset=..."
            )
        return frame
    selected = frame[names == asset]
    if selected.empty:
        close = [u for u in unique if asset.lower() in str(u).lower()][:5]
        hint = f" (did you mean {', '.join(map(str, close))}?)" if close else ""
        raise DataError(f"{source}: asset {asset!r} not found in column '{column}'{hint}")
    return selected


def _canonicalise(raw: pd.DataFrame, source: str, fmt: str, asset: str | None) -> pd.DataFrame:
    frame = _select_asset(raw, asset, source)
    if isinstance(frame.index, pd.DatetimeIndex) and _find_column(frame.columns, "timestamp") is None:
        frame = frame.rename_axis("timestamp").reset_index()
    time_column = _find_column(frame.columns, "timestamp")
    if fmt == "cryptodatadownload":
        # CDD has both 'unix' and 'date'; the unix column is exact, the date string is hour-rounded.
        unix = next((c for c in frame.columns if _key(c) == "unix"), None)
        time_column = unix if unix is not None else time_column
    if time_column is None:
        raise DataError(
            f"{source}: no time column found (looked for {', '.join(_ALIASES['timestamp'])}); "
            f"columns are {list(frame.columns)}"
        )
    index = _parse_time(frame[time_column], source, str(time_column))

    out: dict[str, np.ndarray] = {}
    mapping: dict[str, object] = {}
    for name in OHLCV_COLUMNS + OPTIONAL_COLUMNS:
        column = _find_column(frame.columns, name)
        if name == "volume" and column is None:
            column = _cdd_volume_column(frame)
        if column is not None:
            mapping[name] = column
    close_only = "close" in mapping and not any(k in mapping for k in ("open", "high", "low"))
    if close_only:
        # Close-only daily files (e.g. CoinMarketCap snapshots): a bar is its close.
        for name in ("open", "high", "low"):
            mapping[name] = mapping["close"]
    missing = [name for name in OHLCV_COLUMNS if name not in mapping and not (name == "volume" and close_only)]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; columns are {list(frame.columns)} "
            "(names are matched case-insensitively, with common aliases)"
        )
    for name, column in mapping.items():
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")
        bad = np.flatnonzero(np.isnan(values) & frame[column].notna().to_numpy())
        if bad.size:
            raise DataError(
                f"{source}: column '{column}' has a non-numeric value {frame[column].iloc[bad[0]]!r} at row {bad[0]}"
            )
        out[name] = values
    if "volume" not in out:
        out["volume"] = np.zeros(len(frame))
    result = pd.DataFrame(out, index=index)
    result.index.name = "timestamp"
    columns = [c for c in OHLCV_COLUMNS + OPTIONAL_COLUMNS if c in result.columns]
    result = result[columns]
    result.attrs["source"] = source
    result.attrs["format"] = fmt
    result.attrs["close_only"] = close_only
    return result


def _order(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Accept ascending data, reverse strictly descending data (newest-first exports), reject the rest."""
    index = frame.index
    if len(index) > 1 and index.is_monotonic_decreasing and index.is_unique:
        frame = frame.iloc[::-1]
    duplicated = np.flatnonzero(frame.index.duplicated())
    if duplicated.size:  # checked before order: the more precise message for a repeated bar
        row = int(duplicated[0])
        raise DataError(f"{source}: duplicate timestamp {frame.index[row].isoformat()} at row {row}")
    if not frame.index.is_monotonic_increasing:
        first = int(np.flatnonzero(np.diff(_nanos(frame.index)) < 0)[0]) + 1
        raise DataError(
            f"{source}: timestamps are not sorted: row {first} ({frame.index[first].isoformat()}) comes after "
            f"{frame.index[first - 1].isoformat()}; sort the data or fix the file"
        )
    return frame


def validate_ohlcv(frame: pd.DataFrame, source: str = "data", min_rows: int = 1) -> None:
    """Check a canonical frame; raise :class:`DataError` at the first problem found."""
    if len(frame) < min_rows:
        raise DataError(f"{source}: {len(frame)} rows, but at least {min_rows} are needed")
    for name in OHLCV_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in frame.columns):
        values = frame[name].to_numpy(dtype="float64")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            kind = "NaN" if np.isnan(values[bad[0]]) else "an infinite value"
            raise DataError(f"{source}: column '{name}' has {kind} at {_describe_row(frame, int(bad[0]))}")
        if name in ("open", "high", "low", "close", "vwap"):
            bad = np.flatnonzero(values <= 0)
            if bad.size:
                raise DataError(
                    f"{source}: column '{name}' has a non-positive price {values[bad[0]]} at "
                    f"{_describe_row(frame, int(bad[0]))}"
                )
        elif (bad := np.flatnonzero(values < 0)).size:
            raise DataError(
                f"{source}: column '{name}' has a negative value {values[bad[0]]} at "
                f"{_describe_row(frame, int(bad[0]))}"
            )
    high = frame["high"].to_numpy()
    low = frame["low"].to_numpy()
    bad = np.flatnonzero(high < low)
    if bad.size:
        raise DataError(
            f"{source}: high < low at {_describe_row(frame, int(bad[0]))} (high={high[bad[0]]}, low={low[bad[0]]})"
        )
    for name in ("open", "close"):
        values = frame[name].to_numpy()
        tolerance = 1e-9 * np.abs(values)
        bad = np.flatnonzero((values < low - tolerance) | (values > high + tolerance))
        if bad.size:
            raise DataError(
                f"{source}: {name} outside [low, high] at {_describe_row(frame, int(bad[0]))} "
                f"({name}={values[bad[0]]}, low={low[bad[0]]}, high={high[bad[0]]})"
            )


def infer_freq(index: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The bar spacing: the most common step between consecutive timestamps (None for < 2 bars)."""
    if len(index) < 2:
        return None
    steps = np.diff(_nanos(index))
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


def find_gaps(frame: pd.DataFrame, freq: pd.Timedelta | str | None = None) -> pd.DataFrame:
    """List missing stretches: one row per gap with its start, end and number of missing bars."""
    step = pd.Timedelta(freq) if freq is not None else infer_freq(frame.index)
    if step is None or len(frame) < 2:
        return pd.DataFrame(columns=["after", "before", "missing_bars"])
    diffs = np.diff(_nanos(frame.index))
    where = np.flatnonzero(diffs > step.value)
    return pd.DataFrame(
        {
            "after": frame.index[where],
            "before": frame.index[where + 1],
            "missing_bars": (diffs[where] // step.value - 1).astype(int),
        }
    )


def fill_gaps(frame: pd.DataFrame, freq: pd.Timedelta | str | None = None) -> pd.DataFrame:
    """Insert missing bars carrying the last close forward with zero volume (never back-filled)."""
    step = pd.Timedelta(freq) if freq is not None else infer_freq(frame.index)
    if step is None:
        return frame
    full = pd.date_range(frame.index[0], frame.index[-1], freq=step, tz="UTC", name=frame.index.name)
    if len(full) == len(frame):
        return frame
    filled = frame.reindex(full)
    last_close = filled["close"].ffill()
    missing = filled["close"].isna()
    for name in ("open", "high", "low", "close") + (("vwap",) if "vwap" in filled else ()):
        filled.loc[missing, name] = last_close[missing]
    filled.loc[missing, "volume"] = 0.0
    if "trades" in filled:
        filled.loc[missing, "trades"] = 0.0
    filled.attrs = dict(frame.attrs)
    return filled


def load_ohlcv(
    source: str | Path | pd.DataFrame,
    *,
    asset: str | None = None,
    fill_missing: bool = False,
    freq: str | pd.Timedelta | None = None,
    min_rows: int = 2,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Load OHLCV bars from a file or frame into the canonical layout (see module docstring).

    Recognised without naming the format: generic CSV / Parquet (any capitalisation, a time column
    such as ``timestamp``, ``date``, ``time`` or ``open_time`` in epoch s / ms / us or ISO strings),
    Binance kline dumps (12 columns, no header), CryptoDataDownload exports (banner line,
    newest row first, ``2019-10-17 09-AM`` dates, per-currency volume names) and close-only price
    files (open = high = low = close, zero volume; long format needs ``asset=``).

    :param source: a path to ``.csv``/``.csv.gz``/``.parquet`` or a DataFrame.
    :param asset: select one asset from a long-format file with an asset/symbol column.
    :param fill_missing: insert missing bars (last close carried forward, zero volume). Gaps are
        otherwise reported with a :class:`GapWarning` and counted in ``frame.attrs["n_gaps"]``
        (list them with :func:`find_gaps`).
    :param freq: expected bar spacing (inferred from the most common step when omitted).
    :param min_rows: raise when fewer rows remain (e.g. ``window_size + episode_length``).
    :param start: keep bars at or after this UTC time.
    :param end: keep bars strictly before this UTC time.
    :raises DataError: for any malformed input, naming the source, column and first bad row.
    """
    if isinstance(source, pd.DataFrame):
        name = str(source.attrs.get("source", "DataFrame"))
        raw, fmt = source, "frame"
    else:
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise DataError(f"{name}: file not found")
        try:
            raw, fmt = _read_file(path, name)
        except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{name}: cannot parse file: {exc}") from exc
    if raw.empty:
        raise DataError(f"{name}: no rows")
    frame = _canonicalise(raw, name, fmt, asset)
    frame = _order(frame, name)
    if start is not None:
        frame = frame[frame.index >= pd.Timestamp(start, tz="UTC")]
    if end is not None:
        frame = frame[frame.index < pd.Timestamp(end, tz="UTC")]
    validate_ohlcv(frame, name, min_rows=min_rows)
    gaps = find_gaps(frame, freq)
    if len(gaps):
        if fill_missing:
            frame = fill_gaps(frame, freq)
            gaps = gaps.iloc[0:0]
        else:
            first = gaps.iloc[0]
            warnings.warn(
                f"{name}: {len(gaps)} gap(s), {int(gaps['missing_bars'].sum())} missing bar(s); first after "
                f"{first['after'].isoformat()}. Pass fill_missing=True to carry the last close forward.",
                GapWarning,
                stacklevel=2,
            )
    frame.attrs["n_gaps"] = len(gaps)
    frame.attrs["freq"] = freq_str(infer_freq(frame.index))
    return frame


def freq_str(step: pd.Timedelta | None) -> str | None:
    """A compact string for a bar spacing, e.g. ``'1h'`` or ``'1d'``."""
    if step is None:
        return None
    seconds = int(step.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
