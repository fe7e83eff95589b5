"""Read market-data files into raw tables that remember where every row came from.

This module finds the files of a source (a file, a directory or a glob), opens plain, gzip and
zip files and Parquet, sniffs the text layout (banner lines, header or none, the delimiter and
the decimal mark) and parses time columns. Every row of a :class:`RawTable` keeps its 1-based
**line in the file** (counting banner and header lines), so errors can send a user to the line
an editor shows. Frames and Parquet files have no lines: their rows are named by position.
(A quoted field spanning several lines would shift the count; no market-data export has one.)
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: File names a directory source picks up (a README.txt or a Binance .CHECKSUM next to the data is
#: left alone); a single file or a glob is read whatever its name.
DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".zip", ".parquet", ".pq")

BINANCE_COLUMNS = (
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
# Headerless files that are not Binance's 12 columns: time, OHLCV and maybe a trade count (Kraken).
_HEADERLESS_COLUMNS = {6: ("timestamp", "open", "high", "low", "close", "volume")}
_HEADERLESS_COLUMNS[7] = (*_HEADERLESS_COLUMNS[6], "trades")

# Ties go to the first: a ';' file with decimal commas splits on ',' into as many fields.
_DELIMITERS = (";", "\t", "|", ",")
_DECIMAL_COMMA = re.compile(r"^[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_DECIMAL_COMMA_NUMBER = r"[-+]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d*)?(?:[eE][-+]?\d+)?"
_CDD_DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{1,2}-(AM|PM)$", re.IGNORECASE)
_DAY_FIRST = re.compile(r"^\d{1,2}\.\d{1,2}\.\d{4}")
_DIGITS = re.compile(r"^[-+]?\d+(\.\d*)?$")
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
# Epoch magnitudes: seconds < 1e11 (year 5138) <= milliseconds < 1e14 <= microseconds < 1e17 <= ns.
_EPOCH_UNITS = (("s", "seconds", 1e11), ("ms", "milliseconds", 1e14), ("us", "microseconds", 1e17))


class DataError(ValueError):
    """Raised when market data is malformed; the message names the source, column and line or row."""


@dataclass(frozen=True)
class Origin:
    """Where each row of a table came from: its file line (text files), position and file."""

    rows: np.ndarray  # 0-based position in the file or frame
    lines: np.ndarray | None = None  # 1-based line in the text file, banner and header included
    files: np.ndarray | None = None  # index into ``names`` (sources made of several files)
    names: tuple[str, ...] = ()

    @classmethod
    def positions(cls, n: int) -> Origin:
        return cls(rows=np.arange(n, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, positions: np.ndarray | slice) -> Origin:
        return Origin(
            rows=self.rows[positions],
            lines=None if self.lines is None else self.lines[positions],
            files=None if self.files is None else self.files[positions],
            names=self.names,
        )

    def with_file(self, index: int, names: tuple[str, ...]) -> Origin:
        return Origin(self.rows, self.lines, np.full(len(self.rows), index, dtype=np.int64), names)

    @staticmethod
    def concat(parts: Sequence[Origin]) -> Origin:
        lines = None if any(p.lines is None for p in parts) else np.concatenate([p.lines for p in parts])
        files = None if any(p.files is None for p in parts) else np.concatenate([p.files for p in parts])
        return Origin(np.concatenate([p.rows for p in parts]), lines, files, parts[0].names if parts else ())

    def file(self, i: int) -> str | None:
        return None if self.files is None else self.names[int(self.files[i])]

    def line(self, i: int) -> int | None:
        if self.lines is None or self.lines[i] < 0:
            return None
        return int(self.lines[i])

    def where(self, i: int, timestamp: object = None) -> str:
        """``line 12 (2024-01-01T05:00:00+00:00)``, ``row 3 (...)`` or ``a.csv line 12 (...)``."""
        line = self.line(i)
        text = f"line {line}" if line is not None else f"row {int(self.rows[i])}"
        if self.files is not None:
            text = f"{self.file(i)} {text}"
        if isinstance(timestamp, pd.Timestamp):
            text += f" ({timestamp.isoformat()})"
        return text


@dataclass
class RawTable:
    """Columns as read (numbers or text) plus each row's :class:`Origin`."""

    frame: pd.DataFrame
    origin: Origin
    fmt: str
    decimal: str = "."
    path: Path | None = None

    def take(self, positions: np.ndarray) -> RawTable:
        frame = self.frame.iloc[positions].reset_index(drop=True)
        return RawTable(frame, self.origin.take(positions), self.fmt, self.decimal, self.path)


# ----------------------------------------------------------------------------------------------
# Finding the files of a source


def is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def resolve_paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[Path], str]:
    """The files of a source and the name errors use: a file, a directory of files, a glob or a list."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
        if not paths:
            raise DataError("an empty list of files was given")
        for path in paths:
            _check_file(path)
        return paths, f"{len(paths)} files ({paths[0]}, ...)" if len(paths) > 1 else str(paths[0])
    text = os.fspath(source)
    path = Path(text)
    if is_pattern(text) and not path.exists():
        matches = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not matches:
            raise DataError(f"{text}: no files match this pattern")
        return matches, text
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_data_file(p))
        if not files:
            raise DataError(
                f"{path}: is a directory with no data files in it (looked for {', '.join(DATA_SUFFIXES)}); "
                "give a file, a directory of monthly files or a glob such as 'data/BTCUSDT-1h-2024-*.csv'"
            )
        return files, str(path)
    _check_file(path)
    return [path], str(path)


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a file")
    if not path.exists():
        raise DataError(f"{path}: file not found")


def is_data_file(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(DATA_SUFFIXES)


# ----------------------------------------------------------------------------------------------
# Opening and sniffing one file


def _magic(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def _zip_entry(archive: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if any(info.filename.startswith("xl/") for info in entries):
        raise DataError(f"{path}: is an Excel workbook, not a data file; save the sheet as CSV")
    data = [
        info
        for info in entries
        if not info.filename.startswith("__MACOSX/") and not Path(info.filename).name.startswith(".")
    ]
    if len(data) != 1:
        names = ", ".join(info.filename for info in archive.infolist()) or "nothing"
        raise DataError(f"{path}: a zip must hold exactly one data file, this one holds {len(data)} ({names})")
    return data[0]


def read_table(path: Path) -> RawTable:
    """Read one file (CSV / TSV / semicolon text, gzip or zip of one, Parquet) into a raw table."""
    try:
        magic = _magic(path)
    except OSError as error:
        raise DataError(f"{path}: cannot open file: {error}") from error
    name = path.name.lower()
    try:
        if magic == b"PAR1" or name.endswith((".parquet", ".pq")):
            return _read_parquet(path, path)
        if magic.startswith(b"PK"):
            with zipfile.ZipFile(path) as archive:
                entry = _zip_entry(archive, path)
                if entry.filename.lower().endswith((".parquet", ".pq")):
                    return _read_parquet(io.BytesIO(archive.read(entry)), path)
                return _read_text(lambda: archive.open(entry), path)
        if magic.startswith(b"\x1f\x8b"):
            return _read_text(lambda: gzip.open(path), path)
        return _read_text(lambda: open(path, "rb"), path)
    except DataError:
        raise
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated compressed file: {error}") from error
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error, OSError) as error:
        raise DataError(f"{path}: cannot parse file: {error}") from error


def _read_parquet(target: Path | io.BytesIO, path: Path) -> RawTable:
    try:
        frame = pd.read_parquet(target)
    except Exception as error:  # pyarrow raises many types (ArrowInvalid, OSError, ...): one message
        raise DataError(f"{path}: not a readable Parquet file: {type(error).__name__}: {error}") from error
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis(frame.index.name or "timestamp").reset_index()
    else:
        frame = frame.reset_index(drop=True)
    return RawTable(frame, Origin.positions(len(frame)), "parquet", path=path)


def _split(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep))


def looks_numeric(text: str, decimal: str = ".") -> bool:
    text = text.strip()
    if decimal == ",":
        return bool(re.fullmatch(_DECIMAL_COMMA_NUMBER, text))
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Layout:
    skip: int  # physical lines above the header (or above the first row when there is none)
    header: bool
    sep: str
    decimal: str
    fmt: str
    names: tuple[str, ...] | None = None


def _sniff(lines: list[str], path: Path) -> _Layout:
    """Banner lines, delimiter, decimal mark and header from the first lines of a text file."""
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank:
        raise DataError(f"{path}: file is empty")
    start, sep = nonblank[0], ","
    for i in nonblank[:4]:  # the header is the first line with 3+ fields; lines above it are a banner
        counts = {d: len(_split(lines[i], d)) for d in _DELIMITERS}
        best = max(_DELIMITERS, key=lambda d: counts[d])
        if counts[best] >= 3:
            start, sep = i, best
            break
    banner = " ".join(lines[:start]).lower()
    fmt = "cryptodatadownload" if "cryptodatadownload" in banner else "csv"
    rows = [lines[i] for i in nonblank if i >= start][:5]
    decimal = "."
    if sep != "," and any(_DECIMAL_COMMA.match(f.strip()) for row in rows for f in _split(row, sep)):
        decimal = ","
    first = _split(rows[0], sep)
    numeric = [looks_numeric(f, decimal) for f in first]
    if (sum(numeric) >= 2 and numeric[0]) or sum(numeric) >= 4:
        if len(first) == 12 and all(numeric[:6]):
            return _Layout(start, False, sep, decimal, "binance", BINANCE_COLUMNS)
        if len(first) in _HEADERLESS_COLUMNS:
            return _Layout(start, False, sep, decimal, "headerless", _HEADERLESS_COLUMNS[len(first)])
        raise DataError(
            f"{path}: line {start + 1} has {len(first)} fields and no header; cannot tell which column is "
            "which (known headerless layouts: Binance klines with 12 columns, time+OHLCV with 6 or 7)"
        )
    return _Layout(start, True, sep, decimal, fmt)


def _read_text(opener: Callable[[], object], path: Path) -> RawTable:
    with opener() as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="") as text:
        head = [line.rstrip("\r\n") for _, line in zip(range(8), text)]
    layout = _sniff(head, path)
    with opener() as raw:
        frame = pd.read_csv(
            raw,
            sep=layout.sep,
            skiprows=layout.skip,
            header=0 if layout.header else None,
            names=list(layout.names) if layout.names else None,
            skip_blank_lines=False,  # keeps row i on line first_line + i
            dtype=str if layout.decimal == "," else None,
            encoding="utf-8-sig",
            encoding_errors="replace",
        )
    if not isinstance(frame.index, pd.RangeIndex):  # more fields than header names: pandas made an index
        frame = frame.reset_index().rename(columns={"index": ""})
    first_line = layout.skip + (2 if layout.header else 1)
    lines = first_line + np.arange(len(frame), dtype=np.int64)
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame[~blank].reset_index(drop=True)
        lines = lines[~blank]
    origin = Origin(rows=np.arange(len(frame), dtype=np.int64), lines=lines)
    return RawTable(frame, origin, layout.fmt, layout.decimal, path)


# ----------------------------------------------------------------------------------------------
# Values


def to_float(values: pd.Series, decimal: str = ".") -> np.ndarray:
    """Numbers as float64; anything that is not a number becomes NaN (callers name the line)."""
    if decimal == "," and not pd.api.types.is_numeric_dtype(values):
        text = values.astype("string").str.strip()
        valid = text.str.fullmatch(_DECIMAL_COMMA_NUMBER).fillna(False).to_numpy(dtype=bool)
        text = text.str.replace(".", "", regex=False).str.replace(",", ".", regex=False).where(valid)
        return pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def is_time_of_day(values: pd.Series) -> bool:
    """True for a column of ``HH:MM`` / ``HH:MM:SS`` texts (a time column next to a date column), by its first value."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return False
    first = values.dropna().head(1).astype(str).str.strip()
    return len(first) > 0 and bool(_TIME_OF_DAY.match(first.iloc[0]))  # the rest are checked when parsed


def parse_time_of_day(values: pd.Series, column: str, where: Callable[[int], str], source: str) -> np.ndarray:
    text = values.astype("string").str.strip()
    padded = text.where(text.str.count(":") != 1, text + ":00")
    deltas = pd.to_timedelta(padded, errors="coerce")
    bad = np.flatnonzero(deltas.isna().to_numpy() | (deltas >= pd.Timedelta(days=1)).to_numpy(dtype=bool))
    if bad.size:
        raise DataError(
            f"{source}: column '{column}' has an unparseable time of day {text.iloc[bad[0]]!r} at {where(bad[0])}"
        )
    return deltas.to_numpy(dtype="timedelta64[ns]")


def parse_times(values: pd.Series, column: str, where: Callable[[int], str], source: str) -> pd.DatetimeIndex:
    """Parse a time column into a UTC index, at microsecond resolution unless that would lose nanoseconds.

    See :func:`_parse_times` for the forms understood.
    """
    index = _parse_times(values, column, where, source)
    if index.unit == "ns" and not (index.asi8 % 1000).any():
        index = index.as_unit("us")
    return index


def _parse_times(values: pd.Series, column: str, where: Callable[[int], str], source: str) -> pd.DatetimeIndex:
    """Parse a time column into UTC: datetimes, ``YYYYMMDD`` integers, epoch s / ms / us / ns, texts.

    The epoch unit is decided from the magnitude of the whole column and must be the same for every
    value; ``where(i)`` names row ``i`` in error messages (``line 12``).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(values):
        index = pd.DatetimeIndex(values)
        bad = np.flatnonzero(index.isna())
        if bad.size:
            raise DataError(f"{source}: column '{column}' has a missing time at {where(bad[0])}")
        return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if not pd.api.types.is_numeric_dtype(values):
        text = values.astype("string").str.strip()
        missing = np.flatnonzero(text.isna().to_numpy() | (text == "").fillna(True).to_numpy(dtype=bool))
        if missing.size:
            raise DataError(f"{source}: column '{column}' has a missing time at {where(missing[0])}")
        if text.str.match(_DIGITS).all():
            values = pd.to_numeric(text, errors="coerce")
        else:
            return _parse_text_times(text, column, where, source)
    return _parse_numeric_times(values, column, where, source)


def _parse_numeric_times(values: pd.Series, column: str, where: Callable[[int], str], source: str) -> pd.DatetimeIndex:
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        raise DataError(f"{source}: column '{column}' has a missing or non-finite time at {where(bad[0])}")
    integral = bool(np.all(numbers == np.round(numbers)))
    exact = values.to_numpy(dtype="int64") if pd.api.types.is_integer_dtype(values) else None
    if integral and numbers.size and numbers.min() >= 19000101 and numbers.max() <= 21001231:
        # YYYYMMDD dates, not epoch seconds in August 1970.
        ints = numbers.astype("int64")
        parsed = pd.to_datetime(pd.Series(ints).astype(str), format="%Y%m%d", errors="coerce", utc=True)
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if bad.size:
            raise DataError(
                f"{source}: column '{column}' holds YYYYMMDD dates but {ints[bad[0]]} at {where(bad[0])} is not a date"
            )
        return pd.DatetimeIndex(parsed)
    magnitude = np.abs(numbers)
    codes = np.searchsorted(np.array([limit for _, _, limit in _EPOCH_UNITS]), magnitude, side="right")
    names = [u for u, _, _ in _EPOCH_UNITS] + ["ns"]
    words = [w for _, w, _ in _EPOCH_UNITS] + ["nanoseconds"]
    usual = int(np.bincount(codes).argmax())
    odd = np.flatnonzero(codes != usual)
    if odd.size:
        i = int(odd[0])
        example = int(np.flatnonzero(codes == usual)[0])
        raise DataError(
            f"{source}: column '{column}' mixes epoch units: {_number(numbers[i])} at {where(i)} is in "
            f"{words[codes[i]]} but the column is in {words[usual]} (e.g. {_number(numbers[example])} at "
            f"{where(example)}); one column must use one unit"
        )
    unit = names[usual]
    try:
        if exact is not None:
            parsed = pd.to_datetime(exact, unit=unit, utc=True)
        elif integral and unit in ("us", "ns"):
            parsed = pd.to_datetime(numbers.astype("int64"), unit=unit, utc=True)
        else:
            parsed = pd.to_datetime(numbers, unit=unit, utc=True)
    except (pd.errors.OutOfBoundsDatetime, OverflowError, ValueError) as error:
        i = int(np.argmax(magnitude))
        raise DataError(
            f"{source}: column '{column}' has an epoch time out of range, {_number(numbers[i])} ({words[usual]}) "
            f"at {where(i)}: {error}"
        ) from error
    return pd.DatetimeIndex(parsed)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _parse_text_times(text: pd.Series, column: str, where: Callable[[int], str], source: str) -> pd.DatetimeIndex:
    first = str(text.iloc[0]) if len(text) else ""
    if _CDD_DATE.match(first):  # CryptoDataDownload's '2019-10-17 09-AM'
        text = text.str.replace(r"^(\d{4}-\d{2}-\d{2}) (\d{1,2})-(AM|PM)$", r"\1 \2 \3", regex=True)
        parsed = pd.to_datetime(text, format="%Y-%m-%d %I %p", errors="coerce", utc=True)
    elif _DAY_FIRST.match(first):  # European '31.01.2024 13:00'
        parsed = pd.to_datetime(text, format="mixed", dayfirst=True, errors="coerce", utc=True)
    else:
        try:
            parsed = pd.to_datetime(text, format="ISO8601", utc=True)
        except (ValueError, OverflowError):
            parsed = pd.to_datetime(text, format="mixed", errors="coerce", utc=True)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        raise DataError(f"{source}: column '{column}' has an unparseable time {text.iloc[bad[0]]!r} at {where(bad[0])}")
    return pd.DatetimeIndex(parsed)
