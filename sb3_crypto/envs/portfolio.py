"""``CryptoPortfolio-v0``: allocate capital across several assets and cash (target weights).

Timing, as in every env: the weights are decided on the close of bar ``t`` (the last bar of the
observation), the book is rebalanced at the open of bar ``t + 1`` through the one accounting core
(:class:`~sb3_crypto.envs.ledger.Ledger` with ``n_assets``: one fill per traded asset, each with its
fee and slippage, sells before buys) and the reward is marked at the close of bar ``t + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from sb3_crypto.data import keywords
from sb3_crypto.data.loaders import DataError, infer_freq
from sb3_crypto.data.market import SPLITS
from sb3_crypto.data.portfolio import PortfolioMarket, build_portfolio_market
from sb3_crypto.envs.base import (
    MAX_REWARD_SCALE,
    EpisodeGuard,
    LayoutBox,
    PortfolioLayout,
    Reconfigurable,
    RecordsSettings,
    episode_bounds,
    money,
)
from sb3_crypto.envs.ledger import Ledger
from sb3_crypto.envs.margin import BarFunding, MarginRules, funding_by_asset

#: Rewards of the portfolio env.
PORTFOLIO_REWARDS = ("log_return", "excess")
#: Largest ``max_gross_leverage`` (and ``logit_scale``) the env accepts.
MAX_GROSS_LEVERAGE = 10.0
MAX_LOGIT_SCALE = 50.0
#: Reward of a step that ruins the account (equity <= 0): a large finite penalty instead of log(0).
RUIN_REWARD = -20.0


class CryptoPortfolioEnv(RecordsSettings, EpisodeGuard, Reconfigurable, gym.Env):
    """Hold ``N`` assets and cash; each step chooses target portfolio weights.

    **Data** (``data``): ``"synthetic"`` (default: :func:`~sb3_crypto.data.synthetic.synthetic_panel`,
    correlated assets with a market factor, clusters and an optional planted cross-sectional signal;
    its options in ``synthetic_kwargs``, e.g. ``{"n_assets": 8, "signal": "reversal",
    "signal_strength": 0.3}``), a long file or frame with an asset column (the CoinMarketCap daily
    file), a wide file of closes, a directory of per-asset files (asset = file name without suffix)
    or a dict ``{asset: path or frame}``; ``assets`` picks and orders the assets (at least 2).
    ``fill_missing`` carries the last close over gaps inside an asset's life (never before listing
    or after delisting). Splits, ``norm_warmup`` and ``features`` are those of the single-asset envs
    (:class:`~sb3_crypto.envs.base.MarketEnv`), applied to each asset's own bars; the statistics are
    fitted per asset on the training warm-up (see :mod:`sb3_crypto.data.portfolio`).

    **Action**: a ``Box`` in ``[-1, 1]`` of ``n_assets + 1`` values, cash first.

    * Long-only (default): ``weights = softmax(logit_scale * action)`` over cash and the tradable
      assets (the others get weight 0 and are left out of the softmax); weights sum to 1, nothing is
      borrowed.
    * ``allow_short=True``: asset ``i`` gets ``w_i = max_gross_leverage * a_i / max(1, sum_j |a_j|)``
      (sum over tradable assets), so the gross exposure ``sum |w_i|`` never exceeds
      ``max_gross_leverage``; cash is what is left (``1 - sum w_i``, negative = borrowed). The cash
      entry of the action is unused.
    * ``dead_band``: an asset whose target weight differs from its current weight (at the close of
      bar ``t``) by less than ``dead_band`` gets no order and keeps its units.

    **Execution**: at the open of bar ``t + 1`` each traded asset is filled to its target weight of
    the equity valued at those opens (buys pay ``open * (1 + slippage)``, sells receive
    ``open * (1 - slippage)``, each fill pays ``fee`` of its notional); sells are filled first, and
    long-only buys are scaled down together when the cash would not cover them with their fees.
    ``fee`` and ``slippage`` are one fraction for every asset or a list of one per asset.

    **Asset lifetimes**: an asset is tradable at a decision on bar ``t`` when it has a bar with finite
    features on ``t`` and a bar on ``t + 1``. Otherwise its weight is 0 (long-only: left out of the
    softmax) and, before listing, after delisting and in gaps, its window rows are masked: features
    0 and ``alive`` 0. When an asset's life ends (its last bar is ``t``) the position is sold at its
    last close (slippage and fee apply) before the rebalance. Nothing is back-filled; inside a gap a
    position keeps its units, valued at the last close.

    **Observation** (a flat float32 :class:`~sb3_crypto.envs.base.LayoutBox` with a
    :class:`~sb3_crypto.envs.base.PortfolioLayout`): the per-asset windows, asset-major
    ``(n_assets, window_size, n_channels)``, channels = the features' channels plus ``alive``; then
    the current weights at the close of bar ``t``, cash first (``w_cash``, ``w_<asset>``).

    **Reward** (``reward``): ``"log_return"`` of equity (costs inside), or ``"excess"``: that minus the
    log return of an equal-weight buy-and-hold of the assets tradable at the episode's start (bought
    without costs at their closes, held, a delisted asset turned into cash at its last close); times
    ``reward_scale``. Equity at or below 0 ends the episode (``terminated``) with reward -20.

    **Perpetual futures** (:mod:`sb3_crypto.envs.margin`, the rules of ``CryptoTrading-v0`` over the
    whole book: one cross-margin account). *Margin* applies with ``allow_short=True`` or when any of
    ``initial_margin`` (in (0, 1], default ``1 / max_gross_leverage``), ``maintenance_margin`` (below
    it and above the costliest asset's fill costs ``slippage + fee * (1 + slippage)``; default 0.005)
    or ``liquidation_fee`` (default 0.005) is given; the long-only default has none (never borrowing,
    it cannot fall below maintenance). With margin, a target whose gross exposure exceeds
    ``1 / initial_margin`` is scaled down to it, the orders that only reduce a position fill first and
    every order that adds risk is cut so that gross notional stays within ``equity / initial_margin``
    after its costs. Each bar stepped through is checked with **every position at its adverse extreme
    at once** (the low of a long, the high of a short; an asset without a bar on that row at its last
    close): a conservative worst case, since those extremes need not come at the same moment (a hedged
    book may be liquidated where an exchange would not). When equity falls below ``maintenance_margin``
    x gross notional the whole book is closed (market orders: slippage and taker fee, then
    ``liquidation_fee`` x the liquidated notional, at most what is left) at the prices where equity
    meets maintenance on the way from the opens to those extremes, or at the opens when the book held
    over the gap already broke it there (the step's orders are then not sent): never a better price
    than the market gave. The episode then ends (``terminated``; reward the log return to what is left,
    or -20 when nothing is), with ``info["liquidated"] = True`` and ``info["liquidation"]``:
    ``reason`` (``"gap"`` / ``"maintenance"``), ``bar``, ``positions``, ``prices`` (reference, per asset),
    ``fill_prices``, ``fraction`` (how far towards the extremes), ``notional``, ``fee`` (taker),
    ``liquidation_fee`` and ``equity`` left.

    *Funding*: ``funding`` is a dict ``{asset: path, DataFrame or Series}`` or one long file or frame
    with an asset column (``symbol``, ``asset``, ...), a time column and a ``funding_rate`` column (see
    :func:`~sb3_crypto.envs.margin.funding_by_asset`; errors name the asset, line and column). Each
    event charges ``position * price * rate`` on the position held just before it (a positive rate:
    longs pay, shorts receive), at the last price known then; ``funding_rate`` (a constant per bar on
    the absolute notional, at the close; default 0) is charged to the assets without a series. Funding
    and the liquidation fee are in ``asset_pnl`` (still summing to the change of equity) and
    ``ledger.funding_paid`` / ``ledger.fees_paid``. Only the bar being stepped through is read.

    ``info`` from ``reset`` and ``step``: ``timestamp`` and ``bar`` (the latest bar observed),
    ``equity``, ``cash``, ``weights`` (array of ``n_assets + 1``, cash first, at the close of ``bar``),
    ``target_weights`` (what the step asked for after masking; the reset's current weights),
    ``turnover`` (traded notional of the step / equity before it), ``fees`` (of the step),
    ``fees_paid`` (of the episode), ``trades`` (fills of the episode), ``drawdown``, ``asset_pnl``
    (array: each asset's contribution to the step's change of equity, fees included, summing to it),
    ``tradable`` (bool array: the assets the decision could trade), ``benchmark_equity`` (the
    equal-weight buy-and-hold, same starting cash) and ``delisted`` (names closed at their last price
    by this step, when any). Fills, cash and positions are on ``env.unwrapped.ledger``.

    The env states how it is evaluated: ``evaluation = "portfolio"`` (one pass over a split with
    ``episode_length=None``; equity, weights and per-asset PnL from the infos).

    Not provided (yet): ``observation_spec`` / ``observer`` / ``observation_at`` (serving from raw
    bars); models of this env are saved without an observation spec.
    """

    metadata: dict[str, Any] = {"render_modes": []}
    evaluation: ClassVar[str] = "portfolio"
    sequential_evaluation: ClassVar[bool] = False
    _episode_keyword: ClassVar[str] = "episode_length"
    data_keywords: ClassVar[tuple[str, ...]] = (
        "data",
        "assets",
        "synthetic_kwargs",
        "fill_missing",
        "split",
        "split_fractions",
        "split_dates",
        "norm_warmup",
        "funding",
    )

    def __init__(
        self,
        data: Any = "synthetic",
        *,
        assets: Sequence[str] | None = None,
        window_size: int = 32,
        episode_length: int | None = 256,
        split: str = "train",
        synthetic_kwargs: Mapping[str, Any] | None = None,
        fill_missing: bool = False,
        split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
        split_dates: Sequence[str] | None = None,
        norm_warmup: float | int = 0.1,
        features: str | Mapping[str, Any] = "zscore",
        allow_short: bool = False,
        max_gross_leverage: float = 1.0,
        logit_scale: float = 5.0,
        dead_band: float = 0.01,
        fee: float | Sequence[float] = 0.001,
        slippage: float | Sequence[float] = 0.0005,
        initial_cash: float = 10_000.0,
        reward: str = "log_return",
        reward_scale: float = 1.0,
        initial_margin: float | None = None,
        maintenance_margin: float | None = None,
        liquidation_fee: float | None = None,
        funding: Any = None,
        funding_rate: float = 0.0,
    ) -> None:
        super().__init__()
        window_size = keywords.integer("window_size", window_size, low=1)
        episode_length = keywords.optional_integer("episode_length", episode_length, low=1)
        split = keywords.choice("split", split, SPLITS)
        allow_short = keywords.boolean("allow_short", allow_short)
        max_gross_leverage = keywords.positive("max_gross_leverage", max_gross_leverage, high=MAX_GROSS_LEVERAGE)
        if not allow_short and max_gross_leverage != 1.0:
            raise ValueError(
                f"max_gross_leverage={max_gross_leverage!r} needs allow_short=True (long-only weights sum to 1 "
                "with cash and never borrow)"
            )
        logit_scale = keywords.positive("logit_scale", logit_scale, high=MAX_LOGIT_SCALE)
        dead_band = keywords.rate("dead_band", dead_band)
        initial_cash = money("initial_cash", initial_cash)
        reward = keywords.choice("reward", reward, PORTFOLIO_REWARDS)
        reward_scale = keywords.positive("reward_scale", reward_scale, high=MAX_REWARD_SCALE)
        funding_rate = keywords.rate("funding_rate", funding_rate)
        self.market: PortfolioMarket = build_portfolio_market(
            data,
            assets=assets,
            synthetic_kwargs=synthetic_kwargs,
            fill_missing=fill_missing,
            split_fractions=split_fractions,
            split_dates=split_dates,
            norm_warmup=norm_warmup,
            features=features,
        )
        market = self.market
        n = market.n_assets
        fees = _rates("fee", fee, market.assets)
        slippages = _rates("slippage", slippage, market.assets)
        #: Margin rules (``None``: no margin, no liquidation); see :mod:`sb3_crypto.envs.margin`.
        self.margin = MarginRules.from_keywords(
            leverage=float(max_gross_leverage),
            initial_margin=initial_margin,
            maintenance_margin=maintenance_margin,
            liquidation_fee=liquidation_fee,
            fee=max(fees) if isinstance(fees, list) else fees,  # the costliest asset's fill
            slippage=max(slippages) if isinstance(slippages, list) else slippages,
            shorting=allow_short,
            leverage_name="max_gross_leverage",
        )
        self.assets = market.assets
        self.n_assets = n
        self.window_size = window_size
        self.episode_length = episode_length
        self.split = split
        self.allow_short = allow_short
        self.max_gross_leverage = float(max_gross_leverage)
        self.logit_scale = float(logit_scale)
        self.dead_band = float(dead_band)
        self.reward_mode = reward
        self.reward_scale = float(reward_scale)
        self.first_bar, self.last_bar = market.decision_range(split, window_size)
        available = self.last_bar - self.first_bar + 1
        if episode_length is not None and episode_length > available:
            raise DataError(
                f"{market.panel.source}: episode_length={episode_length} exceeds the {available} decision bars of "
                f"split {split!r} (window_size={window_size}, norm_warmup={norm_warmup!r}, {market.split_rule}); "
                "shorten episode_length or use episode_length=None"
            )
        self.ledger = Ledger(
            initial_cash,
            fees,
            slippages,
            allow_short=allow_short,
            max_leverage=self.max_gross_leverage,
            n_assets=n,
        )
        account = ("w_cash", *(f"w_{name}" for name in market.assets))
        self.observation_layout = PortfolioLayout(window_size, market.channels, account, (), market.assets)
        self.obs_bound = float(max(market.clip, self.max_gross_leverage + 1.0))
        self.observation_space = LayoutBox(self.obs_bound, self.observation_layout)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (n + 1,), np.float32)
        # Decision-time masks: tradable on a decision at t = a bar with features at t and a bar at t + 1.
        tradable = np.zeros_like(market.ready)
        tradable[:-1] = market.ready[:-1] & market.has_bar[1:]
        self._tradable = tradable
        self._keep = np.concatenate((np.ones((market.n_bars, 1), dtype=bool), tradable), axis=1)  # cash first
        self._all_tradable = tradable.all(axis=1).tolist()
        # Bars on which some asset's life ends (its position is sold at that bar's close).
        ends = np.zeros(market.n_bars, dtype=bool)
        ends[market.listed_until[market.listed_until < market.n_bars - 1]] = True
        self._life_ends = ends.tolist()
        # Reference prices with no NaN (only read where an asset trades or is held).
        self._open_ref = np.where(market.has_bar, market.open, market.mark)
        self._window_dim = self.observation_layout.window_dim
        self._t = self.first_bar
        self._start = self.first_bar
        self._end = self.last_bar + 1
        self._equity = initial_cash
        self._peak = initial_cash
        self._weights = np.zeros(n + 1)
        self._weights[0] = 1.0
        self._bench_units = np.zeros(n)
        self._bench_cash = self._bench = initial_cash
        self._setup_perp(funding, funding_rate)

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at a random decision bar of the split (its first when walking it whole)."""
        self._apply_pending()
        super().reset(seed=seed)
        start, self._end = episode_bounds(self.np_random, self.first_bar, self.last_bar, self.episode_length)
        self._start = self._t = start
        ledger = self.ledger
        ledger.reset()
        self._equity = self._peak = ledger.cash
        self._weights = np.zeros(self.n_assets + 1)
        self._weights[0] = 1.0
        # The equal-weight buy-and-hold benchmark: the assets tradable now, bought at this close.
        alive = self._tradable[start]
        self._bench_units = np.zeros(self.n_assets)
        self._bench_cash = self._bench = ledger.cash
        if alive.any():
            close = self.market.mark[start]
            self._bench_units[alive] = ledger.cash / alive.sum() / close[alive]
            self._bench_cash = 0.0
        self._stop = ""
        info = self._info(start, self._weights.copy(), 0.0, 0.0, np.zeros(self.n_assets), alive, ())
        return self._observation(start), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Rebalance to the action's weights at the next open, mark at the next close."""
        t = self._t
        market = self.market
        tradable = self._tradable[t]
        target = self.weights_for(action, tradable)
        if self._stop:
            self._refuse_step()
        ledger = self.ledger
        nxt = t + 1
        mark_now, mark_next = market.mark[t], market.mark[nxt]
        positions_before = np.asarray(ledger.positions)
        fills_before = ledger.n_trades
        fees_before = ledger.fees_paid
        previous = self._equity
        # Assets whose life ends on bar t: sold at their last close before the rebalance.
        delisted = []
        if self._life_ends[t]:
            for k in np.flatnonzero((positions_before != 0.0) & (market.listed_until == t)).tolist():
                ledger.close(float(mark_now[k]), t, k)
                delisted.append(self.assets[k])
        if self._perp:  # margin, liquidation, funding (see _perp_bar): off the default long-only path
            target, liquidation, charged = self._perp_bar(target, tradable, nxt)
        else:
            liquidation = charged = None
            change = np.abs(target[1:] - self._weights[1:])
            orders = tradable & (change >= self.dead_band) & (change > 0.0)
            if orders.any():
                references = self._open_ref[nxt].tolist()
                ledger.rebalance_weights(target[1:].tolist(), references, nxt, orders.tolist())
        self._t = nxt
        positions = np.asarray(ledger.positions)
        values = positions * mark_next
        equity = ledger.cash + float(values.sum())
        self._equity = equity
        if equity > self._peak:
            self._peak = equity
        fills = ledger._fills[fills_before:]
        traded = np.zeros(self.n_assets)
        cash_flow = np.zeros(self.n_assets)
        for _bar, side, size, price, fee, _pnl, asset in fills:
            traded[asset] += size * price
            cash_flow[asset] -= side * size * price + fee
        # Each asset's change of value plus the cash its fills moved: sums to the change of equity.
        asset_pnl = values - positions_before * mark_now + cash_flow
        if charged is not None:  # funding and liquidation fees, per asset: asset_pnl still sums to the change
            asset_pnl -= charged
        turnover = float(traded.sum()) / previous if previous > 0 else 0.0
        ruined = equity <= 0.0
        terminated = ruined or liquidation is not None
        if ruined:
            self._stop = "terminated"
            truncated = False
            reward = RUIN_REWARD
            self._weights = np.zeros(self.n_assets + 1)
        else:
            truncated = not terminated and nxt >= self._end
            if terminated or truncated:
                self._stop = "terminated" if terminated else "truncated"
            reward = math.log(equity / previous)
            self._weights = np.concatenate(([ledger.cash / equity], values / equity))
        bench_before = self._bench_cash + float(self._bench_units @ mark_now)
        if self._life_ends[t]:
            ended = (self._bench_units != 0.0) & (market.listed_until == t)
            self._bench_cash += float(self._bench_units[ended] @ mark_now[ended])
            self._bench_units[ended] = 0.0
        bench = self._bench_cash + float(self._bench_units @ mark_next)
        self._bench = bench
        if self.reward_mode == "excess" and not ruined and bench_before > 0 and bench > 0:
            reward -= math.log(bench / bench_before)
        info = self._info(nxt, target, turnover, ledger.fees_paid - fees_before, asset_pnl, tradable, delisted)
        if liquidation is not None:
            info["liquidated"] = True
            info["liquidation"] = liquidation
        return self._observation(nxt), reward * self.reward_scale, terminated, truncated, info

    # ------------------------------------------------------------------ the action mapping
    def weights_for(self, action: Any, tradable: np.ndarray | None = None) -> np.ndarray:
        """Target weights (cash first, ``n_assets + 1``) for ``action`` when ``tradable`` (bool per
        asset; default: the current decision's) may be traded; see the class docstring."""
        shape = self.action_space.shape
        if type(action) is not np.ndarray or action.shape != shape:
            array = np.asarray(action, dtype=np.float64)
            if array.shape != shape:
                if array.shape != (1, *shape):
                    raise ValueError(f"{type(self).__name__}: action must have shape {shape}, got {array.shape}")
                array = array[0]
            action = array
        total = float(action.sum())  # finite exactly when every value is (float32 or float64 values cannot overflow it)
        if total - total != 0.0:
            raise ValueError(f"{type(self).__name__}: action must be finite, got {action.tolist()}")
        array = action.astype(np.float64).clip(-1.0, 1.0)
        if tradable is None:
            keep, everything = self._keep[self._t], self._all_tradable[self._t]
        else:
            keep = np.concatenate(([True], np.asarray(tradable, dtype=bool)))
            everything = bool(keep.all())
        if self.allow_short:
            if not everything:
                array[~keep] = 0.0
            array[0] = 0.0
            gross = float(np.abs(array).sum())
            array *= self.max_gross_leverage / (gross if gross > 1.0 else 1.0)
            array[0] = 1.0 - float(array.sum())
            return array
        array *= self.logit_scale
        if not everything:
            array[~keep] = -np.inf
        array -= array.max()
        np.exp(array, out=array)
        array /= array.sum()
        return array

    def action_for_weights(self, weights: Sequence[float]) -> np.ndarray:
        """An action whose weights are ``weights`` (cash first, summing to 1) as closely as the action
        range allows (long-only: the softmax's logits, shifted so the largest is 1; with shorting the
        asset weights over ``max_gross_leverage``). Used by constant baselines (equal weight, cash)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.n_assets + 1,) or not np.isfinite(w).all():
            raise ValueError(f"weights must be {self.n_assets + 1} finite numbers (cash first), got {w.tolist()}")
        if self.allow_short:
            action = np.concatenate(([0.0], w[1:] / self.max_gross_leverage))
        else:
            if (w < 0).any() or not math.isclose(float(w.sum()), 1.0, rel_tol=1e-6):
                raise ValueError(f"long-only weights must be >= 0 and sum to 1, got {w.tolist()}")
            logits = np.log(np.maximum(w, 1e-300)) / self.logit_scale
            action = logits - logits.max() + 1.0
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ perpetual futures
    def _setup_perp(self, funding: Any, funding_rate: float) -> None:
        """Lay each asset's funding series on the bars of its life, keep the constant fallback, and the
        adverse prices margin reads (see :meth:`_perp_bar`)."""
        market = self.market
        n = self.n_assets
        series = {} if keywords.is_none(funding) else funding_by_asset(funding, market.assets)
        if funding_rate and len(series) == n:
            raise ValueError(
                f"give funding (rates at their own times) or funding_rate (a constant per bar), not both: funding "
                f"covers every asset, so funding_rate={funding_rate!r} would charge nothing"
            )
        self.funding_rate = funding_rate
        #: Each asset's funding series laid on the bars of its life (assets without one are absent).
        self.funding: dict[str, BarFunding] = {}
        per_unit = None
        if series:
            index = market.panel.index
            step = infer_freq(index)
            first = market.has_bar.argmax(axis=0)
            per_unit = np.zeros((market.n_bars, n))
            for k, asset in enumerate(market.assets):
                if asset in series:
                    rows = slice(int(first[k]), int(market.listed_until[k]) + 1)
                    laid = series[asset].on_bars(index[rows], step)
                    self.funding[asset] = laid
                    per_unit[rows, k] = laid.per_unit(self._open_ref[rows, k], market.mark[rows, k])
        constant = np.array([0.0 if asset in series else funding_rate for asset in market.assets])
        self._funding_per_unit = per_unit
        self._funding_constant = constant if constant.any() else None
        self._perp = self.margin is not None or per_unit is not None or self._funding_constant is not None
        if self.margin is not None:  # an asset without a bar (a gap in its life) stays at its last close
            self._low_ref = np.where(market.has_bar, market.panel.field("low").to_numpy(np.float64), market.mark)
            self._high_ref = np.where(market.has_bar, market.panel.field("high").to_numpy(np.float64), market.mark)

    def _perp_bar(
        self, target: np.ndarray, tradable: np.ndarray, bar: int
    ) -> tuple[np.ndarray, dict[str, Any] | None, np.ndarray]:
        """Step through ``bar`` with margin and / or funding, in the order of :mod:`sb3_crypto.envs.margin`:

        1. the book held over the gap from the previous close is liquidated at ``bar``'s opens when
           they already break maintenance (the orders are then not sent);
        2. the orders fill at the opens: the target's gross exposure is cut to ``1 / initial_margin``,
           the reductions fill first and every order that adds risk is cut by
           :meth:`~sb3_crypto.envs.margin.MarginRules.cap_units`;
        3. funding: each asset's events of the bar from data, else the constant ``funding_rate``;
        4. the book is checked with every position at its adverse extreme of ``bar`` (low for a long,
           high for a short): a breach liquidates at the prices where equity meets maintenance on the
           way from the opens to those extremes, or at the opens when the opens were already beyond.

        Returns the target sent, what a liquidation did (``info["liquidation"]``) or ``None``, and the
        funding and liquidation fee charged per asset. Only ``bar`` is read.
        """
        ledger = self.ledger
        rules = self.margin
        opens = self._open_ref[bar].tolist()
        charged = np.zeros(self.n_assets)
        if rules is not None and any(ledger.positions) and rules.breached(ledger.cash, ledger.positions, opens):
            return target, self._liquidate_book(opens, True, 0.0, bar, charged), charged
        if rules is not None:
            gross = float(np.abs(target[1:]).sum())
            if gross * rules.initial_margin > 1.0:
                target = target.copy()
                target[1:] *= 1.0 / (rules.initial_margin * gross)
                target[0] = 1.0 - float(target[1:].sum())
        change = np.abs(target[1:] - self._weights[1:])
        orders = tradable & (change >= self.dead_band) & (change > 0.0)
        if orders.any():
            cap = None if rules is None else self._margin_cap(rules, opens)
            ledger.rebalance_weights(target[1:].tolist(), opens, bar, orders.tolist(), cap)
        self._pay_funding(bar, charged)
        if rules is not None and any(ledger.positions):
            found = rules.liquidation(
                ledger.cash, ledger.positions, opens, self._low_ref[bar].tolist(), self._high_ref[bar].tolist()
            )
            if found is not None:
                return target, self._liquidate_book(found.prices, found.gapped, found.fraction, bar, charged), charged
        return target, None, charged

    def _margin_cap(self, rules: MarginRules, references: list[float]) -> Callable[[int, float], float]:
        """The initial-margin cut of an order of asset ``k`` at ``references``, on the ledger as it is then."""
        ledger = self.ledger
        fees, slippages = ledger.fee_rates, ledger.slippages

        def cap(k: int, units: float) -> float:
            return rules.cap_units(
                ledger.cash, ledger.positions, references, k, units, slippage=slippages[k], fee=fees[k]
            )

        return cap

    def _pay_funding(self, bar: int, charged: np.ndarray) -> None:
        """Pay ``bar``'s funding on the positions held through it (added to ``charged`` per asset)."""
        per_unit, constant = self._funding_per_unit, self._funding_constant
        if per_unit is None and constant is None:
            return
        positions = np.asarray(self.ledger.positions)
        if not positions.any():
            return
        cost = np.zeros(self.n_assets)
        if per_unit is not None:  # signed: a positive rate, longs pay and shorts receive
            cost += positions * per_unit[bar]
        if constant is not None:  # a cost on the absolute notional at the bar's close
            cost += np.abs(positions) * self.market.mark[bar] * constant
        total = float(cost.sum())
        if total:
            self.ledger.pay_funding(total)
        charged += cost

    def _liquidate_book(
        self, prices: Sequence[float], gapped: bool, fraction: float, bar: int, charged: np.ndarray
    ) -> dict[str, Any]:
        """Close every position at its reference price (market orders: slippage and taker fee), then take
        the liquidation fee on the liquidated notional from what is left (never more; split over the
        assets by notional into ``charged``). Returns ``info["liquidation"]``."""
        ledger = self.ledger
        rules = self.margin
        assert rules is not None
        n = self.n_assets
        positions = ledger.positions
        fills_before = ledger.n_trades
        for k, units in enumerate(positions):
            if units:
                ledger.trade(-units, prices[k], bar, k)
        notional = np.zeros(n)
        fill_prices = np.full(n, math.nan)
        taker = 0.0
        for _bar, _side, size, price, fee, _pnl, asset in ledger._fills[fills_before:]:
            notional[asset] = size * price
            fill_prices[asset] = price
            taker += fee
        total = float(notional.sum())
        fee = rules.liquidation_fee_due(total, ledger.cash)  # every position is closed: equity is the cash
        if fee:
            ledger.pay_fee(fee)
            charged += fee * notional / total
        return {
            "reason": "gap" if gapped else "maintenance",
            "bar": bar,
            "positions": np.asarray(positions),
            "prices": np.asarray(prices, dtype=np.float64),
            "fill_prices": fill_prices,
            "fraction": fraction,
            "notional": total,
            "fee": taker,
            "liquidation_fee": fee,
            "equity": ledger.cash,
        }

    # ------------------------------------------------------------------ pieces
    @property
    def n_decisions(self) -> int:
        """Decisions in the current episode."""
        return self._end - self._start

    @property
    def current_bar(self) -> int:
        """The decision bar: the latest bar of the current observation."""
        return self._t

    def tradable_at(self, t: int) -> np.ndarray:
        """Bool per asset: whether a decision on bar ``t`` may trade it (a copy)."""
        return self._tradable[t].copy()

    def timestamp(self, t: int | None = None) -> np.datetime64:
        """Timestamp of bar ``t`` (default: the latest bar in the current observation)."""
        return self.market.times[self._t if t is None else t]

    def _observation(self, t: int) -> np.ndarray:
        obs = np.empty(self.observation_layout.size, dtype=np.float32)
        obs[: self._window_dim] = self.market.windows[:, t - self.window_size + 1 : t + 1, :].reshape(-1)
        bound = self.obs_bound
        obs[self._window_dim :] = np.clip(self._weights, -bound, bound)
        return obs

    def _info(
        self,
        bar: int,
        target: np.ndarray,
        turnover: float,
        fees: float,
        asset_pnl: np.ndarray,
        tradable: np.ndarray,
        delisted: Sequence[str],
    ) -> dict[str, Any]:
        ledger = self.ledger
        info = {
            "timestamp": self.market.times[bar],
            "bar": bar,
            "equity": self._equity,
            "cash": ledger.cash,
            "weights": self._weights.copy(),
            "target_weights": target,
            "turnover": turnover,
            "fees": fees,
            "fees_paid": ledger.fees_paid,
            "trades": ledger.n_trades,
            "drawdown": 1.0 - self._equity / self._peak if self._peak > 0 else 0.0,
            "asset_pnl": asset_pnl,
            "tradable": tradable.copy(),
            "benchmark_equity": self._bench,
        }
        if delisted:
            info["delisted"] = list(delisted)
        return info


def _rates(name: str, value: Any, assets: Sequence[str]) -> float | list[float]:
    """``fee`` / ``slippage``: one fraction in [0, 1) or a list of one per asset."""
    if isinstance(value, (list, tuple, np.ndarray)):
        values = keywords.items(name, list(value), len(assets), "fractions (one per asset)")
        return [keywords.rate(f"{name}[{k}] ({assets[k]})", v) for k, v in enumerate(values)]
    return keywords.rate(name, value)


__all__ = ["PORTFOLIO_REWARDS", "CryptoPortfolioEnv"]
