"""Load market data from common crypto formats into one canonical OHLCV frame.

The canonical frame returned by :func:`load_ohlcv`:

* a UTC :class:`pandas.DatetimeIndex` named ``timestamp``, strictly ascending, no duplicates;
  each timestamp is the bar's *open* time as given by the source;
* float64 columns ``open, high, low, close, volume`` and, when the source has them,
  ``vwap`` and ``trades``;
* every price finite and > 0, ``low <= open, close <= high``, volume finite and >= 0.

Every violation raises :class:`DataError` naming the source, the column and the first offending
row: by its 1-based **line in the file** for text files (banner and header lines counted, so an
editor opens the file at the right place) and by its position (``row 3``) for frames and Parquet.

Reading and sniffing files lives in :mod:`sb3_crypto.data.formats`, row order and repair in
:mod:`sb3_crypto.data.repair`, several assets in :mod:`sb3_crypto.data.panel`; the names below
are all importable from here and from :mod:`sb3_crypto.data`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from sb3_crypto.data.formats import (
    BINANCE_COLUMNS,
    DATA_SUFFIXES,
    DataError,
    Origin,
    RawTable,
    is_time_of_day,
    parse_time_of_day,
    parse_times,
    read_table,
    resolve_paths,
    to_float,
)
from sb3_crypto.data.repair import (
    RepairReport,
    RepairWarning,
    combine_reports,
    merge_files,
    order_rows,
    suspected_copies,
)

__all__ = [
    "BINANCE_COLUMNS",
    "DATA_SUFFIXES",
    "OHLCV_COLUMNS",
    "OPTIONAL_COLUMNS",
    "DataError",
    "GapWarning",
    "RepairReport",
    "RepairWarning",
    "fill_gaps",
    "find_gaps",
    "freq_str",
    "infer_freq",
    "load_ohlcv",
    "validate_ohlcv",
]

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("vwap", "trades")

Source = str | os.PathLike | pd.DataFrame | Sequence[str | os.PathLike]

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
_DATE_KEYS = ("date", "day", "tradingday")
_TIME_OF_DAY_KEYS = ("time", "hour", "timeofday")
_ASSET_KEYS = ("symbol", "asset", "ticker", "pair", "coin")

FILE_HINT = (
    "Repair with load_ohlcv(..., repair=True) or scripts/prepare_data.py --repair, which sort the rows, "
    "keep the first row of each timestamp and report every change."
)
FRAME_HINT = (
    "Repair with load_ohlcv(..., repair=True), which sorts the rows, keeps the first row of each timestamp "
    "and reports every change."
)


class GapWarning(UserWarning):
    """Emitted when bars are missing from an otherwise regular series."""


def _nanos(index: pd.DatetimeIndex) -> np.ndarray:
    """Integer nanoseconds whatever the index resolution (pandas 3 defaults to microseconds)."""
    return index.as_unit("ns").asi8


def _key(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


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
    symbol_column = find_asset_column(frame)
    if symbol_column is not None and len(frame):
        symbol = str(frame[symbol_column].iloc[0]).upper()
        base = re.split(r"[/\-_]", symbol)[0]
        for column in candidates:
            currency = _key(column)[len("volume") :].upper()
            if currency and (currency == base or (symbol.startswith(currency) and "/" not in symbol)):
                return column
    return candidates[0]


def find_asset_column(frame: pd.DataFrame) -> object | None:
    """The column naming the asset of each row in a long file (``symbol``, ``asset``, ``ticker``, ...)."""
    for column in frame.columns:
        if _key(column) in _ASSET_KEYS:
            return column
    return None


def _is_unnamed(column: object) -> bool:
    text = str(column).strip()
    return text == "" or text.lower() == "none" or bool(re.fullmatch(r"Unnamed: 0(_level_0)?", text))


def _select_asset(table: RawTable, asset: str | None, source: str) -> RawTable:
    column = find_asset_column(table.frame)
    if column is None:
        if asset is not None:
            raise DataError(f"{source}: asset={asset!r} given but the data has no asset/symbol column")
        return table
    names = table.frame[column].astype(str)
    unique = pd.unique(names)
    if asset is None:
        if len(unique) > 1:
            shown = ", ".join(map(str, unique[:8]))
            raise DataError(
                f"{source}: column '{column}' holds {len(unique)} assets ({shown}, ...); choose one with asset=... "
                "or load them all with load_panel"
            )
        return table
    selected = np.flatnonzero((names == asset).to_numpy())
    if not selected.size:
        close = [u for u in unique if asset.lower() in str(u).lower()][:5]
        hint = f" (did you mean {', '.join(map(str, close))}?)" if close else ""
        raise DataError(f"{source}: asset {asset!r} not found in column '{column}'{hint}")
    return table.take(selected)


def time_column(frame: pd.DataFrame, table: RawTable) -> tuple[object, ...]:
    """The column(s) holding the time: one, or a date column and a time-of-day column; () if none."""
    if table.fmt == "cryptodatadownload":
        # CDD has both 'unix' and 'date'; the unix column is exact, the date string is hour-rounded.
        unix = next((c for c in frame.columns if _key(c) == "unix"), None)
        if unix is not None:
            return (unix,)
    clock = next((c for c in frame.columns if _key(c) in _TIME_OF_DAY_KEYS and is_time_of_day(frame[c])), None)
    if clock is not None:
        date = next((c for c in frame.columns if _key(c) in _DATE_KEYS), None)
        return (clock,) if date is None else (date, clock)
    column = _find_column(frame.columns, "timestamp")
    if column is None and len(frame.columns) and _is_unnamed(frame.columns[0]):
        column = frame.columns[0]  # DataFrame.to_csv() wrote the index without a name
    return () if column is None else (column,)


def time_index(frame: pd.DataFrame, table: RawTable, source: str) -> pd.DatetimeIndex:
    """Find and parse the time: one column, or a date column plus a time-of-day column."""
    origin = table.origin

    def where(i: int) -> str:
        return origin.where(int(i))

    columns = time_column(frame, table)
    if not columns:
        raise DataError(
            f"{source}: no time column found (looked for {', '.join(_ALIASES['timestamp'])} or an unnamed "
            f"first column); columns are {list(frame.columns)}"
        )
    if len(columns) == 1 and is_time_of_day(frame[columns[0]]):
        raise DataError(f"{source}: column '{columns[0]}' holds times of day but there is no date column to go with it")
    if len(columns) == 1:
        return parse_times(frame[columns[0]], str(columns[0]), where, source)
    date, clock = columns
    days = parse_times(frame[date], str(date), where, source)
    inside = np.flatnonzero(days != days.normalize())
    if inside.size:
        raise DataError(
            f"{source}: column '{date}' already has a time of day at {where(inside[0])} "
            f"({days[inside[0]].isoformat()}), and column '{clock}' holds times too; keep one of them"
        )
    index = pd.DatetimeIndex(days + parse_time_of_day(frame[clock], str(clock), where, source))
    return index.as_unit("us") if not (index.as_unit("ns").asi8 % 1000).any() else index


def canonical_bars(table: RawTable, source: str, close_only_ok: bool = True) -> pd.DataFrame:
    """Map a raw table's columns to the canonical ones (rows stay in file order, unchecked)."""
    frame = table.frame
    if isinstance(frame.index, pd.DatetimeIndex) and _find_column(frame.columns, "timestamp") is None:
        frame = frame.rename_axis("timestamp").reset_index()
    index = time_index(frame, table, source)

    mapping: dict[str, object] = {}
    for name in OHLCV_COLUMNS + OPTIONAL_COLUMNS:
        column = _find_column(frame.columns, name)
        if name == "volume" and column is None:
            column = _cdd_volume_column(frame)
        if column is not None:
            mapping[name] = column
    close_only = close_only_ok and "close" in mapping and not any(k in mapping for k in ("open", "high", "low"))
    if close_only:
        # Close-only daily files (e.g. CoinMarketCap snapshots): a bar is its close.
        for name in ("open", "high", "low"):
            mapping[name] = mapping["close"]
    missing = [name for name in OHLCV_COLUMNS if name not in mapping and not (name == "volume" and close_only)]
    if missing:
        hint = ""
        if "close" not in mapping and find_asset_column(frame) is None and len(frame.columns) >= 3:
            hint = "; a file with one price column per asset is a wide panel: read it with load_panel"
        raise DataError(
            f"{source}: missing column(s) {missing}; columns are {list(frame.columns)} "
            f"(names are matched case-insensitively, with common aliases){hint}"
        )
    out: dict[str, np.ndarray] = {}
    for name, column in mapping.items():
        out[name] = numeric_column(frame[column], table, source, str(column))
    if "volume" not in out:
        out["volume"] = np.zeros(len(frame))
    result = pd.DataFrame(out, index=index)
    result.index.name = "timestamp"
    result = result[[c for c in OHLCV_COLUMNS + OPTIONAL_COLUMNS if c in result.columns]]
    result.attrs["close_only"] = close_only
    return result


def numeric_column(values: pd.Series, table: RawTable, source: str, column: str) -> np.ndarray:
    """A column as float64; a value that is not a number is a DataError naming its line."""
    numbers = to_float(values, table.decimal)
    bad = np.flatnonzero(np.isnan(numbers) & values.notna().to_numpy())
    if bad.size:
        raise DataError(
            f"{source}: column '{column}' has a non-numeric value {values.iloc[bad[0]]!r} at "
            f"{table.origin.where(int(bad[0]))}"
        )
    return numbers


def _default_where(frame: pd.DataFrame) -> Callable[[int], str]:
    def where(position: int) -> str:
        label = frame.index[position]
        if isinstance(label, pd.Timestamp):
            return f"row {position} ({label.isoformat()})"
        return f"row {position}"

    return where


def origin_where(frame: pd.DataFrame, origin: Origin) -> Callable[[int], str]:
    """Name row ``i`` of a sorted frame by its file line (or source row) and timestamp."""
    return lambda i: origin.where(int(i), frame.index[i])


def validate_ohlcv(
    frame: pd.DataFrame, source: str = "data", min_rows: int = 1, *, where: Callable[[int], str] | None = None
) -> None:
    """Check a canonical frame; raise :class:`DataError` at the first problem found.

    ``where(i)`` names row ``i`` in messages (default: ``row i (timestamp)``).
    """
    where = where or _default_where(frame)
    if len(frame) < min_rows:
        raise DataError(f"{source}: {len(frame)} rows, but at least {min_rows} are needed")
    for name in OHLCV_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in frame.columns):
        values = frame[name].to_numpy(dtype="float64")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            kind = "NaN" if np.isnan(values[bad[0]]) else "an infinite value"
            raise DataError(f"{source}: column '{name}' has {kind} at {where(int(bad[0]))}")
        if name in ("open", "high", "low", "close", "vwap"):
            bad = np.flatnonzero(values <= 0)
            if bad.size:
                raise DataError(
                    f"{source}: column '{name}' has a non-positive price {values[bad[0]]} at {where(int(bad[0]))}"
                )
        elif (bad := np.flatnonzero(values < 0)).size:
            raise DataError(f"{source}: column '{name}' has a negative value {values[bad[0]]} at {where(int(bad[0]))}")
    high = frame["high"].to_numpy()
    low = frame["low"].to_numpy()
    bad = np.flatnonzero(high < low)
    if bad.size:
        raise DataError(f"{source}: high < low at {where(int(bad[0]))} (high={high[bad[0]]}, low={low[bad[0]]})")
    for name in ("open", "close"):
        values = frame[name].to_numpy()
        tolerance = 1e-9 * np.abs(values)
        bad = np.flatnonzero((values < low - tolerance) | (values > high + tolerance))
        if bad.size:
            raise DataError(
                f"{source}: {name} outside [low, high] at {where(int(bad[0]))} "
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


def freq_str(step: pd.Timedelta | None) -> str | None:
    """A compact string for a bar spacing, e.g. ``'1h'`` or ``'1d'``."""
    if step is None:
        return None
    seconds = int(step.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def frame_table(frame: pd.DataFrame) -> RawTable:
    """A DataFrame given as a source, as a raw table whose rows are named by position."""
    return RawTable(frame, Origin.positions(len(frame)), "frame")


def bars_from_table(
    table: RawTable, source: str, *, repair: bool, hint: str
) -> tuple[pd.DataFrame, Origin, RepairReport]:
    """Canonical columns, then rows in ascending order (repaired or refused, see ``order_rows``)."""
    if table.frame.empty:
        raise DataError(f"{source}: no rows")
    frame = canonical_bars(table, source)
    close_only = frame.attrs["close_only"]
    frame, origin, report = order_rows(frame, table.origin, source, repair=repair, hint=hint)
    frame.attrs = {"close_only": close_only}
    return frame, origin, report


def _file_names(paths: Sequence[os.PathLike]) -> tuple[str, ...]:
    names = tuple(os.path.basename(p) for p in paths)
    return names if len(set(names)) == len(names) else tuple(str(p) for p in paths)


def read_bars(
    source: Source,
    *,
    asset: str | None = None,
    repair: bool = False,
    hint: str | None = None,
    frame_name: str | None = None,
) -> tuple[pd.DataFrame, Origin, RepairReport, dict[str, object]]:
    """Every row of a source in ascending time order, with its origin, the repair report and attrs.

    A DataFrame source is called ``frame_name`` in messages, else its ``attrs["source"]`` or "DataFrame".
    """
    if isinstance(source, pd.DataFrame):
        name = frame_name or str(source.attrs.get("source", "DataFrame"))
        table = _select_asset(frame_table(source), asset, name)
        frame, origin, report = bars_from_table(table, name, repair=repair, hint=hint or FRAME_HINT)
        attrs: dict[str, object] = {"source": name, "format": "frame"}
    else:
        paths, name = resolve_paths(source)
        names = _file_names(paths)
        parts, reports, formats = [], [], []
        for i, path in enumerate(paths):
            table = read_table(path)
            label = str(path) if len(paths) == 1 else f"{name}: {names[i]}"
            if len(paths) > 1:
                table.origin = table.origin.with_file(i, names)
            table = _select_asset(table, asset, label)
            frame, origin, report = bars_from_table(table, label, repair=repair, hint=hint or FILE_HINT)
            parts.append((frame, origin))
            reports.append(report)
            formats.append(table.fmt)
        if len(parts) == 1:
            (frame, origin), report = parts[0], reports[0]
        else:
            close_only = all(f.attrs["close_only"] for f, _ in parts)
            frame, origin, overlaps = merge_files(parts, name)
            frame.attrs = {"close_only": close_only}
            report = combine_reports(name, reports, overlaps, len(frame))
        attrs = {"source": name, "format": formats[0] if len(set(formats)) == 1 else "mixed"}
        if len(paths) > 1:
            attrs["files"] = [str(p) for p in paths]
    if repair:
        report = replace(report, copies=suspected_copies(frame, origin))
    attrs["close_only"] = frame.attrs.get("close_only", False)
    return frame, origin, report, attrs


def load_ohlcv(
    source: Source,
    *,
    asset: str | None = None,
    fill_missing: bool = False,
    freq: str | pd.Timedelta | None = None,
    min_rows: int = 2,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    repair: bool = False,
    return_report: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, RepairReport]:
    """Load OHLCV bars from files or a frame into the canonical layout (see module docstring).

    Recognised without naming the format: CSV / TSV / semicolon files with decimal commas, plain,
    ``.gz`` or in a ``.zip`` of one file, and Parquet; a time column such as ``timestamp``,
    ``date``, ``time``, ``open_time``, ``unix`` or the unnamed index column ``DataFrame.to_csv``
    writes, in epoch s / ms / us / ns (one unit per column), ``YYYYMMDD`` integers or date texts,
    or a ``date`` column plus a ``time`` of day; Binance kline dumps (12 columns, no header),
    CryptoDataDownload exports (banner line, newest row first, ``2019-10-17 09-AM`` dates,
    per-currency volume names) and close-only price files (open = high = low = close, zero
    volume; long format needs ``asset=``). Several files -- a list, a directory or a glob such as
    ``"data/BTCUSDT-1h-2024-*.csv"`` -- are read one by one and joined in time order; identical
    bars in overlapping files are dropped and reported, different ones are a :class:`DataError`.

    :param source: a path (``.csv``, ``.csv.gz``, ``.zip``, ``.parquet``, ...), a directory, a glob,
        a list of paths, or a DataFrame.
    :param asset: select one asset from a long-format file with an asset/symbol column.
    :param fill_missing: insert missing bars (last close carried forward, zero volume). Gaps are
        otherwise reported with a :class:`GapWarning` and counted in ``frame.attrs["n_gaps"]``
        (list them with :func:`find_gaps`).
    :param freq: expected bar spacing (inferred from the most common step when omitted).
    :param min_rows: raise when fewer rows remain (e.g. ``window_size + episode_length``).
    :param start: keep bars at or after this UTC time.
    :param end: keep bars strictly before this UTC time.
    :param repair: sort rows that are out of order and drop repeated timestamps (the first row in
        file order is kept) instead of raising; every change, and bars whose values repeat another
        bar's (suspected copies), is listed in a :class:`RepairReport`, emitted as a
        :class:`RepairWarning`; ``frame.attrs["repair_report"]`` holds its counts and summary.
    :param return_report: return ``(frame, report)``, the :class:`RepairReport` with every row.
    :raises DataError: for any malformed input, naming the source, column and first bad line.
    """
    frame, origin, report, attrs = read_bars(source, asset=asset, repair=repair)
    name = str(attrs["source"])
    if start is not None or end is not None:
        keep = np.ones(len(frame), dtype=bool)
        if start is not None:
            keep &= frame.index >= pd.Timestamp(start, tz="UTC")
        if end is not None:
            keep &= frame.index < pd.Timestamp(end, tz="UTC")
        frame, origin = frame[keep], origin.take(np.flatnonzero(keep))
    validate_ohlcv(frame, name, min_rows=min_rows, where=origin_where(frame, origin))
    if report.changed:
        warnings.warn(report.summary(), RepairWarning, stacklevel=2)
    frame, n_gaps = _handle_gaps(frame, name, freq, fill_missing)
    frame.attrs = {**attrs, "n_gaps": n_gaps, "freq": freq_str(infer_freq(frame.index))}
    if repair or report.changed:
        frame.attrs["repair_report"] = report.as_dict()  # plain values: attrs go into Parquet metadata as JSON
    return (frame, report) if return_report else frame


def _handle_gaps(
    frame: pd.DataFrame, name: str, freq: str | pd.Timedelta | None, fill_missing: bool, stacklevel: int = 3
) -> tuple[pd.DataFrame, int]:
    gaps = find_gaps(frame, freq)
    if not len(gaps):
        return frame, 0
    if fill_missing:
        return fill_gaps(frame, freq), 0
    first = gaps.iloc[0]
    warnings.warn(
        f"{name}: {len(gaps)} gap(s), {int(gaps['missing_bars'].sum())} missing bar(s); first after "
        f"{first['after'].isoformat()}. Pass fill_missing=True to carry the last close forward.",
        GapWarning,
        stacklevel=stacklevel,
    )
    return frame, len(gaps)
