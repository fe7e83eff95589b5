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
  Funding from data (signed: longs pay a positive rate, shorts receive it), margin and liquidation
  are in :mod:`sb3_crypto.envs.margin`; they pay through :meth:`Ledger.pay_funding` and :meth:`Ledger.pay_fee`.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Fill(NamedTuple):
    """One executed trade."""

    bar: int  #: row index of the bar whose open filled the order
    side: int  #: +1 buy, -1 sell
    units: float  #: absolute units of the base asset traded
    price: float  #: fill price including slippage
    fee: float  #: fee paid in quote currency
    realized_pnl: float  #: PnL realised by this fill (gross of fees)


class Ledger:
    """Cash, signed position and the bookkeeping of fills, fees and funding.

    :param initial_cash: starting cash (quote currency).
    :param fee_rate: taker fee as a fraction of notional (0.001 = 0.1 %).
    :param slippage: adverse fill-price move as a fraction (0.0005 = 0.05 %).
    :param allow_short: whether the position may go below zero.
    :param max_leverage: cap on ``|position| * price / equity`` for sized orders (1 = no borrowing).
    :param funding_rate: per-bar cost on absolute notional (fraction), charged by :meth:`charge_funding`.
    :param initial_position: starting units of the base asset (e.g. S4 starts with one coin).
    """

    __slots__ = (
        "_fills",
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
        "n_trades",
        "position",
        "realized_pnl",
        "slippage",
    )

    def __init__(
        self,
        initial_cash: float = 10_000.0,
        fee_rate: float = 0.001,
        slippage: float = 0.0,
        *,
        allow_short: bool = True,
        max_leverage: float = 1.0,
        funding_rate: float = 0.0,
        initial_position: float = 0.0,
    ) -> None:
        for name, value in (("fee_rate", fee_rate), ("slippage", slippage), ("funding_rate", funding_rate)):
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise ValueError(f"Ledger: {name} must be a fraction in [0, 1), got {value}")
        if not (math.isfinite(initial_cash) and initial_cash >= 0):
            raise ValueError(f"Ledger: initial_cash must be finite and >= 0, got {initial_cash}")
        if not (math.isfinite(max_leverage) and max_leverage > 0):
            raise ValueError(f"Ledger: max_leverage must be > 0, got {max_leverage}")
        if initial_position < 0 and not allow_short:
            raise ValueError("Ledger: a negative initial_position needs allow_short=True")
        self.initial_cash = float(initial_cash)
        self.initial_position = float(initial_position)
        self.fee_rate = float(fee_rate)
        self.slippage = float(slippage)
        self.allow_short = allow_short
        self.max_leverage = float(max_leverage)
        self.funding_rate = float(funding_rate)
        self.reset()

    def reset(self, entry_price: float = 0.0) -> None:
        """Back to the starting cash and position (``entry_price`` values an initial position)."""
        self.cash = self.initial_cash
        self.position = self.initial_position
        self.entry_price = entry_price if self.initial_position else 0.0
        self.realized_pnl = 0.0
        self.fees_paid = 0.0
        self.funding_paid = 0.0
        self._fills: list[tuple[int, int, float, float, float, float]] = []
        self.n_trades = 0  #: number of fills so far (a plain counter: read on every env step)

    # ------------------------------------------------------------------ valuation
    def equity(self, price: float) -> float:
        """Mark-to-market value at ``price``."""
        return self.cash + self.position * price

    def unrealized_pnl(self, price: float) -> float:
        """Open PnL of the position at ``price`` (gross of the fee to close it)."""
        return self.position * (price - self.entry_price) if self.position else 0.0

    def exposure(self, price: float) -> float:
        """Signed position value as a fraction of equity (0 when equity is not positive)."""
        equity = self.equity(price)
        return self.position * price / equity if equity > 0 else 0.0

    def position_return(self, price: float) -> float:
        """Return of the open position since entry (signed: a losing short is negative)."""
        if not self.position or self.entry_price <= 0:
            return 0.0
        direction = 1.0 if self.position > 0 else -1.0
        return direction * (price / self.entry_price - 1.0)

    @property
    def fills(self) -> list[Fill]:
        """Every fill so far, oldest first."""
        return [Fill._make(fill) for fill in self._fills]

    @property
    def last_fill(self) -> Fill | None:
        """The most recent fill, if any."""
        return Fill._make(self._fills[-1]) if self._fills else None

    # ------------------------------------------------------------------ trading
    def fill_price(self, reference: float, side: int) -> float:
        """Price a market order of ``side`` (+1 buy / -1 sell) gets at ``reference``."""
        return reference * (1.0 + side * self.slippage)

    def trade(self, units: float, reference: float, bar: int = -1) -> bool:
        """Buy (``units > 0``) or sell (``units < 0``) at ``reference`` plus slippage, paying the fee.

        With ``allow_short=False`` a sell is cut to the units held. Returns whether anything was
        traded; the fill is then :attr:`last_fill`.
        """
        if units - units != 0.0:  # not math.isfinite(units), without the call: inf - inf and nan - nan are nan
            raise ValueError(f"Ledger.trade: units must be finite, got {units}")
        position = self.position
        if not self.allow_short and position + units < 0:
            units = -position
        if units == 0.0:
            return False
        if units > 0:
            side = 1
            size = units
            price = reference * (1.0 + self.slippage)
        else:
            side = -1
            size = -units
            price = reference * (1.0 - self.slippage)
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
                self.entry_price = price  # flipped: the remainder was opened at this fill
        else:
            self.entry_price = (abs(position) * self.entry_price + size * price) / abs(new_position)
        self.position = new_position
        self.cash -= units * price + fee
        self.fees_paid += fee
        self.realized_pnl += realized
        self._fills.append((bar, side, size, price, fee, realized))  # plain tuple: this is the hot path
        self.n_trades += 1
        return True

    def units_for_exposure(self, target: float, reference: float) -> float:
        """Units to trade at ``reference`` so that the position is worth ``target`` times equity.

        ``target`` is clipped to ``[-max_leverage, max_leverage]`` (``[0, max_leverage]`` without
        shorting). Without leverage (``max_leverage <= 1``) a buy never spends more cash than there is,
        fee included.
        """
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
        over random ledgers and targets. Returns whether anything was traded.
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
        self._fills.append((bar, side, size, price, fee, realized))
        self.n_trades += 1
        return True

    def buy_with_cash(self, amount: float, reference: float, bar: int = -1) -> bool:
        """Spend ``amount`` of cash (fee included) on the base asset."""
        amount = min(amount, max(self.cash, 0.0))
        price = self.fill_price(reference, 1)
        return self.trade(amount / (price * (1.0 + self.fee_rate)), reference, bar)

    def close(self, reference: float, bar: int = -1) -> bool:
        """Flatten the position."""
        return self.trade(-self.position, reference, bar)

    def pay_funding(self, amount: float) -> None:
        """Pay ``amount`` of funding from cash (negative: funding received), as a funding series charges it
        (:mod:`sb3_crypto.envs.margin`); it is added to ``funding_paid``."""
        self.cash -= amount
        self.funding_paid += amount

    def pay_fee(self, amount: float) -> None:
        """Pay a fee that is not a fill's taker fee (a liquidation fee) from cash; it is added to ``fees_paid``."""
        self.cash -= amount
        self.fees_paid += amount

    def charge_funding(self, price: float) -> float:
        """Charge one bar of funding/borrow on the absolute notional at ``price``; returns the cost."""
        if not self.funding_rate or not self.position:
            return 0.0
        cost = abs(self.position) * price * self.funding_rate
        self.cash -= cost
        self.funding_paid += cost
        return cost
