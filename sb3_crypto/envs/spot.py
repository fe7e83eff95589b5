"""``CryptoSpot-v0``: hourly spot trading with half-steps for LSTM policies (reference system S4).

Actions (``Discrete(3)``): 0 hold, 1 buy with 50 % of the cash, 2 sell 50 % of the coins, decided on
a bar's close and filled at the next open through the shared ledger with the commission (0.075 %).
The account starts with 10,000 cash and 1 coin. Training episodes are random windows of
``episode_length`` (500) decisions; ``episode_length=None`` walks the whole split (evaluation). An
episode ends early when the portfolio is worth less than ``min_value_fraction`` (10 %) of its
starting value.

Rewards (per step, in quote currency, times ``reward_scale``):

* ``"excess"`` (S4's default): the change of ``value - value of the initial holding at today's
  price``, i.e. profit beyond simply keeping the starting cash and coin; selling before a drop earns
  reward even though the account value falls;
* ``"absolute"`` (the reader's proposal): the change of ``value - value of the initial holding at
  the start price``, i.e. the plain change of the portfolio value.

Observation: S4's percentage changes x 100 of the bar's OHLCV (a window of ``window_size`` bars,
1 by default), then ``cash / 10,000`` and ``coins`` - never raw prices.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sb3_crypto.data import keywords
from sb3_crypto.envs.base import MAX_REWARD_SCALE, MarketEnv, money
from sb3_crypto.envs.ledger import Ledger
from sb3_crypto.envs.observation import SpotAccount

HOLD, BUY_HALF, SELL_HALF = 0, 1, 2
SPOT_REWARDS = ("excess", "absolute")


class CryptoSpotEnv(MarketEnv):
    """S4's hourly spot environment. See the module docstring.

    :param data: hourly OHLCV file / frame, or ``"synthetic"``.
    :param commission: fee as a fraction of notional (0.00075 = 0.075 %), in [0, 1).
    :param initial_cash: starting cash; ``initial_coins``: starting coins (each 0 or in [1e-6, 1e15], not
        both 0).
    :param reward: ``"excess"`` (default) or ``"absolute"``; ``reward_scale`` in (0, 1e6].
    :param min_value_fraction: the episode terminates below this share of the starting value, in [0, 1).

    The market keywords of :class:`~sb3_crypto.envs.base.MarketEnv` apply too; every keyword is
    checked by name.
    """

    account_features = ("cash_over_10k", "coins")
    account_state = SpotAccount
    #: What each discrete action does (reported by the prediction service).
    action_meanings = ("hold", "buy with half the cash", "sell half the coins")

    def __init__(
        self,
        data: Any = "synthetic",
        *,
        window_size: int = 1,
        episode_length: int | None = 500,
        split: str = "train",
        commission: float = 0.00075,
        initial_cash: float = 10_000.0,
        initial_coins: float = 1.0,
        reward: str = "excess",
        reward_scale: float = 1.0,
        min_value_fraction: float = 0.1,
        **market_kwargs: Any,
    ) -> None:
        reward = keywords.choice("reward", reward, SPOT_REWARDS)
        commission = keywords.rate("commission", commission)
        initial_cash = money("initial_cash", initial_cash, allow_zero=True)
        initial_coins = money("initial_coins", initial_coins, allow_zero=True)
        if initial_cash == 0.0 and initial_coins == 0.0:
            raise ValueError("initial_cash and initial_coins are both 0: the account needs something to start with")
        reward_scale = keywords.positive("reward_scale", reward_scale, high=MAX_REWARD_SCALE)
        min_value_fraction = keywords.rate("min_value_fraction", min_value_fraction)
        market_kwargs.setdefault("features", "pct_change")
        super().__init__(data, window_size=window_size, episode_length=episode_length, split=split, **market_kwargs)
        self.action_space = gym.spaces.Discrete(3)
        self.ledger = Ledger(initial_cash, commission, 0.0, allow_short=False, initial_position=initial_coins)
        self.reward_mode = reward
        self.reward_scale = reward_scale
        self.min_value_fraction = min_value_fraction
        self.initial_coins = initial_coins
        self._start_value = initial_cash
        self._start_price = 0.0
        self._value = initial_cash

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a random window (or the whole split) with the initial cash and coins."""
        self._apply_pending()
        super().reset(seed=seed)
        t = self._begin_episode()
        self._start_price = float(self.market.close[t])
        self.ledger.reset(entry_price=self._start_price)
        self._start_value = self._value = self.ledger.equity(self._start_price)
        self._stop = ""
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Hold, buy with half the cash or sell half the coins at the next open; mark at its close."""
        array = np.asarray(action).reshape(-1)
        if array.size != 1 or array[0] not in (HOLD, BUY_HALF, SELL_HALF):
            raise ValueError(f"{type(self).__name__}: action must be 0 (hold), 1 (buy) or 2 (sell), got {action!r}")
        if self._stop:
            self._refuse_step()
        choice = int(array[0])
        t = self._t
        nxt = t + 1
        ledger = self.ledger
        price = float(self.market.open[nxt])
        if choice == BUY_HALF:
            ledger.buy_with_cash(0.5 * ledger.cash, price, nxt)
        elif choice == SELL_HALF and ledger.position > 0:
            ledger.trade(-0.5 * ledger.position, price, nxt)
        self._t = nxt
        close_prev = float(self.market.close[t])
        close = float(self.market.close[nxt])
        previous = self._value
        self._value = ledger.equity(close)
        reward = self._value - previous
        if self.reward_mode == "excess":
            reward -= self.initial_coins * (close - close_prev)
        terminated = self._value < self.min_value_fraction * self._start_value
        truncated = nxt >= self._end and not terminated
        if terminated or truncated:
            self._stop = "terminated" if terminated else "truncated"
        return self._observation(), float(reward) * self.reward_scale, bool(terminated), truncated, self._info()

    def observation_at(self, t: int, account: Any = None) -> np.ndarray:
        """The observation at bar ``t`` holding a :class:`~sb3_crypto.envs.observation.SpotAccount`'s
        cash and coins (the env's starting ones when left out)."""
        t = self._observable(t)
        account = SpotAccount.of(account)
        ledger = self.ledger
        ledger.reset(entry_price=float(self.market.close[t]))
        if account.cash is not None:
            ledger.cash = account.cash
        if account.coins is not None:
            ledger.position = account.coins
        self._t = t
        self._value = ledger.equity(float(self.market.close[t]))
        return self._observation()

    def describe_action(self, action: Any) -> dict[str, Any]:
        """Hold, buy with half the cash or sell half the coins (at the next open)."""
        choice = int(np.asarray(action).reshape(-1)[0])
        if choice not in (HOLD, BUY_HALF, SELL_HALF):
            raise ValueError(f"{type(self).__name__}: action must be 0 (hold), 1 (buy) or 2 (sell), got {action!r}")
        return {"meaning": self.action_meanings[choice]}

    def _observation(self) -> np.ndarray:
        obs = self._new_observation(self._t)
        k = self.observation_layout.window_dim
        obs[k] = min(self.ledger.cash / 10_000.0, self.obs_bound)
        obs[k + 1] = min(self.ledger.position, self.obs_bound)
        return obs

    def _info(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "timestamp": self.timestamp(),
            "bar": self._t,
            "equity": self._value,
            "cash": ledger.cash,
            "position": ledger.position,
            "fees_paid": ledger.fees_paid,
            "trades": ledger.n_trades,
            "start_value": self._start_value,
        }
