"""What every market environment shares: data, splits, the observation window and episode starts.

Observation layout (every environment): a flat ``float32`` vector made of

1. the normalised feature window, time-major: ``window_size`` rows (oldest first) of
   ``len(channels)`` values each, i.e. ``obs[: window_size * n_channels].reshape(window_size, n_channels)``;
2. the environment's account features (names in ``observation_layout.account``);
3. any extra block the environment declares (``observation_layout.extra``).

The window ends with the bar whose close the decision is taken on; ``info["timestamp"]`` is that bar's
time. Feature extractors read :class:`ObservationLayout` instead of hard-coding offsets.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NoReturn

import gymnasium as gym
import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.features import FeatureNormalizer
from sb3_crypto.data.loaders import DataError, freq_str, infer_freq
from sb3_crypto.data.market import SPLITS, DataSource, Market, build_market
from sb3_crypto.envs.observation import AccountState, make_spec

#: Smallest and largest starting cash, balance or budget an env accepts (quote currency).
MIN_CASH = 1e-6
MAX_CASH = 1e15
#: Largest ``reward_scale`` an env accepts (larger ones risk overflowing rewards).
MAX_REWARD_SCALE = 1e6


@dataclass(frozen=True)
class ObservationLayout:
    """Where each block sits in the flat observation vector."""

    window_size: int
    channels: tuple[str, ...]
    account: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @property
    def n_channels(self) -> int:
        """Channels per bar."""
        return len(self.channels)

    @property
    def window_dim(self) -> int:
        """Length of the flattened window block."""
        return self.window_size * self.n_channels

    @property
    def size(self) -> int:
        """Total observation length."""
        return self.window_dim + len(self.account) + len(self.extra)

    def split(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(window, rest)``: window shaped ``(..., window_size, n_channels)``, rest = account + extra."""
        window = obs[..., : self.window_dim].reshape(*obs.shape[:-1], self.window_size, self.n_channels)
        return window, obs[..., self.window_dim :]

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly description."""
        out = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in out.items()}


@dataclass(frozen=True)
class PortfolioLayout(ObservationLayout):
    """Layout of a multi-asset observation: one window per asset, then the account block.

    The flat vector is

    1. the per-asset windows, asset-major: ``obs[: n_assets * window_size * n_channels]``
       reshaped to ``(n_assets, window_size, n_channels)`` (oldest bar first in each window);
    2. ``account``: the current portfolio weights, cash first (``n_assets + 1`` names);
    3. ``extra`` (optional).

    ``assets`` names the assets in the order of the windows. Extractors that are equivariant to the
    asset order (EIIE) read ``n_assets`` and treat every asset's window with shared weights.
    """

    assets: tuple[str, ...] = ()

    @property
    def n_assets(self) -> int:
        """Number of assets (windows)."""
        return len(self.assets)

    @property
    def window_dim(self) -> int:
        """Length of the flattened block of all assets' windows."""
        return self.n_assets * self.window_size * self.n_channels

    def split(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(windows, rest)``: windows shaped ``(..., n_assets, window_size, n_channels)``."""
        windows = obs[..., : self.window_dim].reshape(*obs.shape[:-1], self.n_assets, self.window_size, self.n_channels)
        return windows, obs[..., self.window_dim :]


def episode_bounds(
    np_random: np.random.Generator, first_bar: int, last_bar: int, episode_length: int | None
) -> tuple[int, int]:
    """``(start, end)`` of an episode over the decision bars ``first_bar..last_bar``: the whole range
    when ``episode_length`` is None, else ``episode_length`` decisions from a random start drawn with
    the env's ``np_random`` (every env draws its starts this way)."""
    if episode_length is None:
        return first_bar, last_bar + 1
    start = int(np_random.integers(first_bar, last_bar - episode_length + 2))
    return start, start + episode_length


def advance_cursor(cursor: int, count: int, restart: bool) -> int:
    """Next item of a sequential (evaluation) pass over ``count`` episodes; a seeded reset restarts."""
    return 0 if restart else (cursor + 1) % count


def money(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """An amount of money or coins (starting cash, balance, budget, coins) in ``[1e-6, 1e15]`` (or 0
    when ``allow_zero``): smaller amounts buy nothing (units underflow), larger ones risk overflow."""
    span = keywords.interval(MIN_CASH, MAX_CASH, high_inclusive=True)
    expected = f"{name} must be {'0 or ' if allow_zero else ''}a number {span}, got {keywords.describe(value)}"
    try:
        amount = keywords.real(name, value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(expected) from None
    if allow_zero and amount == 0.0:
        return 0.0
    if not MIN_CASH <= amount <= MAX_CASH:
        raise ValueError(expected)
    return amount


class EpisodeGuard:
    """``step()`` only inside an episode: before the first ``reset()`` and after an episode ended
    (terminated or truncated) it raises :class:`RuntimeError` instead of trading on (bars past the
    episode, the next split, or past the end of the arrays).

    The step hot path pays one truthiness test: ``if self._stop: self._refuse_step()``. ``reset``
    sets ``_stop = ""``; the step that ends an episode sets it to ``"terminated"`` or ``"truncated"``.
    """

    #: Why ``step()`` may not run now: ``""`` inside an episode, else ``"reset"`` (never reset),
    #: ``"terminated"`` or ``"truncated"``.
    _stop: str = "reset"

    def _refuse_step(self) -> NoReturn:
        name = type(self).__name__
        if self._stop == "reset":
            raise RuntimeError(f"{name}: step() before reset() - call reset() first")
        raise RuntimeError(f"{name}: step() after the episode ended ({self._stop}) - call reset() first")


class RecordsSettings:
    """Keeps the keyword arguments an env was made with in ``env.settings`` (positional ones by their
    names, ``**market_kwargs`` flattened), whether it was made by ``gym.make`` or directly. The
    observation spec saved with a model records them; ``reconfigure`` updates them."""

    settings: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        self.settings = _bound_settings(cls, args, kwargs)
        return self


def _bound_settings(cls: type, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``args`` and ``kwargs`` of ``cls(...)`` as one mapping of keyword names."""
    if not args:
        return dict(kwargs)
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except TypeError:  # __init__ raises the proper error
        return dict(kwargs)
    settings: dict[str, Any] = {}
    parameters = inspect.signature(cls.__init__).parameters
    for name, value in list(bound.arguments.items())[1:]:
        if parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            settings.update(value)
        else:
            settings[name] = value
    return settings


class Reconfigurable:
    """Change an environment's settings between episodes (curriculum learning).

    ``env.reconfigure(**changes)`` (reachable through a VecEnv's ``env_method``) takes effect at the
    next ``reset``: the env is rebuilt from the keyword arguments it was made with (``gym.make``
    records them in ``env.spec.kwargs``) updated by ``changes``. Observation and action spaces must
    stay the same, so a policy keeps working.
    """

    _pending: dict[str, Any] | None = None

    def reconfigure(self, **changes: Any) -> None:
        """Schedule new settings for the next episode."""
        if getattr(self, "spec", None) is None:
            raise ValueError(f"{type(self).__name__}: create the env with gym.make to reconfigure it")
        self._pending = {**(self._pending or {}), **changes}

    def _apply_pending(self) -> None:
        if not self._pending:
            return
        spec = self.spec  # type: ignore[attr-defined]
        kwargs = {**spec.kwargs, **self._pending}
        spaces = (self.observation_space, self.action_space)  # type: ignore[attr-defined]
        self._pending = None
        type(self).__init__(self, **kwargs)  # type: ignore[misc]
        self.settings = dict(kwargs)
        if self.observation_space.shape != spaces[0].shape or self.action_space != spaces[1]:  # type: ignore[attr-defined]
            raise ValueError(f"{type(self).__name__}: reconfiguring may not change the observation or action space")
        spec.kwargs.update(kwargs)


class LayoutBox(gym.spaces.Box):
    """A ``Box`` observation space that carries its :class:`ObservationLayout` (``.layout``).

    It is still a ``Box`` for SB3 and Gymnasium; feature extractors read ``layout`` to find the
    window and account blocks, and the layout is saved with the model.
    """

    def __init__(self, bound: float, layout: ObservationLayout) -> None:
        super().__init__(-bound, bound, (layout.size,), np.float32)
        self.layout = layout

    def __repr__(self) -> str:
        layout = self.layout
        return f"LayoutBox({layout.window_size}x{layout.n_channels} window + {layout.size - layout.window_dim} more)"


class MarketEnv(RecordsSettings, EpisodeGuard, Reconfigurable, gym.Env):
    """Base class: builds the :class:`Market`, picks episode starts and slices observation windows.

    Subclasses define the action space, the account features and the step logic over a
    :class:`~sb3_crypto.envs.ledger.Ledger`.

    :param data: ``"synthetic"`` (default), a file path any :func:`~sb3_crypto.data.load_ohlcv` format,
        or a DataFrame.
    :param window_size: bars in the observation window (an integer >= 1).
    :param episode_length: decisions per episode (an integer >= 1), episodes start at random bars of the
        split (training); ``None`` walks the whole split once from its first decision bar (evaluation).
    :param split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``.
    :param synthetic_kwargs: options of :func:`~sb3_crypto.data.synthetic_ohlcv` when ``data="synthetic"``
        (unknown names and out-of-range values are refused).
    :param asset: asset to select from a long-format file or frame (not with synthetic data).
    :param fill_missing: fill gaps by carrying the last close forward (see ``load_ohlcv``).
    :param split_fractions: train / validation / test shares (three numbers >= 0 summing to 1).
    :param split_dates: ``(validation_start, test_start)`` instead of fractions; both inside the data,
        increasing, every split at least one bar.
    :param norm_warmup: leading part of the training split the normaliser is fitted on and no episode
        steps through (a fraction of the training split in (0, 1) or a bar count >= 2).
    :param features: ``"zscore"`` (default), ``"pct_change"`` (S4) or a feature spec mapping (``base``,
        ``indicators`` with built-ins by name, user functions by ``module:function`` path and higher
        ``timeframe`` s, ``leak_check``), see :mod:`sb3_crypto.data.pipeline` and
        :func:`~sb3_crypto.data.build_market`. Every channel is named in ``observation_layout.channels``.
    :param extra_features: deprecated: names of observation slots that carry nothing (they are 0; before
        this release they held the next bars' features by accident). A non-empty value warns
        (:class:`DeprecationWarning`) and keeps those zero slots so that older models keep their
        observation size; compute features with ``features={'indicators': [...]}`` instead.
    :param normalizer: fitted feature statistics (a ``FeatureNormalizer`` or its ``to_dict()``) used
        instead of fitting them on this data's warm-up: a trained env's statistics applied to other
        bars (the observation builder uses it). ``norm_warmup`` is then unused.

    Every keyword is checked by name (:mod:`sb3_crypto.data.keywords`): a bad value raises
    :class:`TypeError` or :class:`ValueError` naming the keyword, its value and the accepted range;
    numbers and booleans given as strings (from YAML or a command line) are converted.
    """

    metadata: dict[str, Any] = {"render_modes": []}
    account_features: tuple[str, ...] = ()
    #: What evaluating this env measures: ``"equity_curve"`` (one pass over a split, as returns),
    #: ``"sessions"`` (PnL per session) or ``"dca_cycles"`` (saving per DCA cycle). The backtester,
    #: the risk callbacks and RL Zoo's evaluation read it instead of the env id.
    evaluation: ClassVar[str] = "equity_curve"
    #: True when evaluation visits every episode of the split once, in order (``sequential=True``);
    #: false when one episode walks the whole split (``episode_length=None``).
    sequential_evaluation: ClassVar[bool] = False
    #: The keyword that sets ``episode_length`` (named in errors; the DCA env calls it ``cycle_length``).
    _episode_keyword: ClassVar[str] = "episode_length"
    #: What the account features are made of (see :mod:`sb3_crypto.envs.observation`).
    account_state: ClassVar[type[AccountState]] = AccountState
    #: Keywords that choose the data and the split rather than how observations are made; an
    #: observer (:meth:`observer`) replaces them by the bars it is given.
    data_keywords: ClassVar[tuple[str, ...]] = (
        "data",
        "synthetic_kwargs",
        "asset",
        "fill_missing",
        "split",
        "split_fractions",
        "split_dates",
        "norm_warmup",
        "normalizer",
    )
    #: True for an env made by :meth:`observer` (no episodes: only ``observation_at``).
    _observer: bool = False

    def __init__(
        self,
        data: DataSource = "synthetic",
        *,
        window_size: int = 32,
        episode_length: int | None = 256,
        split: str = "train",
        synthetic_kwargs: Mapping[str, Any] | None = None,
        asset: str | None = None,
        fill_missing: bool = False,
        split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
        split_dates: Sequence[str] | None = None,
        norm_warmup: float | int = 0.1,
        features: str | Mapping[str, Any] = "zscore",
        extra_features: Sequence[str] = (),
        normalizer: FeatureNormalizer | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        window_size = keywords.integer("window_size", window_size, low=1)
        episode_length = keywords.optional_integer(self._episode_keyword, episode_length, low=1)
        split = keywords.choice("split", split, SPLITS)
        extra_features = tuple(
            keywords.text(f"extra_features[{k}]", name)
            for k, name in enumerate(keywords.items("extra_features", extra_features, what="names"))
        )
        if extra_features:
            warnings.warn(
                f"extra_features={list(extra_features)!r} only adds observation slots that are always 0 and will be "
                "removed; compute features with features={'indicators': [...]} (README, 'Features')",
                DeprecationWarning,
                stacklevel=2,
            )
        self.market: Market = build_market(
            data,
            synthetic_kwargs=synthetic_kwargs,
            asset=asset,
            fill_missing=fill_missing,
            split_fractions=split_fractions,
            split_dates=split_dates,
            norm_warmup=norm_warmup,
            features=features,
            normalizer=normalizer,
        )
        self.window_size = window_size
        self.split = split
        self.episode_length = episode_length
        if self._observer:  # any bar with a full window is observable, the last one included
            self.first_bar, self.last_bar = window_size - 1 + self.market.lookback, self.market.n_bars - 1
        else:
            self.first_bar, self.last_bar = self.market.decision_range(split, self.window_size)
        available = self.last_bar - self.first_bar + 1
        if self.episode_length is not None and self.episode_length > available and not self._observer:
            name = self._episode_keyword
            warmup = self.market.features_start
            indicators = f", the features' warm-up ends at row {warmup}" if warmup else ""
            raise DataError(
                f"{self.market.frame.attrs.get('source', 'data')}: {name}={self.episode_length} exceeds the "
                f"{available} decision bars of split {split!r} (window_size={window_size}, "
                f"norm_warmup={norm_warmup!r}, {self.market.split_rule}{indicators}); shorten {name}"
                + (" or use episode_length=None" if name == "episode_length" else "")
            )
        self.observation_layout = ObservationLayout(
            self.window_size, self.market.channels, tuple(self.account_features), extra_features
        )
        # Features are clipped by the normaliser; account features are clipped to the same bound.
        self.obs_bound = float(self.market.normalizer.clip)
        self.observation_space = LayoutBox(self.obs_bound, self.observation_layout)
        self._features = self.market.features
        # Flat copy padded by the non-window slots, so a fresh observation is one slice + one copy.
        n_tail = self.observation_layout.size - self.observation_layout.window_dim
        self._padded_features = np.concatenate((self._features.reshape(-1), np.zeros(n_tail, dtype=np.float32)))
        self._window_start_offset = (self.window_size - 1) * self.observation_layout.n_channels
        self._window_stop_offset = self.observation_layout.n_channels + n_tail
        # The slice for bar t runs into bar t + 1's features past the window; the account slots are
        # overwritten by each env, the deprecated extra slots must be cleared (0 = no extra slots).
        self._extra_start = self.observation_layout.size - len(extra_features) if extra_features else 0
        self._times: list = self.market.times.tolist()  # list indexing is the fastest lookup
        self._t = self.first_bar
        self._start = self.first_bar
        self._end = self.last_bar + 1

    def _begin_episode(self) -> int:
        """Pick the first decision bar and the bar the episode ends on; returns the start."""
        if self._observer:
            raise RuntimeError(
                f"{type(self).__name__}: an observer env has no episodes; use observation_at(t, account)"
            )
        start, self._end = episode_bounds(self.np_random, self.first_bar, self.last_bar, self.episode_length)
        self._start = self._t = start
        return start

    @property
    def n_decisions(self) -> int:
        """Decisions in the current episode."""
        return self._end - self._start

    def _window(self, t: int) -> np.ndarray:
        """Flattened normalised window of bars ``t - window_size + 1 .. t`` (a view)."""
        return self._features[t - self.window_size + 1 : t + 1].reshape(-1)

    def _new_observation(self, t: int) -> np.ndarray:
        """A fresh observation array for bar ``t``: the window filled in, the remaining slots to be set."""
        start = t * self.observation_layout.n_channels
        obs = self._padded_features[start - self._window_start_offset : start + self._window_stop_offset].copy()
        if self._extra_start:
            obs[self._extra_start :] = 0.0
        return obs

    def timestamp(self, t: int | None = None) -> np.datetime64:
        """Timestamp of bar ``t`` (default: the latest bar in the current observation)."""
        return self._times[self._t if t is None else t]

    # ------------------------------------------------------------------ observing recent bars
    @classmethod
    def observer(cls, bars: pd.DataFrame, settings: Mapping[str, Any], normalizer: FeatureNormalizer) -> MarketEnv:
        """An env of this class over ``bars`` (a canonical frame of recent raw bars) made with a trained
        env's ``settings`` (its keyword arguments) and fitted ``normalizer``, to observe rather than to
        trade: :meth:`observation_at` answers for any bar with a full window, the last one included.
        The keywords that chose the training data and split (:attr:`data_keywords`) are replaced."""
        env = cls.__new__(cls)
        env._observer = True
        kwargs = {name: value for name, value in settings.items() if name not in cls.data_keywords}
        if isinstance(kwargs.get("features"), Mapping):
            # The spec was leak-checked when the trained env was built; checking it again on every
            # request's bars would only repeat that work (about 5x the features' cost).
            kwargs["features"] = {**kwargs["features"], "leak_check": False}
        env.__init__(bars, **kwargs, split="all", normalizer=normalizer)  # type: ignore[misc]
        return env

    def observation_at(self, t: int, account: Any = None) -> np.ndarray:
        """The observation at bar ``t`` for an account state (``self.account_state``, a mapping of its
        fields or ``None`` for a fresh account): sets the ledger and episode state and returns the env's
        own observation. Use it on an env that is not stepping (an :meth:`observer`), since the state
        it sets replaces the current episode's."""
        raise NotImplementedError(f"{type(self).__name__} does not define observation_at")

    def describe_action(self, action: Any) -> dict[str, Any]:
        """What ``action`` does in the current state: ``{"meaning": text, ...}``."""
        raise NotImplementedError(f"{type(self).__name__} does not define describe_action")

    def _observable(self, t: Any) -> int:
        """``t`` checked: a bar with a full window of data (``window_size - 1 <= t < n_bars``)."""
        return keywords.integer("t", t, low=self.window_size - 1, high=self.market.n_bars - 1)

    def observation_spec(self) -> dict[str, Any]:
        """What builds this env's observations from raw bars (see :mod:`sb3_crypto.envs.observation`):
        its id and keyword arguments, the fitted normaliser statistics, the layout, the account state
        and the bars needed (``window_size + lookback``, spaced as this env's data)."""
        market = self.market
        lookback = int(market.lookback)
        needed = self.window_size + lookback
        train_start = market.splits["train"][0]
        fitted = None
        if market.warmup_end > train_start:
            fitted = {
                "source": str(market.frame.attrs.get("source", "data")),
                "first_bar": pd.Timestamp(market.times[train_start]).isoformat(),
                "last_bar": pd.Timestamp(market.times[market.warmup_end - 1]).isoformat(),
                "bars": int(market.warmup_end - train_start),
            }
        bars = {
            "needed": needed,
            "most": None,
            "window_size": self.window_size,
            "lookback": lookback,
            "freq": freq_str(infer_freq(market.frame.index)),
            "close_only": bool(market.frame.attrs.get("close_only", False)),
            "requirement": f"at least {needed} bars (window_size {self.window_size} + feature lookback {lookback})",
        }
        return make_spec(self, market.normalizer, bars, fitted)
