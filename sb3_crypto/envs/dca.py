"""``CryptoDCA-v0``: when to make the one purchase of a dollar-cost-averaging cycle (reference system S1).

Each episode is a cycle of ``cycle_length`` bars. On every bar's close the agent waits (0) or buys
(1); the purchase fills at the next open through the shared ledger and ends the cycle; on the last
bar the purchase is forced. The reward for buying at price ``p`` is ``(avg - p) / avg`` (times
``reward_scale``), where ``avg`` is the mean of the cycle's fill prices - the price the "buy at the
average" baseline gets. That average includes bars after the purchase, so the reward is *marked*
at the end of the cycle (``info["marked_at"]``); observations never contain a later price (S1's
original scaled its observation with future prices - not copied here).

Observation (S1's content in the package's layout): the window of ``log(close_i / close_t) * 10``
for the last ``window_size`` closes (clipped to +-10), then ``position_value`` (where today's close
sits between the window's low and high, 0..1) and ``remaining_time`` (1 at the cycle's first bar, 0
at its last).

A feature spec mapping in ``features`` (indicators, user functions, higher timeframes: see
:mod:`sb3_crypto.data.pipeline`) adds its channels after ``log_close_vs_current`` in every row of the
window, z-scored on the training warm-up (``norm_warmup`` then defaults to 0.1 of the training split,
as in the other envs); its ``base`` channels are included unless ``base: none``. The shorthands
``"zscore"`` / ``"pct_change"`` keep the single-channel S1 observation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from sb3_crypto._aliases import moved_names
from sb3_crypto.data import keywords
from sb3_crypto.envs.base import MAX_REWARD_SCALE, LayoutBox, MarketEnv, ObservationLayout, advance_cursor, money
from sb3_crypto.envs.ledger import Ledger
from sb3_crypto.envs.observation import DCAAccount

WAIT, BUY = 0, 1
#: Bound of the ``log_close_vs_current`` channel (``log(close_i / close_t) * 10``).
RELATIVE_BOUND = 10.0
DCA_BASELINES = ("first_day", "last_day", "random_day", "average_price")


class CryptoDCAEnv(MarketEnv):
    """Optimal-stopping buy timing inside fixed cycles (S1). See the module docstring.

    :param data: a close-only or OHLCV file / frame (e.g. the CoinMarketCap file with
        ``asset="BTCBitcoin"``) or ``"synthetic"`` (daily bars by default).
    :param cycle_length: bars per cycle (decisions per episode), an integer >= 2.
    :param window_size: closes in the observation window (S1 default 30).
    :param sequential: visit the split's cycles back to back, each once per pass (evaluation);
        otherwise cycles start at random bars (training).
    :param budget: cash spent on the purchase, in [1e-6, 1e15]; ``fee`` and ``slippage`` in [0, 1) as in
        every env; ``reward_scale`` in (0, 1e6].
    :param features: a feature spec mapping adds its channels after ``log_close_vs_current`` (see the
        module docstring); the default ``"zscore"`` (or ``"pct_change"``) keeps S1's one channel.

    The market keywords of :class:`~sb3_crypto.envs.base.MarketEnv` apply too; every keyword is
    checked by name.
    """

    account_features = ("position_value", "remaining_time")
    account_state = DCAAccount
    evaluation: ClassVar[str] = "dca_cycles"
    sequential_evaluation: ClassVar[bool] = True
    _episode_keyword: ClassVar[str] = "cycle_length"
    #: What each discrete action does (reported by the prediction service).
    action_meanings = ("wait", "buy")

    def __init__(
        self,
        data: Any = "synthetic",
        *,
        cycle_length: int = 30,
        window_size: int = 30,
        split: str = "train",
        sequential: bool = False,
        budget: float = 1_000.0,
        fee: float = 0.0,
        slippage: float = 0.0,
        reward_scale: float = 1.0,
        synthetic_kwargs: Mapping[str, Any] | None = None,
        **market_kwargs: Any,
    ) -> None:
        if isinstance(data, str) and data == "synthetic" and keywords.is_none(synthetic_kwargs):
            synthetic_kwargs = {"n_bars": 4000, "freq": "1D", "seed": 0}
        cycle_length = keywords.integer("cycle_length", cycle_length, low=2)
        sequential = keywords.boolean("sequential", sequential)
        budget = money("budget", budget)
        fee = keywords.rate("fee", fee)
        slippage = keywords.rate("slippage", slippage)
        reward_scale = keywords.positive("reward_scale", reward_scale, high=MAX_REWARD_SCALE)
        # With S1's one channel nothing is z-scored: keep the warm-up minimal. A spec's channels are.
        spec_given = not isinstance(market_kwargs.get("features", "zscore"), str)
        market_kwargs.setdefault("norm_warmup", 0.1 if spec_given else 2)
        super().__init__(
            data,
            window_size=window_size,
            episode_length=cycle_length,
            split=split,
            synthetic_kwargs=synthetic_kwargs,
            **market_kwargs,
        )
        self.cycle_length = cycle_length
        self.sequential = sequential
        self.reward_scale = reward_scale
        spec = self.market.feature_spec
        self._spec_features = None if spec is None or spec.shorthand else self.market.features
        channels = ("log_close_vs_current",)
        self.obs_bound = RELATIVE_BOUND
        if self._spec_features is not None:
            channels += self.market.channels
            self.obs_bound = max(RELATIVE_BOUND, float(self.market.normalizer.clip))
        self.observation_layout = ObservationLayout(self.window_size, channels, self.account_features)
        self.observation_space = LayoutBox(self.obs_bound, self.observation_layout)
        self.action_space = gym.spaces.Discrete(2)
        self.ledger = Ledger(budget, fee, slippage, allow_short=False)
        self._log_close = np.log(self.market.close)
        self._cursor = -1

    @property
    def n_cycles(self) -> int:
        """Whole cycles in the split (episodes per pass in sequential mode)."""
        return (self.last_bar - self.first_bar + 1) // self.cycle_length

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start the next cycle (back to back when ``sequential``, else at a random bar)."""
        self._apply_pending()
        super().reset(seed=seed)
        if self.sequential:
            self._cursor = advance_cursor(self._cursor, self.n_cycles, restart=seed is not None)
            self._start = self._t = self.first_bar + self._cursor * self.cycle_length
            self._end = self._start + self.cycle_length
        else:
            self._begin_episode()
        self.ledger.reset()
        self._stop = ""
        return self._observation(), self._info()

    def cycle_average_price(self) -> float:
        """Mean fill price of the current cycle (known only once the cycle is over)."""
        fills = self.market.open[self._start + 1 : self._end + 1]
        return float(fills.mean())

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Wait, or buy at the next open (forced on the cycle's last bar)."""
        array = np.asarray(action).reshape(-1)
        if array.size != 1 or array[0] not in (WAIT, BUY):
            raise ValueError(f"{type(self).__name__}: action must be 0 (wait) or 1 (buy), got {action!r}")
        if self._stop:
            self._refuse_step()
        t = self._t
        last = t + 1 >= self._end
        reward = 0.0
        info_extra: dict[str, Any] = {}
        if int(array[0]) == BUY or last:
            ledger = self.ledger
            ledger.buy_with_cash(ledger.cash, float(self.market.open[t + 1]), t + 1)
            fill = ledger.last_fill
            assert fill is not None
            average = self.cycle_average_price()
            reward = (average - fill.price) / average * self.reward_scale
            info_extra = {
                "buy_price": fill.price,
                "average_price": average,
                "bought_on": t + 1 - self._start,
                "marked_at": self.timestamp(self._end),
                "forced": int(array[0]) != BUY,
            }
            terminated = True
            self._stop = "terminated"
        else:
            terminated = False
        self._t = t + 1
        obs = self._observation()
        info = self._info()
        info.update(info_extra)
        return obs, float(reward), terminated, False, info

    def observation_at(self, t: int, account: Any = None) -> np.ndarray:
        """The observation on bar ``t`` of a cycle that is :class:`~sb3_crypto.envs.observation.DCAAccount`
        ``.step`` bars old and has not bought yet."""
        t = self._observable(t)
        account = DCAAccount.of(account)
        if account.step >= self.cycle_length:
            raise ValueError(f"account.step must be below cycle_length ({self.cycle_length}), got {account.step}")
        self.ledger.reset()
        self._t = t
        self._start = t - account.step
        self._end = self._start + self.cycle_length
        return self._observation()

    def describe_action(self, action: Any) -> dict[str, Any]:
        """Wait or buy at the next open (forced on the cycle's last bar)."""
        choice = int(np.asarray(action).reshape(-1)[0])
        if choice not in (WAIT, BUY):
            raise ValueError(f"{type(self).__name__}: action must be 0 (wait) or 1 (buy), got {action!r}")
        forced = choice == WAIT and self._t + 1 >= self._end
        meaning = "buy (forced: the cycle's last bar)" if forced else self.action_meanings[choice]
        return {"meaning": meaning, "buys": choice == BUY or forced}

    def _observation(self) -> np.ndarray:
        t = self._t
        first = t - self.window_size + 1
        window = self._log_close[first : t + 1]
        relative = np.clip((window - window[-1]) * 10.0, -RELATIVE_BOUND, RELATIVE_BOUND)
        low, high = window.min(), window.max()
        position_value = (window[-1] - low) / (high - low) if high > low else 0.5
        steps_left = self._end - 1 - t
        remaining = max(steps_left, 0) / (self.cycle_length - 1)
        if self._spec_features is not None:  # each row: log_close_vs_current, then the spec's channels
            rows = np.column_stack((relative, self._spec_features[first : t + 1]))
            return np.concatenate((rows.reshape(-1), [position_value, remaining])).astype(np.float32)
        return np.concatenate((relative, [position_value, remaining])).astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp(), "bar": self._t, "cycle_start": self.timestamp(self._start)}


__getattr__ = moved_names(__name__, {"evaluate_dca": "sb3_crypto.evaluation.dca"})
