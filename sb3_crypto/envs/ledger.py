"""The one accounting core every environment trades through.

Conventions (the same in every environment):

* A decision is taken on the **close of bar t** and filled at the **open of bar t + 1**.
* The fill price moves against the trader by ``slippage`` (a fraction): buys pay
  ``open * (1 + slippage)``, sells receive ``open * (1 - slippage)``.
* A taker ``fee_rate`` (a fraction of traded notional) is paid in cash on every fill.
* ``position`` is signed (units of the base asset, negative = short); ``cash`` is in quote currency
  and may exceed the starting cash after a short sale.
* Equity (mark-to-market) = ``cash + position * price``.
* Realised PnL is booked when a position is reduced, gross of fees; fees are tracked separately
  (``fees_paid``) and are already out of ``cash``.
* ``funding_rate`` is a per-bar cost on the absolute notional held (perpetual funding or borrow).

**Several assets** (``n_assets > 1``, the portfolio env): one cash account and, per asset, a signed
position and entry price. ``trade(units, reference, bar, asset=k)`` fills asset ``k`` by the same
code and conventions, at that asset's ``fee_rate`` and ``slippage`` (a number for every asset or
one per asset); every fill records its ``asset``. ``equity(prices)`` then takes one price per
asset, and :meth:`Ledger.rebalance_weights` trades the book to target weights (sells before buys).
Asset 0's state is ``position`` / ``entry_price`` / ``fee_rate`` / ``slippage``, exactly the
single-asset API (a one-asset ledger is the special case, with the same numbers and the same speed);
the other assets' state is read through ``positions``, ``entry_prices``, ``fee_rates`` and
``slippages``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple


class Fill(NamedTuple):
    """One executed trade."""

    bar: int  #: row index of the bar whose open filled the order
    side: int  #: +1 buy, -1 sell
    units: float  #: absolute units of the base asset traded
    price: float  #: fill price including slippage
    fee: float  #: fee paid in quote currency
    realized_pnl: float  #: PnL realised by this fill (gross of fees)
    asset: int = 0  #: index of the asset traded (0 for a single-asset ledger)


class Ledger:
    """Cash, signed position and the bookkeeping of fills, fees and funding.

    :param initial_cash: starting cash (quote currency).
    :param fee_rate: taker fee as a fraction of notional (0.001 = 0.1 %).
    :param slippage: adverse fill-price move as a fraction (0.0005 = 0.05 %).
    :param allow_short: whether the position may go below zero.
    :param max_leverage: cap on ``|position| * price / equity`` for sized orders (1 = no borrowing).
    :param funding_rate: per-bar cost on absolute notional (fraction), charged by :meth:`charge_funding`.
    :param initial_position: starting units of the base asset (e.g. S4 starts with one coin).
    :param n_assets: number of assets the book holds (1: the single-asset ledger every env but the
        portfolio uses). ``fee_rate`` and ``slippage`` may then be sequences of one rate per asset.
    """

    __slots__ = (
        "_fills",
        "_rest_entries",
        "_rest_fee_rates",
        "_rest_positions",
        "_rest_slippages",
        "allow_short",
        "cash",
        "entry_price",
        "fee_rate",
        "fees_paid",
        "funding_paid",
        "funding_rate",
        "initial_cash",
        "initial_position",
        "max_leverage",
        "n_assets",
        "n_trades",
        "position",
        "realized_pnl",
        "slippage",
    )

    def __init__(
        self,
        initial_cash: float = 10_000.0,
        fee_rate: float | Sequence[float] = 0.001,
        slippage: float | Sequence[float] = 0.0,
        *,
        allow_short: bool = True,
        max_leverage: float = 1.0,
        funding_rate: float = 0.0,
        initial_position: float = 0.0,
        n_assets: int = 1,
    ) -> None:
        if isinstance(n_assets, bool) or not isinstance(n_assets, int) or n_assets < 1:
            raise ValueError(f"Ledger: n_assets must be an integer >= 1, got {n_assets!r}")
        fee_rates = _per_asset("fee_rate", fee_rate, n_assets)
        slippages = _per_asset("slippage", slippage, n_assets)
        for name, values in (("fee_rate", fee_rates), ("slippage", slippages), ("funding_rate", (funding_rate,))):
            for value in values:
                if not (math.isfinite(value) and 0.0 <= value < 1.0):
                    raise ValueError(f"Ledger: {name} must be a fraction in [0, 1), got {value}")
        if n_assets > 1 and initial_position:
            raise ValueError("Ledger: initial_position is for a single-asset ledger (n_assets=1)")
        if not (math.isfinite(initial_cash) and initial_cash >= 0):
            raise ValueError(f"Ledger: initial_cash must be finite and >= 0, got {initial_cash}")
        if not (math.isfinite(max_leverage) and max_leverage > 0):
            raise ValueError(f"Ledger: max_leverage must be > 0, got {max_leverage}")
        if initial_position < 0 and not allow_short:
            raise ValueError("Ledger: a negative initial_position needs allow_short=True")
        self.initial_cash = float(initial_cash)
        self.initial_position = float(initial_position)
        self.n_assets = n_assets
        self.fee_rate = float(fee_rates[0])
        self.slippage = float(slippages[0])
        self._rest_fee_rates = [float(rate) for rate in fee_rates[1:]]
        self._rest_slippages = [float(rate) for rate in slippages[1:]]
        self.allow_short = allow_short
        self.max_leverage = float(max_leverage)
        self.funding_rate = float(funding_rate)
        self.reset()

    def reset(self, entry_price: float = 0.0) -> None:
        """Back to the starting cash and position (``entry_price`` values an initial position)."""
        self.cash = self.initial_cash
        self.position = self.initial_position
        self.entry_price = entry_price if self.initial_position else 0.0
        self._rest_positions = [0.0] * (self.n_assets - 1)
        self._rest_entries = [0.0] * (self.n_assets - 1)
        self.realized_pnl = 0.0
        self.fees_paid = 0.0
        self.funding_paid = 0.0
        self._fills: list[tuple[int, int, float, float, float, float, int]] = []
        self.n_trades = 0  #: number of fills so far (a plain counter: read on every env step)

    # ------------------------------------------------------------------ valuation
    def equity(self, price: float | Sequence[float]) -> float:
        """Mark-to-market value at ``price`` (one price per asset, in asset order, when ``n_assets > 1``)."""
        if self._rest_positions:
            prices = self._prices(price)
            return self.cash + sum(q * p for q, p in zip(self.positions, prices, strict=True))
        return self.cash + self.position * price

    def unrealized_pnl(self, price: float, asset: int = 0) -> float:
        """Open PnL of ``asset``'s position at ``price`` (gross of the fee to close it)."""
        position, entry = self._book(asset)
        return position * (price - entry) if position else 0.0

    def exposure(self, price: float) -> float:
        """Signed position value as a fraction of equity (0 when equity is not positive); single asset."""
        self._single("exposure")
        equity = self.equity(price)
        return self.position * price / equity if equity > 0 else 0.0

    def position_return(self, price: float, asset: int = 0) -> float:
        """Return of ``asset``'s open position since entry (signed: a losing short is negative)."""
        position, entry = self._book(asset)
        if not position or entry <= 0:
            return 0.0
        direction = 1.0 if position > 0 else -1.0
        return direction * (price / entry - 1.0)

    @property
    def positions(self) -> list[float]:
        """Signed units held of every asset (a copy; asset 0's is :attr:`position`)."""
        return [self.position, *self._rest_positions]

    @property
    def entry_prices(self) -> list[float]:
        """Average entry price of every asset's open position (0 when flat)."""
        return [self.entry_price, *self._rest_entries]

    @property
    def fee_rates(self) -> list[float]:
        """Fee rate of every asset (asset 0's is :attr:`fee_rate`)."""
        return [self.fee_rate, *self._rest_fee_rates]

    @property
    def slippages(self) -> list[float]:
        """Slippage of every asset (asset 0's is :attr:`slippage`)."""
        return [self.slippage, *self._rest_slippages]

    def values(self, prices: Sequence[float]) -> list[float]:
        """Signed value of every asset's position at ``prices``."""
        prices = self._prices(prices)
        return [q * p for q, p in zip(self.positions, prices, strict=True)]

    @property
    def fills(self) -> list[Fill]:
        """Every fill so far, oldest first."""
        return [Fill._make(fill) for fill in self._fills]

    @property
    def last_fill(self) -> Fill | None:
        """The most recent fill, if any."""
        return Fill._make(self._fills[-1]) if self._fills else None

    def fees_by_asset(self, since: int = 0) -> list[float]:
        """Fees paid per asset by the fills from number ``since`` on (0: all of them)."""
        out = [0.0] * self.n_assets
        for fill in self._fills[since:]:
            out[fill[6]] += fill[4]
        return out

    def realized_pnl_by_asset(self, since: int = 0) -> list[float]:
        """Realised PnL (gross of fees) per asset by the fills from number ``since`` on."""
        out = [0.0] * self.n_assets
        for fill in self._fills[since:]:
            out[fill[6]] += fill[5]
        return out

    def _book(self, asset: int) -> tuple[float, float]:
        """``(position, entry_price)`` of ``asset``."""
        if asset == 0:
            return self.position, self.entry_price
        self._asset(asset)
        return self._rest_positions[asset - 1], self._rest_entries[asset - 1]

    def _asset(self, asset: int) -> None:
        if not (isinstance(asset, int) and 0 <= asset < self.n_assets):
            raise ValueError(f"Ledger: asset must be an index in [0, {self.n_assets}), got {asset!r}")

    def _prices(self, prices: float | Sequence[float]) -> Sequence[float]:
        try:
            count = len(prices)  # type: ignore[arg-type]
        except TypeError:
            count = None
        if count != self.n_assets:
            raise ValueError(f"Ledger: {self.n_assets} assets need {self.n_assets} prices, got {prices!r}")
        return prices  # type: ignore[return-value]

    def _single(self, what: str) -> None:
        if self._rest_positions:
            raise ValueError(
                f"Ledger.{what} sizes one asset against its own equity; with {self.n_assets} assets use "
                "rebalance_weights or trade(..., asset=k)"
            )

    # ------------------------------------------------------------------ trading
    def fill_price(self, reference: float, side: int, asset: int = 0) -> float:
        """Price a market order of ``side`` (+1 buy / -1 sell) on ``asset`` gets at ``reference``."""
        slippage = self.slippage if asset == 0 else self.slippages[asset]
        return reference * (1.0 + side * slippage)

    def trade(self, units: float, reference: float, bar: int = -1, asset: int = 0) -> bool:
        """Buy (``units > 0``) or sell (``units < 0``) ``asset`` at ``reference`` plus slippage, paying the fee.

        With ``allow_short=False`` a sell is cut to the units held. Returns whether anything was
        traded; the fill is then :attr:`last_fill`.
        """
        if units - units != 0.0:  # not math.isfinite(units), without the call: inf - inf and nan - nan are nan
            raise ValueError(f"Ledger.trade: units must be finite, got {units}")
        if asset == 0:
            position = self.position
            entry = self.entry_price
            slippage = self.slippage
            fee_rate = self.fee_rate
        else:
            self._asset(asset)
            position = self._rest_positions[asset - 1]
            entry = self._rest_entries[asset - 1]
            slippage = self._rest_slippages[asset - 1]
            fee_rate = self._rest_fee_rates[asset - 1]
        if not self.allow_short and position + units < 0:
            units = -position
        if units == 0.0:
            return False
        if units > 0:
            side = 1
            size = units
            price = reference * (1.0 + slippage)
        else:
            side = -1
            size = -units
            price = reference * (1.0 - slippage)
        fee = size * price * fee_rate
        realized = 0.0
        new_position = position + units
        if position and (position > 0) != (units > 0):
            closed = size if size < abs(position) else abs(position)
            realized = closed * (price - entry) if position > 0 else closed * (entry - price)
            held = abs(position)
            if abs(new_position) < 1e-12 * (held if held > 1.0 else 1.0):  # max(1.0, held), without the call
                new_position = 0.0
            if new_position == 0.0:
                entry = 0.0
            elif (new_position > 0) != (position > 0):
                entry = price  # flipped: the remainder was opened at this fill
        else:
            entry = (abs(position) * entry + size * price) / abs(new_position)
        if asset == 0:
            self.position = new_position
            self.entry_price = entry
        else:
            self._rest_positions[asset - 1] = new_position
            self._rest_entries[asset - 1] = entry
        self.cash -= units * price + fee
        self.fees_paid += fee
        self.realized_pnl += realized
        self._fills.append((bar, side, size, price, fee, realized, asset))  # plain tuple: this is the hot path
        self.n_trades += 1
        return True

    def rebalance_weights(
        self,
        weights: Sequence[float],
        references: Sequence[float],
        bar: int = -1,
        trade: Sequence[bool] | None = None,
    ) -> int:
        """Trade the book towards ``weights`` (signed position value / equity, one per asset) at
        ``references`` (one price per asset, e.g. the next bar's opens); returns the number of fills.

        Target units are sized on the equity at ``references`` before trading. Only the assets with
        ``trade[k]`` true are traded (all by default); the others keep their units. Every sell is
        filled before any buy, so the cash the sells raise pays for the buys. Without shorting
        (``allow_short=False``: long-only, never borrowing) the buys are scaled down together so that
        they never spend more cash than there is, fees included: the portfolio then holds slightly
        more cash than the target (costs come out of it). With shorting the targets are filled as
        given (a gross exposure above 1 borrows cash; the caller caps it).
        """
        n = self.n_assets
        references = self._prices(references)
        if len(weights) != n or (trade is not None and len(trade) != n):
            raise ValueError(f"Ledger.rebalance_weights: {n} assets need {n} weights (and trade flags)")
        positions = self.positions
        equity = self.cash + sum(q * p for q, p in zip(positions, references, strict=True))
        slippages = self.slippages
        sells: list[tuple[int, float]] = []
        buys: list[tuple[int, float]] = []
        for k in range(n):
            if trade is not None and not trade[k]:
                continue
            reference = references[k]
            held = positions[k]
            desired = weights[k] * equity if equity > 0 else 0.0
            if desired > held * reference:
                units = desired / (reference * (1.0 + slippages[k])) - held
                if units > 0.0:
                    buys.append((k, units))
            elif desired < held * reference:
                units = desired / (reference * (1.0 - slippages[k])) - held
                if units < 0.0:
                    sells.append((k, units))
        fills = 0
        for k, units in sells:
            fills += self.trade(units, references[k], bar, k)
        if buys and not self.allow_short:
            fee_rates = self.fee_rates
            cost = sum(u * references[k] * (1.0 + slippages[k]) * (1.0 + fee_rates[k]) for k, u in buys)
            cash = self.cash if self.cash > 0 else 0.0
            if cost > cash:
                scale = cash / cost * (1.0 - 1e-12)  # a hair under: rounding never leaves cash below 0
                buys = [(k, u * scale) for k, u in buys]
        for k, units in buys:
            fills += self.trade(units, references[k], bar, k)
        return fills

    def units_for_exposure(self, target: float, reference: float) -> float:
        """Units to trade at ``reference`` so that the position is worth ``target`` times equity.

        ``target`` is clipped to ``[-max_leverage, max_leverage]`` (``[0, max_leverage]`` without
        shorting). Without leverage (``max_leverage <= 1``) a buy never spends more cash than there is,
        fee included.
        """
        self._single("units_for_exposure")
        cap = self.max_leverage
        low = -cap if self.allow_short else 0.0
        target = low if target < low else cap if target > cap else target
        position = self.position
        equity = self.cash + position * reference
        if equity <= 0:
            return -position  # nothing left to size against: only closing is possible
        desired = target * equity
        buying = desired > position * reference
        price = reference * (1.0 + self.slippage) if buying else reference * (1.0 - self.slippage)
        units = desired / price - position
        if buying and cap <= 1.0 and position >= 0:
            affordable = (self.cash if self.cash > 0 else 0.0) / (price * (1.0 + self.fee_rate))
            if units > affordable:
                units = affordable
        return units

    def rebalance(self, target: float, reference: float, bar: int = -1) -> bool:
        """Trade to ``target`` exposure at ``reference``: exactly ``units = units_for_exposure(target,
        reference)`` followed, when ``units`` is not 0, by ``trade(units, reference, bar)``, in one call.

        This is the trading env's step path (``benchmarks/bench_env_speed.py``): the two methods'
        bodies share their attribute reads here instead of paying two calls. The sizing and the fill
        below are those two methods line for line; ``tests/envs/test_ledger.py`` holds them equal
        over random ledgers and targets. Returns whether anything was traded. Single-asset ledgers
        only (asset 0 sized against ``cash + position * reference``); a portfolio uses
        :meth:`rebalance_weights`.
        """
        cap = self.max_leverage
        allow_short = self.allow_short
        low = -cap if allow_short else 0.0
        target = low if target < low else cap if target > cap else target
        position = self.position
        cash = self.cash
        equity = cash + position * reference
        slippage = self.slippage
        if equity <= 0:
            units = -position  # nothing left to size against: only closing is possible
        else:
            desired = target * equity
            buying = desired > position * reference
            price = reference * (1.0 + slippage) if buying else reference * (1.0 - slippage)
            units = desired / price - position
            if buying and cap <= 1.0 and position >= 0:
                affordable = (cash if cash > 0 else 0.0) / (price * (1.0 + self.fee_rate))
                if units > affordable:
                    units = affordable
        if not units:
            return False
        # trade(units, reference, bar):
        if units - units != 0.0:  # not math.isfinite(units), without the call: inf - inf and nan - nan are nan
            raise ValueError(f"Ledger.trade: units must be finite, got {units}")
        if not allow_short and position + units < 0:
            units = -position
        if units == 0.0:
            return False
        if units > 0:
            side = 1
            size = units
            price = reference * (1.0 + slippage)
        else:
            side = -1
            size = -units
            price = reference * (1.0 - slippage)
        fee = size * price * self.fee_rate
        realized = 0.0
        new_position = position + units
        if position and (position > 0) != (units > 0):
            closed = size if size < abs(position) else abs(position)
            realized = closed * (price - self.entry_price) if position > 0 else closed * (self.entry_price - price)
            held = abs(position)
            if abs(new_position) < 1e-12 * (held if held > 1.0 else 1.0):  # max(1.0, held), without the call
                new_position = 0.0
            if new_position == 0.0:
                self.entry_price = 0.0
            elif (new_position > 0) != (position > 0):
                self.entry_price = price
        else:
            self.entry_price = (abs(position) * self.entry_price + size * price) / abs(new_position)
        self.position = new_position
        self.cash = cash - (units * price + fee)
        self.fees_paid += fee
        self.realized_pnl += realized
        self._fills.append((bar, side, size, price, fee, realized, 0))
        self.n_trades += 1
        return True

    def buy_with_cash(self, amount: float, reference: float, bar: int = -1, asset: int = 0) -> bool:
        """Spend ``amount`` of cash (fee included) on ``asset``."""
        amount = min(amount, max(self.cash, 0.0))
        price = self.fill_price(reference, 1, asset)
        fee_rate = self.fee_rate if asset == 0 else self.fee_rates[asset]
        return self.trade(amount / (price * (1.0 + fee_rate)), reference, bar, asset)

    def close(self, reference: float, bar: int = -1, asset: int = 0) -> bool:
        """Flatten ``asset``'s position."""
        return self.trade(-self._book(asset)[0], reference, bar, asset)

    def charge_funding(self, price: float) -> float:
        """Charge one bar of funding/borrow on the absolute notional at ``price``; returns the cost."""
        if not self.funding_rate or not self.position:
            return 0.0
        cost = abs(self.position) * price * self.funding_rate
        self.cash -= cost
        self.funding_paid += cost
        return cost


def _per_asset(name: str, value: float | Sequence[float], n_assets: int) -> list[float]:
    """A rate given once for every asset or as one number per asset, as a list of ``n_assets``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [float(value)] * n_assets
    if len(value) != n_assets:
        raise ValueError(f"Ledger: {name} needs one rate per asset ({n_assets}), got {len(value)}: {list(value)!r}")
    return [float(rate) for rate in value]
