"""``CryptoTrading-v0``: continuous target-exposure trading (for SAC / TD3 / PPO).

Timing: the action is decided on the close of bar ``t`` (the last bar in the observation), filled at
the open of bar ``t + 1`` with slippage and fee, and the reward is the change of equity marked at the
close of bar ``t + 1``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from math import log
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_crypto.data import keywords
from sb3_crypto.data.loaders import infer_freq
from sb3_crypto.envs.base import MAX_REWARD_SCALE, MarketEnv, money
from sb3_crypto.envs.ledger import Ledger
from sb3_crypto.envs.margin import FundingSeries, MarginRules
from sb3_crypto.envs.observation import TradingAccount
from sb3_crypto.envs.rewards import REWARD_MODES, MultiComponentReward
from sb3_crypto.envs.rewards import reward_weights as checked_reward_weights

ACTION_SCHEMES = ("target", "direction_size_confidence")
#: Writes the four account features into an observation as float32 in one call (half the time of
#: four item assignments, the same rounding; every value written is clipped to the bound first).
_PACK_ACCOUNT = struct.Struct("<4f").pack_into
#: Largest ``leverage`` the env accepts.
MAX_LEVERAGE = 100.0


class CryptoTradingEnv(MarketEnv):
    """Trade one asset by choosing a target exposure (signed position value / equity).

    **Actions** (always a ``Box`` in ``[-1, 1]``, SB3's recommended range):

    * ``action_scheme="target"`` (default): one value, the target exposure times ``leverage``. With
      ``allow_short=False`` it is mapped linearly to an exposure in ``[0, leverage]``
      (``-1`` → flat, ``+1`` → fully long). No order is sent when the target is within ``dead_band``
      of the current exposure (avoids churning on tiny changes).
    * ``action_scheme="direction_size_confidence"`` (reference system S2): three values; direction
      ``> 0.3`` buys, ``< -0.3`` sells, otherwise hold; size and confidence are mapped from
      ``[-1, 1]`` to ``[0, 1]`` and the traded exposure change is ``size * confidence * 0.5``.

    **Observation**: the normalised window (see :mod:`sb3_crypto.envs.base`) followed by
    ``exposure`` (fraction of equity, signed), ``unrealized_pnl`` (fraction of equity), ``drawdown``
    (fraction below the episode's equity peak) and ``time_left`` (1 at the start → 0 at the end).

    **Reward** (``reward``): ``"log_return"`` of equity (default), ``"excess"`` over buy-and-hold, or
    ``"multi"`` (S2's weighted components, breakdown in ``info["reward_components"]``, weights in
    ``reward_weights``, only with ``"multi"``), times ``reward_scale`` (in (0, 1e6]).

    **Risk limits** (S2, all optional fractions): ``max_drawdown`` (in (0, 1)) - beyond it no new risk
    is taken (exposure may only shrink); ``max_position`` (in (0, leverage]) - cap on absolute
    exposure; ``stop_loss`` (in (0, 1)) - an open position that has lost this fraction since entry is
    closed at the next open.

    **Costs**: ``fee`` (taker, fraction of notional), ``slippage`` (fraction, adverse),
    ``funding_rate`` (per bar, on absolute notional), each in [0, 1); ``dead_band`` is in [0, 1),
    ``leverage`` in (0, 100]. ``initial_cash`` in quote currency, in [1e-6, 1e15].

    **Perpetual futures** (:mod:`sb3_crypto.envs.margin`). *Margin* applies when ``leverage > 1`` or
    any of ``initial_margin`` (in (0, 1], default ``1 / leverage``: orders that add risk keep gross
    notional <= equity / initial_margin after costs), ``maintenance_margin`` (in (0, initial_margin),
    above a fill's own costs ``slippage + fee * (1 + slippage)``; default 0.005) or ``liquidation_fee``
    (in [0, 1), default 0.005, on the liquidated notional, at most what is left of equity) is given;
    at ``leverage=1`` without them nothing changes (no liquidation, the earlier results). With margin,
    every bar stepped through is checked against its adverse extreme (low for a long, high for a
    short): when equity falls below ``maintenance_margin`` x notional the position is closed at the
    liquidation price, or at the bar's open when the open was already beyond it (a gap: never a
    better price than the market gave); only a gap can leave equity below 0. A liquidation ends the
    episode (``terminated``; ``info["liquidated"] = True`` and ``info["liquidation"]`` with
    ``reason`` ``"gap"`` or ``"maintenance"``, ``price`` (reference), ``fill_price``, ``notional``,
    ``fee``, ``liquidation_fee``, ``equity`` left); the reward is the log return to that equity, or
    the ruin penalty when it is not positive.

    *Funding from data*: ``funding`` is a file path (CSV / Parquet with a time column and a
    ``funding_rate`` column), a DataFrame or a Series of rates at their own times (e.g. every 8 h),
    see :class:`~sb3_crypto.envs.margin.FundingSeries`. An event at time ``tau`` charges
    ``position * price * rate`` (positive rate: longs pay, shorts receive) on the position held just
    before ``tau``, at the last price known then (the close of the bar ending at ``tau``, the open of
    the bar it falls inside); events outside the bars are dropped (counted on ``env.funding``). It
    replaces the constant ``funding_rate`` (giving both is an error); ``funding`` is YAML-friendly
    as a path and, choosing data, is not kept by an observer.

    Every keyword is checked by name (see :class:`~sb3_crypto.envs.base.MarketEnv`).

    ``info`` from ``reset`` and ``step``: ``timestamp`` (latest bar in the observation), ``bar`` (its
    row), ``equity``, ``position`` (signed units), ``exposure``, ``drawdown``, ``fees_paid``, ``trades`` (fills),
    and when they happen the risk events ``stop_loss`` / ``risk_limited`` and ``reward_components``.
    Cash, realised PnL and every fill are on ``env.unwrapped.ledger``.
    """

    account_features = ("exposure", "unrealized_pnl", "drawdown", "time_left")
    account_state = TradingAccount
    #: ``funding`` chooses data (rates for the training bars), so an observer does not keep it.
    data_keywords = (*MarketEnv.data_keywords, "funding")
    #: What each action dimension means, by action size (1: ``"target"``, 3: S2's scheme).
    action_meanings = {
        1: ("target exposure in [-1, 1] (times leverage)",),
        3: ("direction (> 0.3 buy, < -0.3 sell)", "size", "confidence"),
    }

    def __init__(
        self,
        data: Any = "synthetic",
        *,
        window_size: int = 32,
        episode_length: int | None = 256,
        split: str = "train",
        action_scheme: str = "target",
        allow_short: bool = True,
        leverage: float = 1.0,
        dead_band: float = 0.05,
        fee: float = 0.001,
        slippage: float = 0.0005,
        funding_rate: float = 0.0,
        initial_cash: float = 10_000.0,
        reward: str = "log_return",
        reward_scale: float = 1.0,
        reward_weights: Mapping[str, float] | None = None,
        max_drawdown: float | None = None,
        max_position: float | None = None,
        stop_loss: float | None = None,
        initial_margin: float | None = None,
        maintenance_margin: float | None = None,
        liquidation_fee: float | None = None,
        funding: Any = None,
        **market_kwargs: Any,
    ) -> None:
        action_scheme = keywords.choice("action_scheme", action_scheme, ACTION_SCHEMES)
        reward = keywords.choice("reward", reward, REWARD_MODES)
        allow_short = keywords.boolean("allow_short", allow_short)
        leverage = keywords.positive("leverage", leverage, high=MAX_LEVERAGE)
        dead_band = keywords.rate("dead_band", dead_band)
        fee = keywords.rate("fee", fee)
        slippage = keywords.rate("slippage", slippage)
        funding_rate = keywords.rate("funding_rate", funding_rate)
        initial_cash = money("initial_cash", initial_cash)
        reward_scale = keywords.positive("reward_scale", reward_scale, high=MAX_REWARD_SCALE)
        max_drawdown = keywords.optional_real("max_drawdown", max_drawdown, low=0.0, low_inclusive=False, high=1.0)
        max_position = keywords.optional_real("max_position", max_position, low=0.0, low_inclusive=False)
        if max_position is not None and max_position > leverage:
            raise ValueError(
                f"max_position must be a number in (0, leverage], got {max_position!r} with leverage={leverage!r}"
            )
        stop_loss = keywords.optional_real("stop_loss", stop_loss, low=0.0, low_inclusive=False, high=1.0)
        if reward != "multi" and not keywords.is_none(reward_weights):
            raise ValueError(
                f"reward_weights is only used with reward='multi', got reward={reward!r} and "
                f"reward_weights={keywords.describe(reward_weights)}"
            )
        weights = checked_reward_weights(reward_weights) if reward == "multi" else None
        margin = MarginRules.from_keywords(
            leverage=leverage,
            initial_margin=initial_margin,
            maintenance_margin=maintenance_margin,
            liquidation_fee=liquidation_fee,
            fee=fee,
            slippage=slippage,
        )
        series = None if keywords.is_none(funding) else FundingSeries.load(funding, "funding")
        if series is not None and funding_rate:
            raise ValueError(
                f"give funding (rates at their own times) or funding_rate (a constant per bar), not both; got "
                f"funding={keywords.describe(funding)} and funding_rate={funding_rate!r}"
            )
        super().__init__(data, window_size=window_size, episode_length=episode_length, split=split, **market_kwargs)
        self.action_scheme = action_scheme
        self.allow_short = allow_short
        self.leverage = float(leverage)
        self.dead_band = float(dead_band)
        self.reward_mode = reward
        self.reward_scale = float(reward_scale)
        self.max_drawdown = max_drawdown
        self.max_position = max_position
        self.stop_loss = stop_loss
        self.ledger = Ledger(
            initial_cash,
            fee,
            slippage,
            allow_short=allow_short,
            max_leverage=max(self.leverage, max_position or 0.0),
            funding_rate=funding_rate,
        )
        self._multi = None if weights is None else MultiComponentReward(self.market.periods_per_year, weights)
        n_actions = 1 if action_scheme == "target" else 3
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n_actions,), np.float32)
        # Python floats: scalar arithmetic on them is several times faster than on numpy scalars.
        market_open, market_close = self.market.open, self.market.close
        self._open: list[float] = market_open.tolist()
        self._close: list[float] = market_close.tolist()
        #: Margin rules (``None``: no margin, no liquidation) and funding from data (``None``: the
        #: constant ``funding_rate``); see :mod:`sb3_crypto.envs.margin`.
        self.margin = margin
        index = self.market.frame.index
        self.funding = None if series is None else series.on_bars(index, infer_freq(index))
        self._funding_per_unit = None if self.funding is None else self.funding.per_unit(market_open, market_close)
        self._perp = margin is not None or series is not None
        if margin is not None:
            self._low: list[float] = self.market.low.tolist()
            self._high: list[float] = self.market.high.tolist()
        self._equity = initial_cash
        self._peak = initial_cash
        self._exposure = 0.0
        # Hot-path constants (see step()).
        self._action_shape = self.action_space.shape
        self._target_scheme = action_scheme == "target"
        self._has_risk_limits = any(v is not None for v in (max_drawdown, max_position, stop_loss))
        self._reward_kind = REWARD_MODES.index(reward)  # 0: log_return (no extra work)
        self._window_dim = self.observation_layout.window_dim
        self._account_offset = self._window_dim * 4  # bytes: where _PACK_ACCOUNT writes
        self._n_channels = self.observation_layout.n_channels
        self._episode_span = 1

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at a random bar of the split (or its first bar when walking it whole)."""
        self._apply_pending()
        super().reset(seed=seed)
        t = self._begin_episode()
        self.ledger.reset()
        if self._multi is not None:
            self._multi.reset()
        self._equity = self._peak = self.ledger.equity(self._close[t])
        self._exposure = 0.0
        self._episode_span = self._end - self._start
        self._stop = ""
        return self._observation(t, self._equity, 0.0, 0.0, 0.0), self._info(None)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Fill the target exposure at the next open, mark at the next close.

        This is the hot path (benchmarked in ``benchmarks/bench_env_speed.py``): plain floats, one
        ledger call per event, no per-step numpy work beyond building the observation.
        """
        t = self._t
        ledger = self.ledger
        current = self._exposure  # exposure at the close of bar t, the decision price
        if self._target_scheme and type(action) is np.ndarray and action.size == 1:
            value = action.item()  # fast path for the common case; _target handles everything else
            if not -1.0 <= value <= 1.0:
                value = self._target(action, current) / self.leverage
            elif not self.allow_short:
                value = (value + 1.0) * 0.5
            target = value * self.leverage
        else:
            target = self._target(action, current)
        events: dict[str, Any] | None = None
        if self._has_risk_limits:
            target, events = self._apply_risk_limits(target, current, self._close[t])
        if self._stop:  # the one check between episodes: before reset() or after the episode ended
            self._refuse_step()

        nxt = t + 1
        fees_before = ledger.fees_paid if self._reward_kind else 0.0
        liquidated = None
        if self._perp:  # margin, liquidation or funding from data: off the benchmarked path
            liquidated = self._perp_bar(target, current, nxt)
        else:
            if abs(target - current) >= self.dead_band or (target == 0.0 and ledger.position):
                ledger.rebalance(target, self._open[nxt], nxt)  # units_for_exposure + trade in one call
            if ledger.funding_rate:
                ledger.charge_funding(self._close[nxt])
        close_next = self._close[nxt]
        self._t = nxt

        previous = self._equity
        position = ledger.position
        equity = ledger.cash + position * close_next
        self._equity = equity
        if equity > self._peak:
            self._peak = equity
        ruined = equity <= 0.0
        terminated = ruined or liquidated is not None
        if ruined:
            truncated = False
            self._stop = "terminated"
            exposure = 0.0
            reward = -20.0  # ruin: a large finite penalty instead of log(0)
        elif liquidated is not None:  # the position was closed by the liquidation; equity is left
            truncated = False
            self._stop = "terminated"
            exposure = 0.0
            reward = log(equity / previous)
        else:
            truncated = nxt >= self._end
            if truncated:
                self._stop = "truncated"
            exposure = position * close_next / equity
            reward = log(equity / previous)
        self._exposure = exposure
        if liquidated is not None:
            events = {**(events or {}), "liquidated": True, "liquidation": liquidated}
        if self._reward_kind and not ruined:
            reward = self._shaped_reward(reward, nxt, previous, equity, ledger.fees_paid - fees_before, events)
            if self._multi is not None:
                events = events or {}
                events["reward_components"] = self._multi.last_components
        drawdown = 1.0 - equity / self._peak
        # Same keys as _info (used by reset), built inline: calling it costs ~3 % of the step.
        info = {
            "timestamp": self._times[nxt],
            "bar": nxt,
            "equity": equity,
            "position": position,
            "exposure": exposure,
            "drawdown": drawdown,
            "fees_paid": ledger.fees_paid,
            "trades": ledger.n_trades,
        }
        if events:
            info.update(events)
        # The observation, as _observation builds it, inlined (a call costs ~4 % of the step).
        bound = self.obs_bound
        if position and equity > 0:
            unrealized = position * (close_next - ledger.entry_price) / equity
            unrealized = -bound if unrealized < -bound else bound if unrealized > bound else unrealized
        else:
            unrealized = 0.0
        if ruined and drawdown > bound:  # ruin: equity <= 0 puts the drawdown at 1 or beyond
            drawdown = bound
        start = nxt * self._n_channels
        obs = self._padded_features[start - self._window_start_offset : start + self._window_stop_offset].copy()
        _PACK_ACCOUNT(
            obs,
            self._account_offset,
            -bound if exposure < -bound else bound if exposure > bound else exposure,
            unrealized,
            drawdown,
            (self._end - nxt) / self._episode_span,
        )
        if self._extra_start:  # deprecated extra_features: slots past the account hold the next bar's features
            obs[self._extra_start :] = 0.0
        return obs, reward * self.reward_scale, terminated, truncated, info

    def action_for_exposure(self, exposure: float) -> np.ndarray:
        """The action that targets ``exposure`` (used by constant baselines such as buy-and-hold).

        With ``action_scheme="direction_size_confidence"`` only 0 (hold when flat) and full exposure
        (keep buying at full size and confidence) are expressible as a constant action.
        """
        if self.action_scheme == "target":
            value = exposure / self.leverage
            if not self.allow_short:
                value = 2.0 * value - 1.0
            return np.array([np.clip(value, -1.0, 1.0)], dtype=np.float32)
        if exposure == 0.0:
            return np.zeros(3, dtype=np.float32)
        if exposure >= self.leverage:
            return np.ones(3, dtype=np.float32)
        raise ValueError("direction_size_confidence actions can only hold 0 or full exposure constantly")

    # ------------------------------------------------------------------ observing recent bars
    def observation_at(self, t: int, account: Any = None) -> np.ndarray:
        """The observation at bar ``t`` for a :class:`~sb3_crypto.envs.observation.TradingAccount`:
        the ledger holds its cash, position and entry price, the episode is ``account.step`` decisions
        old (of ``account.episode_length``, by default this env's), and the observation is the env's
        own, as a step marking the account at the close of bar ``t`` would return it."""
        t = self._observable(t)
        account = TradingAccount.of(account)
        ledger = self.ledger
        ledger.reset()
        cash = ledger.initial_cash if account.cash is None else account.cash
        position = account.position
        if position < 0 and not self.allow_short:
            raise ValueError(f"account.position is {position}, but this env does not short (allow_short=False)")
        ledger.cash = cash
        ledger.position = position
        ledger.entry_price = account.entry_price if position else 0.0
        equity = cash + position * self._close[t]  # as step() marks it
        if not (math.isfinite(equity) and equity > 0.0):
            raise ValueError(
                f"account: equity (cash {cash} + position {position} x close {self._close[t]}) is {equity}; "
                "it must be positive"
            )
        peak = account.peak_equity
        peak = equity if peak is None or equity > peak else peak
        span = account.episode_length if account.episode_length is not None else self.episode_length
        if span is None:
            raise ValueError("account.episode_length is needed: this env walks whole splits (episode_length=None)")
        if account.step >= span:
            raise ValueError(f"account.step must be below episode_length ({span}), got {account.step}")
        self._t = t
        self._start = t - account.step
        self._end = self._start + span
        self._episode_span = span
        self._equity = equity
        self._peak = peak
        self._exposure = position * self._close[t] / equity
        return self._observation(t, equity, position, self._exposure, 1.0 - equity / peak)

    def describe_action(self, action: Any) -> dict[str, Any]:
        """The target exposure ``action`` asks for now (after the risk limits), the current exposure and
        whether the env would trade (the change reaches ``dead_band``, or a position is closed)."""
        current = self._exposure
        target = self._target(np.asarray(action, dtype=np.float64), current)
        events: dict[str, Any] | None = None
        if self._has_risk_limits:
            target, events = self._apply_risk_limits(target, current, self._close[self._t])
        trades = abs(target - current) >= self.dead_band or (target == 0.0 and bool(self.ledger.position))
        side = "long" if target > 0 else "short" if target < 0 else "flat"
        meaning = f"target exposure {target:+.4f} ({side}) from {current:+.4f}"
        if not trades:
            meaning += f": within the dead band ({self.dead_band}), no trade"
        return {
            "meaning": meaning,
            "target_exposure": float(target),
            "current_exposure": float(current),
            "trades": bool(trades),
            **(events or {}),
        }

    # ------------------------------------------------------------------ perpetual futures
    def _perp_bar(self, target: float, current: float, bar: int) -> dict[str, Any] | None:
        """Step through ``bar`` with margin and / or funding from data (see :mod:`sb3_crypto.envs.margin`):

        1. the position held over the gap from the previous close is liquidated at ``bar``'s open when
           the open already breaks maintenance (the order is then not sent);
        2. the order fills at the open, cut by the initial margin;
        3. funding: the events of the bar from data (on the position now held), else the constant
           ``funding_rate``;
        4. the bar's adverse extreme (low for a long, high for a short) is checked against maintenance:
           a breach liquidates at the liquidation price, or at the open if the open was already beyond it.

        Returns what the liquidation did (``info["liquidation"]``), or ``None``. Only ``bar`` is read.
        """
        ledger = self.ledger
        rules = self.margin
        price = self._open[bar]
        if rules is not None and ledger.position:
            found = rules.liquidation_of_one(ledger.cash, ledger.position, price, price, price)
            if found is not None:
                return self._liquidate(found[0], True, bar)
        if abs(target - current) >= self.dead_band or (target == 0.0 and ledger.position):
            if rules is None:
                ledger.rebalance(target, price, bar)
            else:
                units = ledger.units_for_exposure(target, price)
                units = rules.cap_units(
                    ledger.cash,
                    (ledger.position,),
                    (price,),
                    0,
                    units,
                    slippage=ledger.slippage,
                    fee=ledger.fee_rate,
                )
                if units:
                    ledger.trade(units, price, bar)
        if self._funding_per_unit is not None:
            if ledger.position:
                cost = ledger.position * self._funding_per_unit[bar]
                if cost:
                    ledger.pay_funding(cost)
        elif ledger.funding_rate:
            ledger.charge_funding(self._close[bar])
        if rules is not None and ledger.position:
            found = rules.liquidation_of_one(ledger.cash, ledger.position, price, self._low[bar], self._high[bar])
            if found is not None:
                return self._liquidate(*found, bar)
        return None

    def _liquidate(self, price: float, gapped: bool, bar: int) -> dict[str, Any]:
        """Close the whole position at reference ``price`` (a market order: slippage and taker fee),
        then take the liquidation fee from what is left (never more than that)."""
        ledger = self.ledger
        rules = self.margin
        assert rules is not None
        position = ledger.position
        ledger.trade(-position, price, bar)
        fill = ledger.last_fill
        assert fill is not None
        notional = fill.units * fill.price
        fee = rules.liquidation_fee_due(notional, ledger.cash + ledger.position * price)
        if fee:
            ledger.pay_fee(fee)
        return {
            "reason": "gap" if gapped else "maintenance",
            "bar": bar,
            "position": position,
            "price": price,
            "fill_price": fill.price,
            "notional": notional,
            "fee": fill.fee,
            "liquidation_fee": fee,
            "equity": ledger.cash,
        }

    # ------------------------------------------------------------------ pieces
    def _target(self, action: np.ndarray, current: float) -> float:
        """Validate the action and turn it into a target exposure (before risk limits)."""
        if type(action) is np.ndarray and action.shape == self._action_shape:
            values = action.tolist()
        else:
            array = np.asarray(action, dtype=np.float64)
            if array.shape != self._action_shape and array.shape != (1, *self._action_shape):
                raise ValueError(
                    f"{type(self).__name__}: action must have shape {self._action_shape}, got {array.shape}"
                )
            values = array.reshape(-1).tolist()
        for value in values:
            if not math.isfinite(value):
                raise ValueError(f"{type(self).__name__}: action must be finite, got {values}")
        if self._target_scheme:
            value = values[0]
            value = -1.0 if value < -1.0 else 1.0 if value > 1.0 else value
            if not self.allow_short:
                value = (value + 1.0) * 0.5
            return value * self.leverage
        direction, size, confidence = (min(max(v, -1.0), 1.0) for v in values)
        change = ((size + 1.0) * 0.5) * ((confidence + 1.0) * 0.5) * 0.5
        if direction > 0.3:
            return min(current + change, self.leverage)
        if direction < -0.3:
            return max(current - change, -self.leverage if self.allow_short else 0.0)
        return current

    def _apply_risk_limits(self, target: float, current: float, close: float) -> tuple[float, dict[str, Any] | None]:
        """S2's stop-loss, position cap and drawdown brake, all decided on the close of bar t."""
        events: dict[str, Any] = {}
        ledger = self.ledger
        if self.stop_loss is not None and ledger.position and ledger.position_return(close) <= -self.stop_loss:
            target = 0.0
            events["stop_loss"] = True
        if self.max_position is not None:
            target = min(max(target, -self.max_position), self.max_position)
        if self.max_drawdown is not None and 1.0 - self._equity / self._peak >= self.max_drawdown:
            limited = min(max(target, min(0.0, current)), max(0.0, current))
            if limited != target:
                events["risk_limited"] = True
            target = limited
        return target, events or None

    def _shaped_reward(
        self, log_return: float, bar: int, previous: float, equity: float, fees: float, events: dict | None
    ) -> float:
        """The ``excess`` and ``multi`` rewards (``log_return`` needs no work)."""
        benchmark = self._close[bar] / self._close[bar - 1]
        if self._multi is None:
            return log_return - math.log(benchmark)
        drawdown = 1.0 - equity / self._peak if self._peak > 0 else 1.0
        total, _ = self._multi(equity / previous - 1.0, benchmark - 1.0, drawdown, fees / previous, self._exposure)
        return total

    def _observation(self, t: int, equity: float, position: float, exposure: float, drawdown: float) -> np.ndarray:
        """Window of bar ``t`` plus the account features (the step passes the values it already has)."""
        bound = self.obs_bound
        if position and equity > 0:
            unrealized = position * (self._close[t] - self.ledger.entry_price) / equity
            unrealized = -bound if unrealized < -bound else bound if unrealized > bound else unrealized
        else:
            unrealized = 0.0
        start = t * self._n_channels
        obs = self._padded_features[start - self._window_start_offset : start + self._window_stop_offset].copy()
        _PACK_ACCOUNT(
            obs,
            self._account_offset,
            -bound if exposure < -bound else bound if exposure > bound else exposure,
            unrealized,
            drawdown,
            (self._end - t) / self._episode_span,
        )
        if self._extra_start:  # deprecated extra_features: slots past the account hold the next bar's features
            obs[self._extra_start :] = 0.0
        return obs

    def _info(self, events: dict[str, Any] | None) -> dict[str, Any]:
        ledger = self.ledger
        info = {
            "timestamp": self._times[self._t],
            "bar": self._t,
            "equity": self._equity,
            "position": ledger.position,
            "exposure": self._exposure,
            "drawdown": 1.0 - self._equity / self._peak,
            "fees_paid": ledger.fees_paid,
            "trades": ledger.n_trades,
        }
        if events:
            info.update(events)
        return info
