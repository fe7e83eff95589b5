"""Row order: detect newest-first files, name disordered and duplicated rows, repair and report.

Exports are often newest first, and some (CryptoDataDownload's hourly files are a known case)
carry a handful of rows out of order or copied. :func:`order_rows` recognises the direction from
the majority of steps, then either refuses with a :class:`~sb3_crypto.data.formats.DataError`
naming the offending rows by file line and timestamp, or (``repair=True``) sorts, drops repeated
timestamps (the first in file order is kept) and records every change in a :class:`RepairReport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sb3_crypto.data.formats import DataError, Origin

_PRICE_VOLUME = ("open", "high", "low", "close", "volume")
_REF_COLUMNS = ("file", "line", "row", "timestamp")
SHOWN = 5  # rows named per kind in messages and summaries


class RepairWarning(UserWarning):
    """Emitted whenever loading changed the rows (reordered, dropped) or found suspected copies."""


def _nanos(index: pd.DatetimeIndex) -> np.ndarray:
    return index.as_unit("ns").asi8


def _refs(origin: Origin, positions: np.ndarray, times: pd.DatetimeIndex, prefix: str = "") -> dict[str, object]:
    """Columns ``file, line, row, timestamp`` (with ``prefix``) naming rows ``positions``."""
    positions = np.asarray(positions, dtype=np.int64)
    n = len(positions)
    files = [None] * n if origin.files is None else [origin.names[int(f)] for f in origin.files[positions]]
    lines = [None] * n if origin.lines is None else origin.lines[positions]
    return {
        f"{prefix}file": np.array(files, dtype=object),
        f"{prefix}line": pd.array(lines, dtype="Int64"),
        f"{prefix}row": origin.rows[positions],
        f"{prefix}timestamp": times[positions],
    }


def _table(*parts: dict[str, object]) -> pd.DataFrame:
    data: dict[str, object] = {}
    for part in parts:
        data.update(part)
    return pd.DataFrame(data)


def _empty(*prefixes: str, extra: Sequence[str] = ()) -> pd.DataFrame:
    columns = [f"{p}{c}" for p in prefixes for c in _REF_COLUMNS] + list(extra)
    return pd.DataFrame(columns=columns)


def _where(row: pd.Series, prefix: str = "", timestamp: bool = True) -> str:
    line = row[f"{prefix}line"]
    text = f"line {int(line)}" if not pd.isna(line) else f"row {int(row[f'{prefix}row'])}"
    if row[f"{prefix}file"] is not None and not pd.isna(row[f"{prefix}file"]):
        text = f"{row[f'{prefix}file']} {text}"
    if timestamp:
        text += f" ({row[f'{prefix}timestamp'].isoformat()})"
    return text


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _more(n: int, shown: int) -> str:
    return f", ... ({n - shown} more)" if n > shown else ""


@dataclass(frozen=True, eq=False)
class RepairReport:
    """What loading changed, every change with its file line (or frame row) and timestamp.

    Each table has the columns ``file`` (None for one file), ``line`` (1-based line in the text
    file; missing for frames and Parquet), ``row`` (0-based position in the file or frame) and
    ``timestamp``; ``duplicates`` and ``overlaps`` add the row that was kept (``kept_*``) and
    ``same_values``; ``copies`` adds the bar whose values are repeated (``copy_of_*``).
    """

    source: str
    newest_first: bool = False
    rows_in: int = 0
    rows_out: int = 0
    repaired: bool = False
    #: rows taken out of place to restore order (a smallest such set, found per file)
    moved: pd.DataFrame = field(default_factory=lambda: _empty(""))
    #: rows dropped because an earlier line has the same timestamp
    duplicates: pd.DataFrame = field(default_factory=lambda: _empty("", "kept_", extra=["same_values"]))
    #: kept bars whose open, high, low, close and volume exactly repeat an earlier bar's (volume > 0)
    copies: pd.DataFrame = field(default_factory=lambda: _empty("", "copy_of_"))
    #: identical bars found in two files of one source (the later file's bar is dropped)
    overlaps: pd.DataFrame = field(default_factory=lambda: _empty("", "kept_", extra=["same_values"]))

    @property
    def n_moved(self) -> int:
        return len(self.moved)

    @property
    def n_duplicates(self) -> int:
        return len(self.duplicates)

    @property
    def n_copies(self) -> int:
        return len(self.copies)

    @property
    def n_overlaps(self) -> int:
        return len(self.overlaps)

    @property
    def changed(self) -> bool:
        """True when rows were moved or dropped or suspected copies were found."""
        return bool(self.n_moved or self.n_duplicates or self.n_copies or self.n_overlaps)

    def summary(self, shown: int = SHOWN) -> str:
        """A few lines: counts and the first rows of each kind."""
        order = "newest first" if self.newest_first else "oldest first"
        head = f"{self.source}: {self.rows_in} rows ({order}) -> {self.rows_out} rows"
        if not self.changed:
            return head + ", nothing to repair"
        lines = [head + ":"]
        if self.n_moved:
            rows = ", ".join(_where(r) for _, r in self.moved.head(shown).iterrows())
            lines.append(f"  {_plural(self.n_moved, 'row')} moved to restore order: {rows}{_more(self.n_moved, shown)}")
        if self.n_duplicates:
            differ = int((~self.duplicates["same_values"].astype(bool)).sum())
            rows = ", ".join(_duplicate(r) for _, r in self.duplicates.head(shown).iterrows())
            note = f" ({differ} with different values, the first row was kept)" if differ else ""
            lines.append(
                f"  {_plural(self.n_duplicates, 'duplicate timestamp')} dropped{note}: {rows}"
                f"{_more(self.n_duplicates, shown)}"
            )
        if self.n_overlaps:
            rows = ", ".join(_duplicate(r) for _, r in self.overlaps.head(shown).iterrows())
            lines.append(
                f"  {_plural(self.n_overlaps, 'identical bar')} in overlapping files dropped: {rows}"
                f"{_more(self.n_overlaps, shown)}"
            )
        if self.n_copies:
            rows = ", ".join(
                f"{_where(r)} repeats {_where(r, 'copy_of_')}" for _, r in self.copies.head(shown).iterrows()
            )
            lines.append(
                f"  {_plural(self.n_copies, 'suspected copy', 'suspected copies')} (open, high, low, close and "
                f"volume equal to another bar's, kept): {rows}{_more(self.n_copies, shown)}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def as_dict(self) -> dict[str, object]:
        """Counts and the summary as plain values (what ``frame.attrs["repair_report"]`` holds)."""
        return {
            "source": self.source,
            "newest_first": self.newest_first,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "moved": self.n_moved,
            "duplicates": self.n_duplicates,
            "copies": self.n_copies,
            "overlaps": self.n_overlaps,
            "summary": self.summary(),
        }


def _duplicate(row: pd.Series) -> str:
    same = "same values" if bool(row["same_values"]) else "different values"
    return f"{_where(row)} repeats {_where(row, 'kept_', timestamp=False)} ({same})"


def _same_values(frame: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    columns = [c for c in frame.columns if c in _PRICE_VOLUME] or list(frame.columns)
    left = frame[columns].to_numpy(dtype="float64")[a]
    right = frame[columns].to_numpy(dtype="float64")[b]
    return np.all((left == right) | (np.isnan(left) & np.isnan(right)), axis=1)


def _heaviest_increasing(values: np.ndarray, bonus: np.ndarray) -> np.ndarray:
    """Mask of a longest strictly increasing subsequence, preferring elements flagged in ``bonus``."""
    m = len(values)
    keep = np.zeros(m, dtype=bool)
    if m == 0:
        return keep
    ranks = np.empty(m, dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(1, m + 1)
    weights = (m + 1) + bonus.astype(np.int64)  # length first, then elements already in place
    tree_value = [0] * (m + 1)
    tree_arg = [-1] * (m + 1)
    total = [0] * m
    parent = [-1] * m
    for i in range(m):
        rank = int(ranks[i])
        best, arg, j = 0, -1, rank - 1
        while j > 0:  # Fenwick prefix maximum over smaller values
            if tree_value[j] > best:
                best, arg = tree_value[j], tree_arg[j]
            j -= j & -j
        total[i] = best + int(weights[i])
        parent[i] = arg
        j = rank
        while j <= m:
            if tree_value[j] < total[i]:
                tree_value[j], tree_arg[j] = total[i], i
            j += j & -j
    i = int(np.argmax(total))
    while i >= 0:
        keep[i] = True
        i = parent[i]
    return keep


def out_of_order(times: np.ndarray) -> np.ndarray:
    """Positions of a smallest set of rows whose removal leaves unique ``times`` strictly increasing.

    Among the smallest sets, rows already at their sorted position are kept where possible, so a
    swapped pair names the two swapped rows. Rows greater than everything before and smaller than
    everything after are in every solution; only the stretches between them are searched.
    """
    n = len(times)
    if n < 2:
        return np.empty(0, dtype=np.int64)
    anchor = np.ones(n, dtype=bool)
    anchor[1:] &= times[1:] > np.maximum.accumulate(times)[:-1]
    anchor[:-1] &= times[:-1] < np.minimum.accumulate(times[::-1])[::-1][1:]
    if anchor.all():
        return np.empty(0, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(times, kind="stable")] = np.arange(n)
    in_place = rank == np.arange(n)
    loose = np.flatnonzero(~anchor)
    moved: list[np.ndarray] = []
    for run in np.split(loose, np.flatnonzero(np.diff(loose) > 1) + 1):
        start, stop = int(run[0]), int(run[-1]) + 1
        fits = np.ones(len(run), dtype=bool)
        if start > 0:
            fits &= times[run] > times[start - 1]
        if stop < n:
            fits &= times[run] < times[stop]
        candidates = run[fits]
        moved.append(run[~fits])
        moved.append(candidates[~_heaviest_increasing(times[candidates], in_place[candidates])])
    return np.sort(np.concatenate(moved))


def _disorder_message(
    source: str,
    newest_first: bool,
    frame: pd.DataFrame,
    origin: Origin,
    moved: np.ndarray,
    dropped: np.ndarray,
    kept: np.ndarray,
    hint: str,
) -> str:
    index = frame.index
    problems = []
    if moved.size:
        rows = ", ".join(origin.where(int(i), index[i]) for i in moved[:SHOWN])
        problems.append(f"{_plural(moved.size, 'row')} out of order: {rows}{_more(moved.size, SHOWN)}")
    if dropped.size:
        same = _same_values(frame, dropped, kept)
        rows = ", ".join(
            f"{origin.where(int(d), index[d])} repeats {origin.where(int(k))} ({'same' if s else 'different'} values)"
            for d, k, s in zip(dropped[:SHOWN], kept[:SHOWN], same[:SHOWN])
        )
        problems.append(f"{_plural(dropped.size, 'duplicate timestamp')}: {rows}{_more(dropped.size, SHOWN)}")
    order = "newest first" if newest_first else "oldest first"
    return f"{source}: the rows are {order}, but with " + "; ".join(problems) + f". {hint}"


def order_rows(
    frame: pd.DataFrame, origin: Origin, source: str, *, repair: bool, hint: str
) -> tuple[pd.DataFrame, Origin, RepairReport]:
    """Put one file's (or frame's) rows in ascending time order, or explain why that needs ``repair``.

    Strictly ascending or strictly descending rows pass. Otherwise the direction is the majority of
    steps (on a tie, last row against first), and duplicated timestamps (all but the first in file
    order) and a smallest set of rows out of that order are named in a :class:`DataError` ending
    with ``hint`` -- or, with ``repair=True``, sorted and dropped, and listed in the returned
    :class:`RepairReport`.
    """
    n = len(frame)
    times = _nanos(pd.DatetimeIndex(frame.index))
    steps = np.diff(times)
    if n < 2 or (steps > 0).all():
        return frame, origin, RepairReport(source, False, n, n, repair)
    if (steps < 0).all():
        return frame.iloc[::-1], origin.take(slice(None, None, -1)), RepairReport(source, True, n, n, repair)
    down, up = int((steps < 0).sum()), int((steps > 0).sum())
    newest_first = down > up or (down == up and times[-1] < times[0])

    duplicated = pd.Index(times).duplicated(keep="first")
    dropped = np.flatnonzero(duplicated)
    first_of = pd.Series(np.arange(n)).groupby(times).transform("first").to_numpy()
    kept = first_of[dropped]
    oriented = np.arange(n)[::-1] if newest_first else np.arange(n)
    remaining = oriented[~duplicated[oriented]]
    moved = np.sort(remaining[out_of_order(times[remaining])])
    if not repair:
        raise DataError(_disorder_message(source, newest_first, frame, origin, moved, dropped, kept, hint))

    order = remaining[np.argsort(times[remaining], kind="stable")]
    index = pd.DatetimeIndex(frame.index)
    report = RepairReport(
        source,
        newest_first,
        n,
        len(order),
        True,
        moved=_table(_refs(origin, moved, index)),
        duplicates=_table(
            _refs(origin, dropped, index),
            _refs(origin, kept, index, "kept_"),
            {"same_values": _same_values(frame, dropped, kept)},
        ),
    )
    return frame.iloc[order], origin.take(order), report


def suspected_copies(frame: pd.DataFrame, origin: Origin) -> pd.DataFrame:
    """Bars (volume > 0) whose open, high, low, close and volume exactly repeat an earlier bar's."""
    columns = [c for c in _PRICE_VOLUME if c in frame.columns]
    traded = np.flatnonzero(frame["volume"].to_numpy() > 0) if "volume" in frame else np.arange(len(frame))
    values = frame.iloc[traded][columns]
    if len(values) < 2 or not values.duplicated().any():
        return _empty("", "copy_of_")
    groups = values.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(groups))).groupby(groups).transform("first").to_numpy()
    copy = np.flatnonzero(first != np.arange(len(groups)))
    index = pd.DatetimeIndex(frame.index)
    return _table(_refs(origin, traded[copy], index), _refs(origin, traded[first[copy]], index, "copy_of_"))


def merge_files(parts: Sequence[tuple[pd.DataFrame, Origin]], source: str) -> tuple[pd.DataFrame, Origin, pd.DataFrame]:
    """Concatenate sorted per-file frames in time order; identical overlapping bars are dropped.

    Returns the frame, its origin and the table of dropped overlaps. Two files with different
    values at one timestamp are a :class:`DataError` naming both files and the timestamp.
    """
    parts = sorted(parts, key=lambda part: part[0].index[0])
    columns = [c for c in parts[0][0].columns if all(c in frame.columns for frame, _ in parts)]
    frame = pd.concat([frame[columns] for frame, _ in parts])
    origin = Origin.concat([o for _, o in parts])
    times = _nanos(pd.DatetimeIndex(frame.index))
    order = np.argsort(times, kind="stable")
    frame, origin, times = frame.iloc[order], origin.take(order), times[order]
    repeat = np.flatnonzero(np.diff(times) == 0) + 1
    if not repeat.size:
        return frame, origin, _empty("", "kept_", extra=["same_values"])
    starts = np.r_[True, np.diff(times) != 0]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(times)), 0))
    kept = first[repeat]
    same = _same_values(frame, repeat, kept)
    if not same.all():
        i = int(repeat[~same][0])
        k = int(first[i])
        shown = [c for c in columns if c in _PRICE_VOLUME]

        def values(j: int) -> str:
            return ", ".join(f"{c}={frame[c].iloc[j]:g}" for c in shown)

        raise DataError(
            f"{source}: {origin.file(k)} and {origin.file(i)} overlap with different bars at "
            f"{frame.index[i].isoformat()}: {origin.where(k)} has {values(k)}, {origin.where(i)} has "
            f"{values(i)}; remove one of the files or the overlapping rows"
        )
    index = pd.DatetimeIndex(frame.index)
    overlaps = _table(_refs(origin, repeat, index), _refs(origin, kept, index, "kept_"), {"same_values": same})
    keep = np.ones(len(frame), dtype=bool)
    keep[repeat] = False
    return frame.iloc[np.flatnonzero(keep)], origin.take(np.flatnonzero(keep)), overlaps


def combine_reports(
    source: str, reports: Sequence[RepairReport], overlaps: pd.DataFrame, rows_out: int
) -> RepairReport:
    """One report for a source made of several files."""

    def stack(name: str) -> pd.DataFrame:
        tables = [getattr(r, name) for r in reports if len(getattr(r, name))]
        return pd.concat(tables, ignore_index=True) if tables else getattr(reports[0], name)

    return RepairReport(
        source,
        newest_first=any(r.newest_first for r in reports),
        rows_in=sum(r.rows_in for r in reports),
        rows_out=rows_out,
        repaired=any(r.repaired for r in reports),
        moved=stack("moved"),
        duplicates=stack("duplicates"),
        copies=stack("copies"),
        overlaps=overlaps,
    )
