"""Perpetual-futures margin, liquidation and funding over a book of any number of positions.

Everything here works on plain values: ``cash`` (quote currency), signed ``positions`` (units of
each asset, negative = short) and their ``prices``, so the same rules serve a one-asset ledger and a
multi-asset book. Environments call these functions around the fills of
:class:`~sb3_crypto.envs.ledger.Ledger`; nothing here trades by itself.

**Margin** (:class:`MarginRules`), a cross-margin account:

* equity = ``cash + sum(position * price)``; gross notional = ``sum(|position| * price)``;
* **initial margin** caps orders that add risk: after the fill (fee and slippage paid), gross notional
  at the reference price may not exceed ``equity / initial_margin`` (effective leverage <=
  ``1 / initial_margin``). Orders that only reduce a position are never capped;
* **maintenance margin**: the account is liquidated when equity falls below
  ``maintenance_margin * gross notional``.

**Liquidation inside a bar** (:meth:`MarginRules.liquidation`): the worst case of the bar being
stepped through is checked, each position marked at its adverse extreme (the low for a long, the
high for a short), never at a later bar. Prices are moved from the bar's open towards those
extremes together, ``price(x) = open + x * (extreme - open)`` for ``x`` in [0, 1]; equity minus the
maintenance requirement falls linearly in ``x``, so the first ``x`` where it turns negative gives the
liquidation prices (for one position: the usual liquidation price). When the requirement is
already broken at the open (the bar gapped through the liquidation price), the fill is at the open:
never at a better price than the market gave.

The liquidation is a market order (slippage and taker fee like any fill) plus a **liquidation fee**
(``liquidation_fee`` times the liquidated notional), taken from what is left of equity and never
more (:meth:`MarginRules.liquidation_fee_due`), as exchanges take it from the remaining margin.
``maintenance_margin`` must exceed the fill's own costs (``slippage + fee * (1 + slippage)``), so a
liquidation at the liquidation price never leaves negative equity; only a gap can.

**Funding from data** (:class:`FundingSeries`): rates at their own timestamps (e.g. every 8 h).
At an event at time ``tau`` every position pays ``position * price(tau) * rate`` (a positive rate: longs
pay, shorts receive), on the position held just before ``tau`` (a fill at exactly ``tau`` comes after the
event). Bar ``k`` runs from its timestamp ``T[k]`` (its open time) to ``T[k + 1]``; it owns the events
with ``T[k] < tau <= T[k + 1]``, charged on the position held through bar ``k``. ``price(tau)`` is the
last price known at ``tau``: the bar's close when ``tau`` is at or after the bar's end
(``T[k] + bar duration``), else the bar's open - never a later price.

**Order within a step** (as ``CryptoTrading-v0`` and ``CryptoPortfolio-v0`` do it): the book
held over the gap is checked at the new bar's open first (a breach liquidates at the open and the
order is not sent); the order fills at the open, cut by :meth:`MarginRules.cap_units`; the bar's
funding is paid; then the bar's adverse extremes are checked (funding first is the conservative
choice: the extreme may come after the funding time).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.formats import DataError, Origin, RawTable, parse_times, read_table, resolve_paths, to_float
from sb3_crypto.data.loaders import find_asset_column

#: Maintenance margin and liquidation fee used when margin applies and they are not given
#: (0.5 % of notional each, the order of an exchange's lowest tier; set them for your venue).
DEFAULT_MAINTENANCE_MARGIN = 0.005
DEFAULT_LIQUIDATION_FEE = 0.005
#: Accepted names (case, spaces and underscores ignored) of a funding file's columns.
FUNDING_TIME_COLUMNS = ("timestamp", "time", "datetime", "date", "fundingtime", "calctime", "ts")
FUNDING_RATE_COLUMNS = ("fundingrate", "rate", "funding", "lastfundingrate")
#: Largest absolute funding rate per event a series may hold (a fraction: 0.0001 = 0.01 %).
MAX_FUNDING_RATE = 0.5


class FundingCoverageWarning(UserWarning):
    """A funding series covers only part of the bars: bars outside it are charged no funding."""


# ---------------------------------------------------------------------------------------------- valuation
def equity(cash: float, positions: Sequence[float], prices: Sequence[float]) -> float:
    """``cash + sum(position * price)``."""
    total = cash
    for units, price in zip(positions, prices):
        total += units * price
    return total


def gross_notional(positions: Sequence[float], prices: Sequence[float]) -> float:
    """``sum(|position| * price)``."""
    total = 0.0
    for units, price in zip(positions, prices):
        total += abs(units) * price
    return total


class Liquidation(NamedTuple):
    """Where a liquidation fills (reference prices, before slippage), found by :meth:`MarginRules.liquidation`."""

    prices: tuple[float, ...]  #: one reference price per position (the liquidation price or the open)
    gapped: bool  #: True when maintenance was already broken at the open: filled at the open
    fraction: float  #: how far from the open towards the adverse extremes (0 when gapped)


@dataclass(frozen=True)
class MarginRules:
    """Initial and maintenance margin and the liquidation fee of a cross-margin account (fractions).

    :param initial_margin: in (0, 1]: orders that add risk keep gross notional <= equity / initial_margin.
    :param maintenance_margin: in (0, initial_margin): liquidation when equity < maintenance_margin x gross notional.
    :param liquidation_fee: in [0, 1): charged on the liquidated notional, at most what is left of equity.
    """

    initial_margin: float
    maintenance_margin: float
    liquidation_fee: float = 0.0

    def __post_init__(self) -> None:
        keywords.real(
            "initial_margin", self.initial_margin, low=0.0, low_inclusive=False, high=1.0, high_inclusive=True
        )
        keywords.real(
            "maintenance_margin", self.maintenance_margin, low=0.0, low_inclusive=False, high=self.initial_margin
        )
        keywords.rate("liquidation_fee", self.liquidation_fee)

    @classmethod
    def from_keywords(
        cls,
        *,
        leverage: float,
        initial_margin: Any = None,
        maintenance_margin: Any = None,
        liquidation_fee: Any = None,
        fee: float = 0.0,
        slippage: float = 0.0,
        shorting: bool = False,
        leverage_name: str = "leverage",
    ) -> MarginRules | None:
        """The rules an env's keywords ask for, or ``None`` (no margin: the ledger's old behaviour).

        Margin applies when ``leverage > 1``, ``shorting`` is true (an env whose book may short, which
        can lose more than its equity; the trading env leaves it false) or any of the three margin
        keywords is given. Then ``initial_margin`` defaults to ``1 / leverage`` (the leverage the
        actions reach; ``leverage_name`` is the env's keyword for it, for the errors),
        ``maintenance_margin`` to :data:`DEFAULT_MAINTENANCE_MARGIN` and ``liquidation_fee`` to
        :data:`DEFAULT_LIQUIDATION_FEE`. Every value is checked by name; ``maintenance_margin`` must be
        below ``initial_margin`` and above a liquidation fill's own costs (``slippage + fee * (1 + slippage)``).
        """
        given = [not keywords.is_none(v) for v in (initial_margin, maintenance_margin, liquidation_fee)]
        if leverage <= 1.0 and not shorting and not any(given):
            return None
        im = keywords.positive("initial_margin", initial_margin, high=1.0) if given[0] else min(1.0, 1.0 / leverage)
        mm = (
            keywords.real("maintenance_margin", maintenance_margin, low=0.0, low_inclusive=False, high=1.0)
            if given[1]
            else DEFAULT_MAINTENANCE_MARGIN
        )
        lf = keywords.rate("liquidation_fee", liquidation_fee) if given[2] else DEFAULT_LIQUIDATION_FEE
        where = "" if given[1] else f" (the default {DEFAULT_MAINTENANCE_MARGIN})"
        if mm >= im:
            default = f" (1 / {leverage_name}, {leverage_name}={leverage!r})"
            raise ValueError(
                f"maintenance_margin{where} must be below initial_margin, got maintenance_margin={mm!r} and "
                f"initial_margin={im!r}" + ("" if given[0] else default)
            )
        costs = slippage + fee * (1.0 + slippage)
        if mm <= costs:
            raise ValueError(
                f"maintenance_margin{where} must exceed a liquidation fill's own costs, slippage + fee x "
                f"(1 + slippage) = {costs:.6g} (fee={fee!r}, slippage={slippage!r}), so that a liquidation at the "
                f"liquidation price never leaves negative equity; got maintenance_margin={mm!r}"
            )
        return cls(im, mm, lf)

    # ------------------------------------------------------------------ requirements
    def requirement(self, positions: Sequence[float], prices: Sequence[float]) -> float:
        """Maintenance requirement: ``maintenance_margin * gross notional``."""
        return self.maintenance_margin * gross_notional(positions, prices)

    def breached(self, cash: float, positions: Sequence[float], prices: Sequence[float]) -> bool:
        """Whether equity is below the maintenance requirement at ``prices``."""
        return equity(cash, positions, prices) < self.requirement(positions, prices)

    def liquidation_price(self, cash: float, position: float) -> float:
        """The price at which a single ``position`` with ``cash`` reaches maintenance (``nan`` if none:
        flat, or a long that cannot fall below maintenance at any positive price)."""
        mm = self.maintenance_margin
        if position > 0:
            price = -cash / (position * (1.0 - mm))
            return price if price > 0 else math.nan
        if position < 0:
            return cash / (-position * (1.0 + mm)) if cash > 0 else 0.0
        return math.nan

    # ------------------------------------------------------------------ orders
    def cap_units(
        self,
        cash: float,
        positions: Sequence[float],
        prices: Sequence[float],
        index: int,
        units: float,
        *,
        slippage: float,
        fee: float,
    ) -> float:
        """``units`` of asset ``index`` (signed, at reference ``prices[index]``) cut so that after the
        fill - slippage and fee paid - gross notional <= equity / initial_margin.

        A pure reduction (towards flat, not past it) is returned unchanged; an order that flips the
        position always keeps at least the part that closes it. For several assets call it once per
        order in the order they are filled (reductions first frees margin for the rest).
        """
        if not units:
            return units
        held = positions[index]
        price = prices[index]
        opposite = held != 0.0 and (held > 0) != (units > 0)
        size = abs(units)
        if opposite and size <= abs(held):
            return units  # a reduction: never capped
        total = equity(cash, positions, prices)
        others = gross_notional(positions, prices) - abs(held) * price
        cost = slippage + fee * (1.0 + slippage) if units > 0 else slippage + fee * (1.0 - slippage)
        im = self.initial_margin
        # equity after = total - size * price * cost; notional after = others + |held +- size| * price
        if opposite:  # |held + units| = size - |held|
            largest = (total - im * others + im * price * abs(held)) / (price * (cost + im))
            largest = max(largest, abs(held))  # closing is always allowed
        else:  # |held + units| = |held| + size
            largest = (total - im * others - im * price * abs(held)) / (price * (cost + im))
            largest = max(largest, 0.0)
        if size <= largest:
            return units
        return math.copysign(largest, units)

    # ------------------------------------------------------------------ liquidation
    def liquidation(
        self,
        cash: float,
        positions: Sequence[float],
        opens: Sequence[float],
        lows: Sequence[float],
        highs: Sequence[float],
    ) -> Liquidation | None:
        """Whether the bar (``opens``, ``lows``, ``highs`` of each asset) liquidates the book, and at what
        reference prices: ``None`` when equity stays at or above maintenance even with every position at
        its adverse extreme; the opens when maintenance is already broken there (a gap); otherwise the
        prices on the way from the opens to the extremes where equity meets maintenance.

        Only this bar's prices are read; call it with the bar being stepped through.
        """
        mm = self.maintenance_margin
        at_open = cash  # equity - requirement at the opens
        slope = 0.0  # its change from the opens to the adverse extremes (<= 0)
        for units, o, low, high in zip(positions, opens, lows, highs):
            if units > 0:
                c = units * (1.0 - mm)
                at_open += c * o
                slope += c * (low - o)
            elif units < 0:
                c = units * (1.0 + mm)
                at_open += c * o
                slope += c * (high - o)
        if at_open < 0.0:
            return Liquidation(tuple(float(o) for o in opens), True, 0.0)
        if at_open + slope >= 0.0:
            return None
        x = -at_open / slope
        prices = []
        for units, o, low, high in zip(positions, opens, lows, highs):
            extreme = low if units > 0 else high if units < 0 else o
            prices.append(float(o + x * (extreme - o)))
        return Liquidation(tuple(prices), False, x)

    def liquidation_of_one(
        self, cash: float, position: float, open_: float, low: float, high: float
    ) -> tuple[float, bool] | None:
        """:meth:`liquidation` for a single position, in closed form (the env's step path): ``None``,
        or the reference price to close at and whether the bar gapped through the liquidation price."""
        mm = self.maintenance_margin
        if position > 0:
            c = position * (1.0 - mm)
            extreme = low
        elif position < 0:
            c = position * (1.0 + mm)
            extreme = high
        else:
            return None
        if cash + c * open_ < 0.0:
            return open_, True
        if cash + c * extreme >= 0.0:
            return None
        return -cash / c, False  # the liquidation price

    def liquidation_fee_due(self, notional: float, equity_after: float) -> float:
        """The liquidation fee on ``notional``, at most ``equity_after`` (what the closing fills left;
        nothing when that is not positive)."""
        fee = self.liquidation_fee * notional
        if equity_after <= 0.0:
            return 0.0
        return fee if fee < equity_after else equity_after


# ---------------------------------------------------------------------------------------------- funding
@dataclass(frozen=True)
class BarFunding:
    """A :class:`FundingSeries` laid on bars: the summed rates bar ``k`` charges at its open price and
    at its close price (see the module docstring), and what fell outside the bars."""

    at_open: np.ndarray  #: float64 per bar: rates of events strictly inside the bar
    at_close: np.ndarray  #: float64 per bar: rates of events at or after the bar's end
    events: int  #: events that fall on the bars
    before: int  #: events at or before the first bar's open time (never charged: nothing is held)
    after: int  #: events after the last bar's end (never charged)

    def per_unit(self, opens: np.ndarray, closes: np.ndarray) -> list[float]:
        """Funding paid per unit held through each bar (``open * at_open + close * at_close``)."""
        return (np.asarray(opens) * self.at_open + np.asarray(closes) * self.at_close).tolist()


@dataclass(frozen=True)
class FundingSeries:
    """Funding rates at their own times (UTC), strictly increasing; see :meth:`load`."""

    times: np.ndarray  #: int64 nanoseconds since the epoch, UTC
    rates: np.ndarray  #: float64 fractions per event (0.0001 = 0.01 %), signed
    source: str = "funding"

    @classmethod
    def load(cls, value: Any, name: str = "funding") -> FundingSeries:
        """A funding series from a file path (CSV / TSV / Parquet, gzip or zip of one; a time column
        and a rate column, see :data:`FUNDING_TIME_COLUMNS` and :data:`FUNDING_RATE_COLUMNS`), a
        DataFrame (the same columns, or a DatetimeIndex and a rate column) or a Series of rates with a
        DatetimeIndex. Times are epoch seconds / milliseconds or date texts (UTC unless they say).

        Errors name ``name`` and the file line (or frame row) and column: a missing or unparseable
        time or rate, a rate that is not finite or beyond +-:data:`MAX_FUNDING_RATE`, times out of
        order or repeated (fix the file: rows are never reordered silently), an empty series.
        """
        if isinstance(value, FundingSeries):
            return value
        if isinstance(value, pd.Series):
            frame = value.rename("funding_rate").to_frame()
            table = RawTable(frame, Origin.positions(len(frame)), "frame")
            source = f"{name} Series"
        else:
            table, source = _funding_table(value, name, "a DataFrame or a Series of rates")
        return cls._from_table(table, source)

    @classmethod
    def _from_table(cls, table: RawTable, source: str) -> FundingSeries:
        frame = table.frame
        if isinstance(frame.index, pd.DatetimeIndex):
            frame = frame.rename_axis("timestamp").reset_index()
        columns = list(frame.columns)
        time_column = _column(columns, FUNDING_TIME_COLUMNS)
        rate_column = _column(columns, FUNDING_RATE_COLUMNS)
        if time_column is None or rate_column is None:
            wanted = "time" if time_column is None else "rate"
            names = FUNDING_TIME_COLUMNS if time_column is None else FUNDING_RATE_COLUMNS
            raise DataError(
                f"{source}: no funding {wanted} column (looked for {', '.join(names)}, case and underscores "
                f"ignored); columns are {columns}"
            )
        if not len(frame):
            raise DataError(f"{source}: holds no funding events")

        def where(i: int) -> str:
            return table.origin.where(int(i))

        times = parse_times(frame[time_column], str(time_column), where, source).as_unit("ns").asi8
        raw = frame[rate_column]
        rates = to_float(raw, table.decimal)
        bad = np.flatnonzero(~np.isfinite(rates))
        if bad.size:
            i = int(bad[0])
            shown = raw.iloc[i]
            what = "a missing" if pd.isna(shown) or str(shown).strip() == "" else "a non-numeric or non-finite"
            raise DataError(f"{source}: column '{rate_column}' has {what} rate {shown!r} at {where(i)}")
        big = np.flatnonzero(np.abs(rates) > MAX_FUNDING_RATE)
        if big.size:
            i = int(big[0])
            raise DataError(
                f"{source}: column '{rate_column}' has rate {float(rates[i])!r} at {where(i)}; a funding rate is a "
                f"fraction per event (0.0001 = 0.01 %) within +-{MAX_FUNDING_RATE}"
            )
        steps = np.diff(times)
        wrong = np.flatnonzero(steps <= 0)
        if wrong.size:
            i = int(wrong[0]) + 1
            stamp = pd.Timestamp(times[i], tz="UTC").isoformat()
            if steps[i - 1] == 0:
                problem = f"repeats the time {stamp} of {where(i - 1)}"
            else:
                before = pd.Timestamp(times[i - 1], tz="UTC").isoformat()
                problem = f"({stamp}) is earlier than {where(i - 1)} ({before})"
            raise DataError(
                f"{source}: column '{time_column}': {where(i)} {problem}; funding events must be in strictly "
                "increasing time order, one rate per time (sort the file and drop the repeated rows)"
            )
        return cls(times.astype(np.int64), rates.astype(np.float64), source)

    def on_bars(self, bar_times: Any, bar_duration: pd.Timedelta | None = None) -> BarFunding:
        """Lay the events on bars with open times ``bar_times`` (ascending): see :class:`BarFunding`.

        ``bar_duration`` is the length of one bar (default: the smallest spacing of ``bar_times``); the
        last bar ends ``bar_duration`` after its open. Events at or before the first bar's open, or
        after the last bar's end, are dropped and counted. A series with no event on the bars raises
        :class:`DataError`; one that leaves part of the bars uncovered warns
        (:class:`FundingCoverageWarning`): those bars are charged no funding.
        """
        starts = pd.DatetimeIndex(bar_times).as_unit("ns").asi8 if len(bar_times) else np.zeros(0, np.int64)
        n = len(starts)
        if n == 0:
            raise DataError(f"{self.source}: there are no bars to charge funding on")
        if bar_duration is None:
            spacing = np.diff(starts)
            duration = int(spacing[spacing > 0].min()) if (spacing > 0).any() else 0
        else:
            duration = int(pd.Timedelta(bar_duration).value)
        ends = np.empty(n, dtype=np.int64)
        ends[:-1] = starts[1:]
        ends[-1] = starts[-1] + duration
        times = self.times
        bar = np.searchsorted(starts, times, side="left") - 1
        before = bar < 0
        after = (bar == n - 1) & (times > ends[-1])
        keep = ~(before | after)
        at_open = np.zeros(n)
        at_close = np.zeros(n)
        kept = bar[keep]
        on_close = times[keep] >= starts[kept] + duration
        np.add.at(at_close, kept[on_close], self.rates[keep][on_close])
        np.add.at(at_open, kept[~on_close], self.rates[keep][~on_close])
        events = int(keep.sum())
        span = f"{_iso(starts[0])} to {_iso(ends[-1])}"
        if events == 0:
            raise DataError(
                f"{self.source}: none of its {len(times)} funding times ({_iso(times[0])} to {_iso(times[-1])}) falls "
                f"on the bars ({span}); check the file's asset and time zone"
            )
        gaps = np.diff(times)
        interval = int(np.median(gaps)) if len(gaps) else duration
        first, last = int(times[keep][0]), int(times[keep][-1])
        if first - starts[0] > max(interval, duration) or ends[-1] - last > max(interval, duration):
            warnings.warn(
                f"{self.source}: funding events cover {_iso(first)} to {_iso(last)} but the bars run {span}; "
                "bars outside the funding events are charged no funding",
                FundingCoverageWarning,
                stacklevel=3,
            )
        return BarFunding(at_open, at_close, events, int(before.sum()), int(after.sum()))


def funding_by_asset(value: Any, assets: Sequence[str], name: str = "funding") -> dict[str, FundingSeries]:
    """The funding series of a book of several ``assets``, by asset (the portfolio env's ``funding``).

    ``value`` is a dict ``{asset: file path, DataFrame or Series}`` (each read by
    :meth:`FundingSeries.load`; every key must be one of ``assets``), or one long file or DataFrame with
    an asset column (``symbol``, ``asset``, ``ticker``, ``pair`` or ``coin``) beside the time and rate
    columns; its rows of other assets are ignored. Errors name the asset, the file line (frame row) and
    the column. Assets without rows in a long file are left out of the result, with a
    :class:`FundingCoverageWarning` (the caller charges them its constant fallback); a dict leaves out
    the assets it does not name, silently (that is a choice).
    """
    assets = [str(asset) for asset in assets]
    if isinstance(value, Mapping):
        unknown = [key for key in value if str(key) not in assets]
        if unknown:
            raise DataError(f"{name}: {unknown[0]!r} is not an asset of this env; the assets are {', '.join(assets)}")
        given = {str(key): item for key, item in value.items()}
        return {asset: FundingSeries.load(given[asset], f"{name}[{asset!r}]") for asset in assets if asset in given}
    if isinstance(value, (pd.Series, FundingSeries)):
        raise TypeError(
            f"{name}: a single series of rates is one asset's; a portfolio needs a dict {{asset: path, DataFrame or "
            "Series}} or one long file or DataFrame with an asset column"
        )
    what = "a dict {asset: path, DataFrame or Series} or a long file or DataFrame with an asset column"
    table, source = _funding_table(value, name, what)
    column = find_asset_column(table.frame)
    if column is None:
        raise DataError(
            f"{source}: no asset column (symbol, asset, ticker, pair or coin) naming each row's asset; columns are "
            f"{list(table.frame.columns)}; give a long file with one, or a dict {{asset: path}} of one file per asset"
        )
    raw = table.frame[column]
    names = raw.astype(str).str.strip()
    blank = np.flatnonzero(raw.isna().to_numpy() | (names == "").to_numpy())
    if blank.size:
        raise DataError(f"{source}: column '{column}' has no asset name at {table.origin.where(int(blank[0]))}")
    out = {}
    for asset in assets:
        rows = np.flatnonzero((names == asset).to_numpy())
        if rows.size:
            out[asset] = FundingSeries._from_table(table.take(rows), f"{source} [{asset}]")
    if not out:
        found = ", ".join(map(repr, pd.unique(names)[:8]))
        raise DataError(f"{source}: column '{column}' names none of the assets ({', '.join(assets)}); it names {found}")
    absent = [asset for asset in assets if asset not in out]
    if absent:
        warnings.warn(
            f"{source}: no funding rows for {', '.join(absent)}; those assets are charged the constant funding_rate",
            FundingCoverageWarning,
            stacklevel=2,
        )
    return out


def _funding_table(value: Any, name: str, what: str) -> tuple[RawTable, str]:
    """The raw table of a funding file path or DataFrame (a DatetimeIndex becomes a ``timestamp``
    column) and the name its errors start with; ``what`` lists the other accepted values."""
    if isinstance(value, pd.DataFrame):
        frame = value.rename_axis("timestamp").reset_index() if isinstance(value.index, pd.DatetimeIndex) else value
        return RawTable(frame, Origin.positions(len(frame)), "frame"), f"{name} DataFrame"
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{name} must be a funding file path, {what}, got {value!r}")
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a funding file path, {what}, got {keywords.describe(value)}")
    try:
        paths, _ = resolve_paths(value)
        if len(paths) != 1:
            raise DataError(f"{value}: {len(paths)} files match; give one funding file")
        table = read_table(paths[0])
    except (DataError, OSError, ValueError) as error:
        raise DataError(f"{name}: {error}") from None
    return table, f"{name} file {paths[0]}"


def _column(columns: list, names: tuple[str, ...]) -> Any:
    keys = {str(c).lower().replace("_", "").replace(" ", ""): c for c in columns}
    for name in names:
        if name in keys:
            return keys[name]
    return None


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()
