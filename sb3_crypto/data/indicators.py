"""Built-in indicators of the feature spec (see :mod:`sb3_crypto.data.pipeline`).

Each indicator is computed from the bars up to and including its own (causal), returns one column
per channel and leaves its warm-up (the bars before its lookback is filled) as leading NaN. Values
are made scale-free so one z-score fitted on the training warm-up stays meaningful as prices move:

=====================  =====================================================  ===============================
name (parameters)      value                                                  channels
=====================  =====================================================  ===============================
``rsi`` (period=14)    TA-Lib ``RSI(close)``, 0..100                          ``rsi_14``
``macd`` (fast=12,     TA-Lib ``MACD(close)``: macd, signal and histogram,    ``macd_12_26_9``,
slow=26, signal=9)     each divided by the close (a fraction of the price)    ``macd_signal_12_26_9``,
                                                                              ``macd_hist_12_26_9``
``atr`` (period=14)    TA-Lib ``ATR(high, low, close) / close``               ``atr_14``
``bollinger_width``    TA-Lib ``BBANDS(close, period, k, k)``:                ``bollinger_width_20_2``
(period=20, k=2)       ``(upper - lower) / middle``
``adx`` (period=14)    TA-Lib ``ADX(high, low, close)``, 0..100               ``adx_14``
``cci`` (period=20)    TA-Lib ``CCI(high, low, close)``                       ``cci_20``
``mfi`` (period=14)    TA-Lib ``MFI(high, low, close, volume)``, 0..100       ``mfi_14``
``willr`` (period=14)  TA-Lib ``WILLR(high, low, close)``, -100..0            ``willr_14``
``stoch`` (fastk=5,    TA-Lib ``STOCH(high, low, close)`` slow %K and %D      ``stoch_k_5_3_3``, ``stoch_d_5_3_3``
slowk=3, slowd=3)
``ema_ratio``          TA-Lib ``close / EMA(close, period) - 1``              ``ema_ratio_20``
(period=20)
``realized_vol``       rolling standard deviation (pandas, ``ddof=1``) of     ``realized_vol_24``
(period=24)            the last ``period`` one-bar log returns
``volume_zscore``      z-score of ``log(1 + volume)`` against the mean and    ``volume_zscore_48``
(period=48)            standard deviation (``ddof=0``) of the last ``period``
                       bars, the current one included; 0 when they are flat
``returns`` (k=1)      ``log(close_t / close_{t-k})``                         ``returns_4`` (k=4)
=====================  =====================================================  ===============================

TA-Lib is the ``ta-lib`` wheel (it bundles the C library), installed by the ``features`` extra:
``pip install 'sb3_crypto[features]'``. Its global "unstable period" settings
(``talib.set_unstable_period``) change RSI / ATR / ADX / EMA values; leave them at their defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords

#: The most bars one period may span (TA-Lib's own limit).
MAX_PERIOD = 100_000


def talib_module() -> Any:
    """The ``talib`` module, or an :class:`ImportError` saying which extra installs it."""
    try:
        import talib
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "the feature spec's TA-Lib indicators need the 'ta-lib' package: pip install 'sb3_crypto[features]'"
        ) from exc
    return talib


def _period(low: int = 2) -> Callable[[str, Any], int]:
    return keywords.check(keywords.integer, low=low, high=MAX_PERIOD)


def _number_label(value: float | int) -> str:
    """A parameter as it appears in a channel name: ``2`` for 2.0, ``2.5`` for 2.5."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Indicator:
    """A built-in indicator: its parameters (check and default), the columns it reads, its channel
    names and the function computing ``(n_bars, channels)`` float64 values from the bars."""

    name: str
    parameters: Mapping[str, tuple[Callable[[str, Any], Any], Any]]
    columns: tuple[str, ...]
    channel_names: Callable[[Mapping[str, Any]], tuple[str, ...]]
    compute: Callable[[pd.DataFrame, Mapping[str, Any]], np.ndarray]
    uses_talib: bool = True

    def channels(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """Channel names for these parameters (``rsi_14``)."""
        return self.channel_names(params)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return np.ascontiguousarray(frame[name].to_numpy(dtype="float64"))


def _hlc(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _column(frame, "high"), _column(frame, "low"), _column(frame, "close")


def _rsi(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    return talib_module().RSI(_column(frame, "close"), timeperiod=p["period"])[:, None]


def _macd(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    close = _column(frame, "close")
    macd, signal, hist = talib_module().MACD(
        close, fastperiod=p["fast"], slowperiod=p["slow"], signalperiod=p["signal"]
    )
    return np.stack((macd, signal, hist), axis=1) / close[:, None]


def _atr(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    high, low, close = _hlc(frame)
    return (talib_module().ATR(high, low, close, timeperiod=p["period"]) / close)[:, None]


def _bollinger_width(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    upper, middle, lower = talib_module().BBANDS(
        _column(frame, "close"), timeperiod=p["period"], nbdevup=p["k"], nbdevdn=p["k"], matype=0
    )
    return ((upper - lower) / middle)[:, None]


def _adx(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    return talib_module().ADX(*_hlc(frame), timeperiod=p["period"])[:, None]


def _cci(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    return talib_module().CCI(*_hlc(frame), timeperiod=p["period"])[:, None]


def _mfi(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    return talib_module().MFI(*_hlc(frame), _column(frame, "volume"), timeperiod=p["period"])[:, None]


def _willr(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    return talib_module().WILLR(*_hlc(frame), timeperiod=p["period"])[:, None]


def _stoch(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    k, d = talib_module().STOCH(
        *_hlc(frame),
        fastk_period=p["fastk"],
        slowk_period=p["slowk"],
        slowk_matype=0,
        slowd_period=p["slowd"],
        slowd_matype=0,
    )
    return np.stack((k, d), axis=1)


def _ema_ratio(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    close = _column(frame, "close")
    return (close / talib_module().EMA(close, timeperiod=p["period"]) - 1.0)[:, None]


def _log_returns(frame: pd.DataFrame) -> pd.Series:
    close = frame["close"].astype("float64")
    return np.log(close / close.shift(1))


def _realized_vol(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    period = p["period"]
    return _log_returns(frame).rolling(period, min_periods=period).std().to_numpy(dtype="float64")[:, None]


def _volume_zscore(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    period = p["period"]
    volume = np.log1p(frame["volume"].astype("float64"))
    rolling = volume.rolling(period, min_periods=period)
    mean = rolling.mean().to_numpy(dtype="float64")
    std = rolling.std(ddof=0).to_numpy(dtype="float64")
    values = volume.to_numpy(dtype="float64")
    flat = std <= 1e-12 * np.maximum(1.0, np.abs(mean))  # a window of equal volumes (also filled gaps)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(flat, 0.0, (values - mean) / np.where(flat, 1.0, std))
    z[np.isnan(mean)] = np.nan  # the warm-up stays NaN
    return z[:, None]


def _returns(frame: pd.DataFrame, p: Mapping[str, Any]) -> np.ndarray:
    close = frame["close"].astype("float64")
    return np.log(close / close.shift(p["k"])).to_numpy(dtype="float64")[:, None]


def _one(prefix: str, *names: str) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
    """A channel namer: ``prefix`` followed by the given parameters, joined by ``_``."""

    def channel_names(params: Mapping[str, Any]) -> tuple[str, ...]:
        return ("_".join([prefix, *(_number_label(params[name]) for name in names)]),)

    return channel_names


def _many(prefixes: tuple[str, ...], *names: str) -> Callable[[Mapping[str, Any]], tuple[str, ...]]:
    def channel_names(params: Mapping[str, Any]) -> tuple[str, ...]:
        suffix = "_".join(_number_label(params[name]) for name in names)
        return tuple(f"{prefix}_{suffix}" for prefix in prefixes)

    return channel_names


HLC = ("high", "low", "close")

#: Built-in indicators by name.
INDICATORS: dict[str, Indicator] = {
    indicator.name: indicator
    for indicator in (
        Indicator("rsi", {"period": (_period(), 14)}, ("close",), _one("rsi", "period"), _rsi),
        Indicator(
            "macd",
            {"fast": (_period(), 12), "slow": (_period(), 26), "signal": (_period(1), 9)},
            ("close",),
            _many(("macd", "macd_signal", "macd_hist"), "fast", "slow", "signal"),
            _macd,
        ),
        Indicator("atr", {"period": (_period(1), 14)}, HLC, _one("atr", "period"), _atr),
        Indicator(
            "bollinger_width",
            {"period": (_period(), 20), "k": (keywords.check(keywords.positive, high=100.0), 2)},
            ("close",),
            _one("bollinger_width", "period", "k"),
            _bollinger_width,
        ),
        Indicator("adx", {"period": (_period(), 14)}, HLC, _one("adx", "period"), _adx),
        Indicator("cci", {"period": (_period(), 20)}, HLC, _one("cci", "period"), _cci),
        Indicator("mfi", {"period": (_period(), 14)}, (*HLC, "volume"), _one("mfi", "period"), _mfi),
        Indicator("willr", {"period": (_period(), 14)}, HLC, _one("willr", "period"), _willr),
        Indicator(
            "stoch",
            {"fastk": (_period(1), 5), "slowk": (_period(1), 3), "slowd": (_period(1), 3)},
            HLC,
            _many(("stoch_k", "stoch_d"), "fastk", "slowk", "slowd"),
            _stoch,
        ),
        Indicator("ema_ratio", {"period": (_period(), 20)}, ("close",), _one("ema_ratio", "period"), _ema_ratio),
        Indicator(
            "realized_vol",
            {"period": (_period(), 24)},
            ("close",),
            _one("realized_vol", "period"),
            _realized_vol,
            uses_talib=False,
        ),
        Indicator(
            "volume_zscore",
            {"period": (_period(), 48)},
            ("volume",),
            _one("volume_zscore", "period"),
            _volume_zscore,
            uses_talib=False,
        ),
        Indicator("returns", {"k": (_period(1), 1)}, ("close",), _one("returns", "k"), _returns, uses_talib=False),
    )
}


def check_parameters(indicator: Indicator, name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The indicator's parameters from ``given`` (defaults filled in), each checked as ``name['param']``;
    unknown parameters and inconsistent ones (MACD's ``fast >= slow``) are refused."""
    unknown = [key for key in given if key not in indicator.parameters]
    if unknown:
        known = ", ".join(indicator.parameters) or "none"
        raise ValueError(
            f"{name} has unknown parameter(s) {', '.join(repr(key) for key in unknown)} for indicator "
            f"{indicator.name!r}; its parameters: {known}"
        )
    params = {
        key: check(f"{name}[{key!r}]", given[key]) if key in given else default
        for key, (check, default) in indicator.parameters.items()
    }
    if indicator.name == "macd" and params["fast"] >= params["slow"]:
        raise ValueError(f"{name}: macd needs fast < slow, got fast={params['fast']}, slow={params['slow']}")
    return params
