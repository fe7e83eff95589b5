"""Several assets on one clock: a long file with an asset column, a wide close panel, a dict of sources.

:func:`load_panel` returns a :class:`Panel`: every asset's canonical frame (the same checks and
error messages as :func:`~sb3_crypto.data.load_ohlcv`) over its **listed life** only, and a common
clock, the union of all assets' timestamps. Nothing is filled before an asset's first bar or after
its last (listing and delisting are facts, not gaps); inside its life, missing bars are reported
with a :class:`~sb3_crypto.data.GapWarning` or carried forward with ``fill_missing=True``.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, reduce

import numpy as np
import pandas as pd

from sb3_crypto.data.formats import DataError, Origin, RawTable, read_table, resolve_paths
from sb3_crypto.data.loaders import (
    OHLCV_COLUMNS,
    GapWarning,
    Source,
    bars_from_table,
    fill_gaps,
    find_asset_column,
    find_gaps,
    frame_table,
    freq_str,
    infer_freq,
    numeric_column,
    origin_where,
    read_bars,
    time_column,
    time_index,
    validate_ohlcv,
)
from sb3_crypto.data.repair import RepairReport, RepairWarning, order_rows, suspected_copies

PANEL_HINT = (
    "Repair with load_panel(..., repair=True), which sorts the rows, keeps the first row of each timestamp "
    "and reports every change."
)


@dataclass(frozen=True, eq=False)
class Panel:
    """Canonical bars of several assets on a common clock.

    ``frames[asset]`` is the asset's canonical frame (see :func:`~sb3_crypto.data.load_ohlcv`)
    from its listing to its delisting, with timestamps taken from ``index``, the common clock.
    Wide views (:meth:`field`, :attr:`close`) put NaN where an asset has no bar: outside its life,
    and in gaps inside it unless they were filled.
    """

    frames: dict[str, pd.DataFrame]
    index: pd.DatetimeIndex
    source: str = "panel"
    freq: str | None = None
    #: repair reports of the assets whose rows were repaired (``repair=True``)
    reports: dict[str, RepairReport] = field(default_factory=dict)
    #: assets left out (``assets=None``) and why: no bar between ``start`` and ``end``, too few rows
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(self.frames)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, asset: str) -> pd.DataFrame:
        if asset not in self.frames:
            raise DataError(_unknown(self.source, [asset], list(self.frames)))
        return self.frames[asset]

    def __repr__(self) -> str:
        span = f"{self.index[0]} .. {self.index[-1]}" if len(self.index) else "empty"
        return f"Panel({len(self.frames)} assets, {len(self.index)} times {span}, every {self.freq})"

    @cached_property
    def listed(self) -> pd.Series:
        """Each asset's first bar."""
        return pd.Series({a: f.index[0] for a, f in self.frames.items()}, name="listed", dtype=self.index.dtype)

    @cached_property
    def delisted(self) -> pd.Series:
        """Each asset's last bar (the panel's last time for an asset still listed then)."""
        return pd.Series({a: f.index[-1] for a, f in self.frames.items()}, name="delisted", dtype=self.index.dtype)

    @cached_property
    def alive(self) -> pd.DataFrame:
        """True from an asset's first bar to its last, inclusive (gaps inside its life included)."""
        data = {a: (self.index >= f.index[0]) & (self.index <= f.index[-1]) for a, f in self.frames.items()}
        return pd.DataFrame(data, index=self.index, columns=list(self.frames))

    def field(self, name: str) -> pd.DataFrame:
        """One column of every asset as a wide frame on the common clock (NaN where there is no bar)."""
        if name not in OHLCV_COLUMNS and not all(name in f.columns for f in self.frames.values()):
            raise DataError(f"{self.source}: no column {name!r} in every asset (columns: {list(OHLCV_COLUMNS)})")
        data = {a: f[name].reindex(self.index) for a, f in self.frames.items()}
        return pd.DataFrame(data, index=self.index, columns=list(self.frames))

    @cached_property
    def close(self) -> pd.DataFrame:
        """Close prices, one column per asset, on the common clock."""
        return self.field("close")

    def aligned(self, asset: str) -> pd.DataFrame:
        """``frames[asset]`` reindexed on the common clock: NaN rows where the asset has no bar."""
        return self[asset].reindex(self.index)


def _unknown(source: str, missing: Sequence[str], available: Sequence[str]) -> str:
    hints = []
    for name in missing:
        lowered = name.lower()
        close = [a for a in available if a.lower().startswith(lowered)]
        close += [a for a in available if lowered in a.lower() and a not in close]
        close = close[:3]
        close = close or difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        if close:
            hints.append(f"{name!r}: did you mean {' or '.join(map(repr, close))}?")
    shown = ", ".join(available[:20]) + (f", ... ({len(available)} in total)" if len(available) > 20 else "")
    plural = "s" if len(missing) > 1 else ""
    text = f"{source}: unknown asset{plural} {', '.join(map(repr, missing))}"
    if hints:
        text += " (" + "; ".join(hints) + ")"
    return f"{text}; available: {shown}"


def _read_table(source: Source) -> tuple[RawTable, str]:
    if isinstance(source, pd.DataFrame):
        return frame_table(source), str(source.attrs.get("source", "DataFrame"))
    paths, name = resolve_paths(source)
    if len(paths) != 1:
        raise DataError(
            f"{name}: a panel is read from one long or wide file; for one file per asset pass a dict "
            "such as {'BTC': 'btc.csv', 'ETH': 'eth.csv'}"
        )
    return read_table(paths[0]), name


def _long_tables(table: RawTable, column: object, name: str) -> dict[str, RawTable]:
    names = table.frame[column]
    missing = np.flatnonzero(names.isna().to_numpy() | (names.astype(str).str.strip() == "").to_numpy())
    if missing.size:
        raise DataError(f"{name}: column '{column}' has no asset name at {table.origin.where(int(missing[0]))}")
    codes, uniques = pd.factorize(names.astype(str), sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    return {str(uniques[codes[g[0]]]): table.take(g) for g in np.split(order, bounds)}


def _wide_frames(
    table: RawTable, name: str, wanted: Sequence[str] | None, repair: bool
) -> tuple[dict[str, tuple[pd.DataFrame, Origin, RepairReport]], list[str]]:
    frame = table.frame
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis(frame.index.name or "timestamp").reset_index()
        table = RawTable(frame, table.origin, table.fmt, table.decimal, table.path)
    times = time_index(frame, table, name)
    used = time_column(frame, table)
    columns = [c for c in frame.columns if c not in used]
    available = [str(c) for c in columns]
    selected = list(wanted) if wanted is not None else available
    missing = [a for a in selected if a not in available]
    if missing:
        raise DataError(_unknown(name, missing, available))
    out = {}
    for column in columns:
        asset = str(column)
        if asset not in selected:
            continue
        label = f"{name} [{asset}]"
        values = numeric_column(frame[column], table, label, asset)
        present = np.flatnonzero(~np.isnan(values))
        if not present.size:
            out[asset] = None
            continue
        price = values[present]
        bars = pd.DataFrame(
            {"open": price, "high": price, "low": price, "close": price, "volume": np.zeros(present.size)},
            index=pd.DatetimeIndex(times[present], name="timestamp"),
        )
        bars.attrs["close_only"] = True
        out[asset] = order_rows(bars, table.origin.take(present), label, repair=repair, hint=PANEL_HINT)
    return out, available


def load_panel(
    source: Source | Mapping[str, Source],
    assets: Sequence[str] | None = None,
    *,
    fill_missing: bool = False,
    freq: str | pd.Timedelta | None = None,
    min_rows: int = 1,
    min_assets: int = 1,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    repair: bool = False,
) -> Panel:
    """Load several assets onto a common clock.

    :param source: a long file or frame with an asset column (``symbol``, ``asset``, ``ticker``,
        ``pair``, ``coin``; e.g. the CoinMarketCap daily file, close-only), a wide file or frame of
        close prices (a time column and one column per asset, empty cells where an asset has no
        price), or a dict ``{asset: path or frame}`` of single-asset sources.
    :param assets: the assets to keep, in this order (default: all, in order of appearance).
    :param fill_missing: fill gaps *inside* each asset's life (last close carried forward, zero
        volume); never before its first bar or after its last. Otherwise gaps give one
        :class:`GapWarning` naming the assets with gaps.
    :param freq: the bar spacing (default: the most common step of the common clock).
    :param min_rows: bars each asset needs between ``start`` and ``end``. With ``assets=None``
        assets with fewer bars are left out (listed in ``panel.skipped``); named ones are an error.
    :param min_assets: raise when fewer assets remain (a portfolio needs 2).
    :param start: keep bars at or after this UTC time.
    :param end: keep bars strictly before this UTC time.
    :param repair: sort and deduplicate each asset's rows as ``load_ohlcv(..., repair=True)`` does.
    :raises DataError: unknown assets (with close matches), repeated asset/timestamp rows, malformed
        values (by file line), too few assets or rows.
    """
    loaded: dict[str, tuple[pd.DataFrame, Origin, RepairReport] | None] = {}
    if isinstance(source, Mapping):
        name = "panel"
        available = [str(k) for k in source]
        missing = [a for a in assets or () if a not in available]
        if missing:
            raise DataError(_unknown(name, missing, available))
        for asset in assets if assets is not None else available:
            item = source[asset]
            frame, origin, report, _ = read_bars(item, repair=repair, hint=PANEL_HINT, frame_name=f"{name} [{asset}]")
            loaded[asset] = (frame, origin, report)
    else:
        table, name = _read_table(source)
        if table.frame.empty:
            raise DataError(f"{name}: no rows")
        column = find_asset_column(table.frame)
        if column is not None:
            tables = _long_tables(table, column, name)
            available = list(tables)
            missing = [a for a in assets or () if a not in tables]
            if missing:
                raise DataError(_unknown(name, missing, available))
            for asset in assets if assets is not None else available:
                label = f"{name} [{asset}]"
                loaded[asset] = bars_from_table(tables[asset], label, repair=repair, hint=PANEL_HINT)
        elif any(c in {str(k).lower() for k in table.frame.columns} for c in ("open", "high", "low", "close")):
            raise DataError(
                f"{name}: holds the bars of one asset (no asset column); for a panel pass a long file with an "
                "asset column, a wide file with one price column per asset, or a dict {'BTC': path, ...}"
            )
        else:
            wide, available = _wide_frames(table, name, assets, repair)
            loaded.update(wide)
            if assets is not None:
                loaded = {a: loaded[a] for a in assets}

    frames: dict[str, pd.DataFrame] = {}
    reports: dict[str, RepairReport] = {}
    skipped: dict[str, str] = {}
    for asset, item in loaded.items():
        label = f"{name} [{asset}]"
        if item is None:
            frame, origin, report = None, None, None
        else:
            frame, origin, report = item
            keep = np.ones(len(frame), dtype=bool)
            if start is not None:
                keep &= frame.index >= pd.Timestamp(start, tz="UTC")
            if end is not None:
                keep &= frame.index < pd.Timestamp(end, tz="UTC")
            frame, origin = frame[keep], origin.take(np.flatnonzero(keep))
        if frame is None or len(frame) < min_rows:
            reason = f"{0 if frame is None else len(frame)} bars, {min_rows} needed"
            if assets is not None:
                raise DataError(f"{label}: {reason}" + (" between start and end" if start or end else ""))
            skipped[asset] = reason
            continue
        validate_ohlcv(frame, label, min_rows=min_rows, where=origin_where(frame, origin))
        if repair:
            report = _with_copies(report, frame, origin)
            reports[asset] = report
            if report.changed:
                warnings.warn(report.summary(), RepairWarning, stacklevel=2)
        frame.attrs = {"source": label, "asset": asset, "close_only": bool(frame.attrs.get("close_only", False))}
        frames[asset] = frame
    if len(frames) < min_assets:
        raise DataError(
            f"{name}: {len(frames)} asset(s) left, but the panel needs at least {min_assets}"
            + (f" (skipped: {', '.join(f'{a}: {r}' for a, r in list(skipped.items())[:5])})" if skipped else "")
        )
    return _on_common_clock(frames, name, freq, fill_missing, reports, skipped)


def _with_copies(report: RepairReport, frame: pd.DataFrame, origin: Origin) -> RepairReport:
    return replace(report, copies=suspected_copies(frame, origin))


def _union(frames: dict[str, pd.DataFrame]) -> pd.DatetimeIndex:
    union = reduce(pd.Index.union, (f.index for f in frames.values()))
    return pd.DatetimeIndex(union, name="timestamp")


def _on_common_clock(
    frames: dict[str, pd.DataFrame],
    name: str,
    freq: str | pd.Timedelta | None,
    fill_missing: bool,
    reports: dict[str, RepairReport],
    skipped: dict[str, str],
) -> Panel:
    union = _union(frames)
    step = pd.Timedelta(freq) if freq is not None else infer_freq(union)
    gapped = []
    for asset, frame in frames.items():
        gaps = find_gaps(frame, step)
        if len(gaps):
            if fill_missing:
                frames[asset] = fill_gaps(frame, step)
            else:
                gapped.append(f"{asset} ({len(gaps)} gap(s), {int(gaps['missing_bars'].sum())} missing bar(s))")
    if gapped:
        warnings.warn(
            f"{name}: {len(gapped)} asset(s) have gaps inside their listed life: {', '.join(gapped[:5])}"
            f"{', ...' if len(gapped) > 5 else ''}. Pass fill_missing=True to carry the last close forward "
            "(never before listing or after delisting).",
            GapWarning,
            stacklevel=3,
        )
    if fill_missing:
        union = _union(frames)
    return Panel(frames, union, name, freq_str(step), reports, skipped)


__all__ = ["Panel", "load_panel"]
