"""The embedded synthetic market: seeded OHLCV bars that behave like crypto.

Ingredients (all per bar, log returns):

* a three-state Markov regime (bull / bear / range) with its own drift and volatility multiplier;
* GARCH(1, 1) volatility clustering around a base annual volatility;
* Bernoulli jumps of ``jump_scale`` sigmas (fat tails), kept out of the GARCH recursion so the
  variance stays stationary;
* an optional **planted, learnable signal** ``momentum`` (trend persistence): the expected return of
  bar t is ``momentum * sigma_t * tanh(m_{t-1})`` where ``m`` is an exponential moving average of past
  standardised returns (half-life ``momentum_halflife`` bars), so moves - large ones, such as jumps,
  most of all - tend to continue. A policy that holds the sign of recent returns earns it; with
  ``momentum=0`` the market has no exploitable structure.

Bars: ``open`` is the previous close times a tiny independent gap (so the signal is not handed out
between decision and fill), ``close = open * exp(r)``, ``high``/``low`` extend beyond the body,
volume rises with absolute returns, ``vwap`` lies inside the bar and ``trades`` follows volume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.keywords import check, integer, real

_REGIME_DRIFT = np.array([0.6, -0.6, 0.0])  # annualised drift by regime: bull, bear, range
_REGIME_VOL = np.array([1.0, 1.3, 0.7])  # volatility multiplier by regime


#: Most bars a synthetic market may have (about 1,100 years of hourly bars).
MAX_BARS = 10_000_000


def bar_spacing(name: str, value: Any) -> str | pd.Timedelta:
    """A positive bar spacing as a pandas offset string (``"1h"``, ``"1min"``, ``"1D"``) or Timedelta."""
    expected = f"{name} must be a positive bar spacing such as '1h', '1min' or '1D'"
    if not isinstance(value, (str, pd.Timedelta)):
        raise TypeError(f"{expected}, got {keywords.describe(value)}")
    try:
        step = pd.Timedelta(value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{expected}, got {keywords.describe(value)}") from None
    if step is pd.NaT or pd.isna(step) or step <= pd.Timedelta(0):
        raise ValueError(f"{expected}, got {keywords.describe(value)}")
    return value


def _garch(name: str, value: Any) -> tuple[float, float]:
    alpha, beta = (real(f"{name}[{k}]", v, low=0.0) for k, v in enumerate(keywords.items(name, value, 2, "numbers")))
    if not alpha + beta < 1:
        raise ValueError(f"{name}=(alpha, beta) needs alpha, beta >= 0 and alpha + beta < 1, got {value!r}")
    return alpha, beta


#: The synthetic market's bars lie in this span (pandas' nanosecond timestamps end in 2262).
EARLIEST_START = pd.Timestamp("1970-01-01", tz="UTC")
LATEST_END = pd.Timestamp("2262-01-01", tz="UTC")


def _start(name: str, value: Any) -> Any:
    stamp = keywords.timestamp(name, value)
    if not EARLIEST_START <= stamp < LATEST_END:
        raise ValueError(
            f"{name} must be a time from {EARLIEST_START.date()} to {LATEST_END.date()}, got {keywords.describe(value)}"
        )
    return value


#: Every option of :func:`synthetic_ohlcv` with its check (``synthetic_kwargs`` of the envs).
SYNTHETIC_OPTIONS = {
    "n_bars": check(integer, low=2, high=MAX_BARS),
    "freq": bar_spacing,
    "seed": check(integer, low=0),
    "start": _start,
    "start_price": check(real, low=1e-6, high=1e12, high_inclusive=True),
    "annual_vol": check(real, low=1e-4, high=10.0, high_inclusive=True),
    "regime_length": check(real, low=1.0, high=1e9, low_inclusive=False, high_inclusive=True),
    "garch": _garch,
    "jump_prob": check(real, low=0.0, high=1.0, high_inclusive=True),
    "jump_scale": check(real, low=0.0, high=100.0, high_inclusive=True),
    "momentum": check(real, low=-5.0, high=5.0, high_inclusive=True),
    "momentum_halflife": check(real, low=0.0, high=1e9, low_inclusive=False, high_inclusive=True),
    "base_volume": check(real, low=0.0, high=1e9, low_inclusive=False, high_inclusive=True),
}


def synthetic_options(options: Mapping[str, Any] | None, name: str = "synthetic_kwargs") -> dict[str, Any]:
    """Check and convert options of :func:`synthetic_ohlcv`; unknown names and bad values are refused
    naming ``synthetic_kwargs['option']``."""
    return keywords.options(name, options, SYNTHETIC_OPTIONS)


def periods_per_year(freq: str | pd.Timedelta) -> float:
    """Bars per year for a bar spacing; crypto trades 365 days a year (daily → 365, hourly → 8760)."""
    return pd.Timedelta(365, unit="D") / pd.Timedelta(freq)


def synthetic_ohlcv(
    n_bars: int = 20_000,
    freq: str = "1h",
    seed: int = 0,
    *,
    start: str = "2020-01-01",
    start_price: float = 20_000.0,
    annual_vol: float = 0.7,
    regime_length: float = 600.0,
    garch: tuple[float, float] = (0.08, 0.9),
    jump_prob: float = 0.003,
    jump_scale: float = 6.0,
    momentum: float = 0.0,
    momentum_halflife: float = 12.0,
    base_volume: float = 100.0,
) -> pd.DataFrame:
    """Generate ``n_bars`` reproducible bars in the canonical layout of :func:`load_ohlcv`.

    :param n_bars: number of bars.
    :param freq: bar spacing as a pandas offset string (``"1h"``, ``"1min"``, ``"1D"``).
    :param seed: seed of the generator; the same arguments always give the same frame.
    :param annual_vol: base annualised volatility (fraction, 0.7 = 70 %).
    :param regime_length: mean number of bars a regime lasts.
    :param garch: GARCH(1, 1) ``(alpha, beta)``; ``alpha + beta < 1``.
    :param jump_prob: probability of a jump per bar; jump size is ``jump_scale`` sigmas (normal).
    :param momentum: strength of the planted trend signal in units of sigma (0 disables it).
    :param momentum_halflife: half-life in bars of the moving average the signal follows.
    :param base_volume: typical volume per bar (units of the base asset).
    """
    given = {
        "n_bars": n_bars,
        "freq": freq,
        "seed": seed,
        "start": start,
        "start_price": start_price,
        "annual_vol": annual_vol,
        "regime_length": regime_length,
        "garch": garch,
        "jump_prob": jump_prob,
        "jump_scale": jump_scale,
        "momentum": momentum,
        "momentum_halflife": momentum_halflife,
        "base_volume": base_volume,
    }
    checked = {name: SYNTHETIC_OPTIONS[name](f"synthetic_ohlcv: {name}", value) for name, value in given.items()}
    n_bars, seed, garch = checked["n_bars"], checked["seed"], checked["garch"]
    start_price, annual_vol, regime_length = checked["start_price"], checked["annual_vol"], checked["regime_length"]
    jump_prob, jump_scale, momentum = checked["jump_prob"], checked["jump_scale"], checked["momentum"]
    momentum_halflife, base_volume = checked["momentum_halflife"], checked["base_volume"]
    alpha, beta = garch
    try:
        fits = keywords.timestamp("start", start) + (n_bars - 1) * pd.Timedelta(freq) < LATEST_END
    except (ValueError, OverflowError):
        fits = False
    if not fits:
        raise ValueError(f"synthetic_ohlcv: {n_bars} bars of {freq} from start={start!r} end after {LATEST_END.date()}")
    rng = np.random.default_rng(seed)
    per_year = periods_per_year(freq)
    base_sigma = annual_vol / np.sqrt(per_year)
    base_var = base_sigma**2
    omega = base_var * (1.0 - alpha - beta)
    switch_prob = 1.0 / regime_length

    shocks = rng.standard_normal(n_bars)
    switches = rng.random(n_bars) < switch_prob
    new_regimes = rng.integers(0, 3, n_bars)
    jumps = (rng.random(n_bars) < jump_prob) * rng.standard_normal(n_bars) * jump_scale

    returns = np.empty(n_bars)
    sigmas = np.empty(n_bars)
    regime = int(rng.integers(0, 3))
    var = base_var
    eps_prev = 0.0
    ema = 0.0
    decay = 0.5 ** (1.0 / momentum_halflife)
    for t in range(n_bars):
        if switches[t]:
            regime = int(new_regimes[t])
        var = omega + alpha * eps_prev * eps_prev + beta * var
        sigma = np.sqrt(var) * _REGIME_VOL[regime]
        drift = _REGIME_DRIFT[regime] / per_year + momentum * sigma * np.tanh(ema)
        shock = shocks[t] + jumps[t]
        eps = sigma * shock
        returns[t] = drift + eps
        sigmas[t] = sigma
        # Only the Gaussian part feeds GARCH: with jumps in the recursion alpha * E[shock^2] + beta
        # can exceed 1 and the variance explodes.
        eps_prev = sigma * shocks[t] / _REGIME_VOL[regime]
        ema = decay * ema + (1.0 - decay) * 2.0 * returns[t] / sigma

    gaps = rng.standard_normal(n_bars) * 0.05 * sigmas
    gaps[0] = 0.0
    log_close = np.log(start_price) + np.cumsum(returns + gaps)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # checked below
        close = np.exp(log_close)
        open_ = np.exp(log_close - returns)
        body_high = np.maximum(open_, close)
        body_low = np.minimum(open_, close)
        high = body_high * np.exp(np.abs(rng.standard_normal(n_bars)) * 0.5 * sigmas)
        low = body_low * np.exp(-np.abs(rng.standard_normal(n_bars)) * 0.5 * sigmas)
        activity = 1.0 + 3.0 * np.abs(returns) / sigmas
        volume = base_volume * activity * np.exp(0.3 * rng.standard_normal(n_bars))
    if not (np.isfinite(high).all() and np.isfinite(volume).all() and (low > 0).all()):
        raise ValueError(
            f"synthetic_ohlcv: prices or volumes leave the floating-point range over {n_bars} bars with "
            f"start_price={start_price}, annual_vol={annual_vol}, momentum={momentum}; use fewer bars or milder "
            "settings"
        )
    weight = rng.random(n_bars)
    vwap = np.clip(weight * (high + low) / 2 + (1 - weight) * close, low, high)
    trades = rng.poisson(volume * 20.0).astype("float64")

    index = pd.date_range(start=start, periods=n_bars, freq=freq, tz="UTC", name="timestamp")
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": vwap,
            "trades": trades,
        },
        index=index,
    )
    frame.attrs.update(
        source=f"synthetic(seed={seed}, n_bars={n_bars}, freq={freq}, momentum={momentum})",
        format="synthetic",
        close_only=False,
        n_gaps=0,
        freq=freq,
    )
    return frame


# ---------------------------------------------------------------------------------------------- panels
#: Planted cross-sectional signals of :func:`synthetic_panel`.
PANEL_SIGNALS = ("none", "reversal", "momentum")
#: Most assets a synthetic panel may have.
MAX_PANEL_ASSETS = 1_000


def _signal_name(name: str, value: Any) -> str:
    return keywords.choice(name, value, PANEL_SIGNALS)


#: Every option of :func:`synthetic_panel` with its check (``synthetic_kwargs`` of the portfolio env).
PANEL_OPTIONS = {
    "n_assets": check(integer, low=2, high=MAX_PANEL_ASSETS),
    "n_bars": check(integer, low=2, high=MAX_BARS),
    "freq": bar_spacing,
    "seed": check(integer, low=0),
    "start": _start,
    "n_clusters": check(integer, low=1, high=MAX_PANEL_ASSETS),
    "market_vol": check(real, low=0.0, high=10.0, high_inclusive=True),
    "cluster_vol": check(real, low=0.0, high=10.0, high_inclusive=True),
    "idio_vol": check(real, low=1e-4, high=10.0, high_inclusive=True),
    "market_drift": check(real, low=-10.0, high=10.0, high_inclusive=True),
    "signal": _signal_name,
    "signal_strength": check(real, low=0.0, high=5.0, high_inclusive=True),
    "signal_halflife": check(real, low=0.0, high=1e9, low_inclusive=False, high_inclusive=True),
    "base_volume": check(real, low=0.0, high=1e9, low_inclusive=False, high_inclusive=True),
}


def panel_options(options: Mapping[str, Any] | None, name: str = "synthetic_kwargs") -> dict[str, Any]:
    """Check and convert options of :func:`synthetic_panel`; unknown names and bad values are refused
    naming ``synthetic_kwargs['option']``."""
    return keywords.options(name, options, PANEL_OPTIONS)


def synthetic_panel(
    n_assets: int = 8,
    n_bars: int = 3_000,
    freq: str = "1D",
    seed: int = 0,
    *,
    start: str = "2015-01-01",
    n_clusters: int = 2,
    market_vol: float = 0.6,
    cluster_vol: float = 0.3,
    idio_vol: float = 0.5,
    market_drift: float = 0.1,
    signal: str = "none",
    signal_strength: float = 0.0,
    signal_halflife: float = 3.0,
    base_volume: float = 100.0,
) -> dict[str, pd.DataFrame]:
    """Reproducible bars of ``n_assets`` correlated assets (``{"A00": frame, ...}``, canonical frames
    on one clock), for the portfolio env.

    Log return of asset ``i`` on bar ``t``: ``beta_i * m_t + c_{g(i), t} + mu_{i, t} + e_{i, t}`` with a
    common market factor ``m`` (annual volatility ``market_vol``, drift ``market_drift``), one factor
    per cluster ``c`` (assets are dealt round-robin into ``n_clusters`` clusters, ``cluster_vol``),
    betas drawn in [0.7, 1.3], and Student-t (4 degrees of freedom, fat tails) idiosyncratic noise
    ``e`` of annual volatility ``idio_vol``.

    The **planted cross-sectional signal** ``mu`` (``signal_strength`` in units of the idiosyncratic
    sigma; ``signal="none"`` or strength 0: no exploitable structure) sums to zero across assets, so
    an equal-weight portfolio does not earn it:

    * ``"reversal"``: ``mu_{i,t} = -strength * sigma * d_{i,t-1}``, where ``d`` is the asset's last
      log return minus the cross-sectional mean, in sigmas: last bar's losers gain on this bar;
    * ``"momentum"``: ``mu_{i,t} = +strength * sigma * tanh(x_{i,t-1})``, centred across assets, where ``x``
      is an exponential average (half-life ``signal_halflife`` bars) of ``d``: recent winners keep winning.

    Bars: ``open`` is the previous close times a tiny independent gap (the signal is not handed out
    between decision and fill), ``close = open * exp(r)``, ``high`` / ``low`` beyond the body and
    volume rising with the absolute return.
    """
    given = {
        "n_assets": n_assets,
        "n_bars": n_bars,
        "freq": freq,
        "seed": seed,
        "start": start,
        "n_clusters": n_clusters,
        "market_vol": market_vol,
        "cluster_vol": cluster_vol,
        "idio_vol": idio_vol,
        "market_drift": market_drift,
        "signal": signal,
        "signal_strength": signal_strength,
        "signal_halflife": signal_halflife,
        "base_volume": base_volume,
    }
    o = {name: PANEL_OPTIONS[name](f"synthetic_panel: {name}", value) for name, value in given.items()}
    n_assets, n_bars = o["n_assets"], o["n_bars"]
    try:
        fits = keywords.timestamp("start", start) + (n_bars - 1) * pd.Timedelta(freq) < LATEST_END
    except (ValueError, OverflowError):
        fits = False
    if not fits:
        raise ValueError(f"synthetic_panel: {n_bars} bars of {freq} from start={start!r} end after {LATEST_END.date()}")
    rng = np.random.default_rng(o["seed"])
    root = np.sqrt(periods_per_year(freq))
    sigma_m, sigma_c, sigma_e = o["market_vol"] / root, o["cluster_vol"] / root, o["idio_vol"] / root
    drift = o["market_drift"] / root**2
    betas = rng.uniform(0.7, 1.3, n_assets)
    clusters = np.arange(n_assets) % o["n_clusters"]
    market = drift + sigma_m * rng.standard_normal(n_bars)
    cluster = sigma_c * rng.standard_normal((n_bars, o["n_clusters"]))
    noise = sigma_e * rng.standard_t(4, (n_bars, n_assets)) / np.sqrt(2.0)  # t(4) has variance 2
    common = market[:, None] * betas[None, :] + cluster[:, clusters]
    strength = o["signal_strength"] if o["signal"] != "none" else 0.0
    returns = common + noise
    if strength:
        decay = 0.5 ** (1.0 / o["signal_halflife"])
        average = np.zeros(n_assets)
        for t in range(1, n_bars):
            previous = returns[t - 1]
            deviation = (previous - previous.mean()) / sigma_e
            if o["signal"] == "reversal":
                mu = -strength * sigma_e * np.clip(deviation, -3.0, 3.0)
            else:
                average = decay * average + (1.0 - decay) * deviation
                mu = strength * sigma_e * np.tanh(average)
            returns[t] += mu - mu.mean()
    sigma = np.sqrt((betas * sigma_m) ** 2 + sigma_c**2 + sigma_e**2)[None, :]
    gaps = 0.02 * sigma * rng.standard_normal((n_bars, n_assets))
    gaps[0] = 0.0
    log_close = np.log(rng.uniform(1.0, 1000.0, n_assets))[None, :] + np.cumsum(returns + gaps, axis=0)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # checked below
        close = np.exp(log_close)
        open_ = np.exp(log_close - returns)
        high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal((n_bars, n_assets))) * 0.5 * sigma)
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal((n_bars, n_assets))) * 0.5 * sigma)
        volume = (
            o["base_volume"] * (1.0 + 3.0 * np.abs(returns) / sigma) * np.exp(0.3 * rng.standard_normal(close.shape))
        )
    if not (np.isfinite(high).all() and np.isfinite(volume).all() and (low > 0).all()):
        raise ValueError(
            f"synthetic_panel: prices leave the floating-point range over {n_bars} bars; use fewer bars or "
            "milder volatilities"
        )
    index = pd.date_range(start=start, periods=n_bars, freq=freq, tz="UTC", name="timestamp")
    width = max(2, len(str(n_assets - 1)))
    frames = {}
    for i in range(n_assets):
        name = f"A{i:0{width}d}"
        frame = pd.DataFrame(
            {"open": open_[:, i], "high": high[:, i], "low": low[:, i], "close": close[:, i], "volume": volume[:, i]},
            index=index,
        )
        frame.attrs.update(
            source=f"synthetic_panel(seed={o['seed']}, n_assets={n_assets}, signal={o['signal']}) [{name}]",
            format="synthetic",
            close_only=False,
            asset=name,
            cluster=int(clusters[i]),
        )
        frames[name] = frame
    return frames
