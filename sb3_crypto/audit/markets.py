"""Markets the audit trains on: no-edge versions of the run's own bars, and synthetic markets with or
without a planted signal of known size.

Null markets (nothing to learn in the direction of price):

* ``sign``: the run's own bars with the sign of every bar's move flipped at random (the gap from the
  previous close and the body, together; wicks follow the body). Volatility, its clustering, jumps,
  volume and the calendar are the run's; any directional predictability is destroyed.
* ``bootstrap``: the run's bars resampled in blocks of ``block_bars`` consecutive bars (circular
  block bootstrap, Politis & Romano 1992) and chained into a new price path: dependence within a
  block survives, dependence across blocks (trends, regimes) does not. Short-horizon patterns
  shorter than the block do survive, so ``sign`` is the stricter null for a directional edge.
* ``synthetic``: the package's synthetic market with ``momentum=0`` (its planted signal off), with the
  run's synthetic settings, or - for real data - its bar spacing, length, start and realised
  volatility.

The **power** market is the same synthetic market with ``momentum > 0``: an edge of known size.
Each market is described by a small JSON-able recipe (:func:`market_recipe`) so a training job can
rebuild it anywhere the run's data file can be read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto.data.market import resolve_frame
from sb3_crypto.data.synthetic import periods_per_year as bars_per_year
from sb3_crypto.files import atomic_path

#: Kinds of null market (see the module docstring).
NULL_KINDS = ("sign", "bootstrap", "synthetic")
#: Env keywords that choose the data (replaced when the audit swaps the market).
_DATA_KEYWORDS = ("data", "synthetic_kwargs", "asset", "fill_missing")
#: The planted signal strength of the shipped demo config (synthetic ``momentum``).
DEFAULT_POWER_MOMENTUM = 0.5


def run_frame(env_kwargs: Mapping[str, Any]) -> pd.DataFrame:
    """The canonical bars the run trained on (its ``data``, ``synthetic_kwargs``, ``asset``, ``fill_missing``)."""
    return resolve_frame(
        env_kwargs.get("data", "synthetic"),
        synthetic_kwargs=env_kwargs.get("synthetic_kwargs"),
        asset=env_kwargs.get("asset"),
        fill_missing=env_kwargs.get("fill_missing", False),
    )


def _bar_parts(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each bar as log moves relative to the previous close: gap, body, upper and lower wick."""
    open_, high, low, close = (frame[c].to_numpy(np.float64) for c in ("open", "high", "low", "close"))
    previous = np.concatenate(([open_[0]], close[:-1]))
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    return {
        "gap": np.log(open_ / previous),
        "body": np.log(close / open_),
        "upper": np.log(np.maximum(high, top) / top),
        "lower": np.log(bottom / np.minimum(low, bottom)),
    }


def _rebuild(frame: pd.DataFrame, parts: Mapping[str, np.ndarray], rows: np.ndarray | None = None) -> pd.DataFrame:
    """Bars with the given moves chained from the first bar's open; other columns follow ``rows``."""
    log_open = (
        np.log(float(frame["open"].iloc[0]))
        + np.cumsum(parts["gap"])
        + np.concatenate(([0.0], np.cumsum(parts["body"])[:-1]))
    )
    open_ = np.exp(log_open)
    close = np.exp(log_open + parts["body"])
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    out = pd.DataFrame(
        {
            "open": open_,
            "high": top * np.exp(parts["upper"]),
            "low": bottom * np.exp(-parts["lower"]),
            "close": close,
        },
        index=frame.index,
    )
    for column in frame.columns:
        if column in out.columns:
            continue
        values = frame[column].to_numpy()
        values = values if rows is None else values[rows]
        if column == "vwap":  # keep it inside the new bar at the same relative place
            old = frame[["low", "high"]].to_numpy(np.float64)
            old = old if rows is None else old[rows]
            span = np.where(old[:, 1] > old[:, 0], old[:, 1] - old[:, 0], 1.0)
            share = np.clip((values - old[:, 0]) / span, 0.0, 1.0)
            values = out["low"].to_numpy() + share * (out["high"].to_numpy() - out["low"].to_numpy())
        out[column] = values
    out.index.name = "timestamp"
    return out


def sign_randomised(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The bars with each bar's gap and body multiplied by an independent random sign (see module)."""
    parts = _bar_parts(frame)
    signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=len(frame))
    flipped = dict(parts, gap=parts["gap"] * signs, body=parts["body"] * signs)
    up = signs > 0  # a flipped body swaps which wick is above it
    flipped["upper"] = np.where(up, parts["upper"], parts["lower"])
    flipped["lower"] = np.where(up, parts["lower"], parts["upper"])
    return _rebuild(frame, flipped)


def block_bootstrap(frame: pd.DataFrame, seed: int, block_bars: int = 24) -> pd.DataFrame:
    """The bars resampled in circular blocks of ``block_bars`` and chained into a new path (see module)."""
    n = len(frame)
    block_bars = max(1, min(int(block_bars), n))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=-(-n // block_bars))
    rows = ((starts[:, None] + np.arange(block_bars)[None, :]) % n).reshape(-1)[:n]
    parts = {name: values[rows] for name, values in _bar_parts(frame).items()}
    return _rebuild(frame, parts, rows)


def matched_synthetic_kwargs(env_kwargs: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    """``synthetic_kwargs`` of a synthetic market like the run's: its own options when it trained on
    the synthetic market, else the real bars' length, spacing, start and realised volatility."""
    if env_kwargs.get("data", "synthetic") == "synthetic":
        return dict(env_kwargs.get("synthetic_kwargs") or {})
    step = frame.index[1] - frame.index[0] if len(frame) > 1 else pd.Timedelta("1h")
    moves = np.diff(np.log(frame["close"].to_numpy(np.float64)))
    volatility = float(np.nanstd(moves) * np.sqrt(bars_per_year(step))) if moves.size > 1 else 0.7
    return {
        "n_bars": len(frame),
        "freq": step,
        "start": frame.index[0].isoformat(),
        "start_price": float(frame["close"].iloc[0]),
        "annual_vol": float(np.clip(volatility, 0.01, 10.0)),
    }


def market_recipe(kind: str, seed: int, env_kwargs: Mapping[str, Any], frame: pd.DataFrame, **options: Any) -> dict:
    """A JSON-able description of one market: ``{"kind", "seed", ...}``.

    :param kind: ``run`` (the run's own data), one of :data:`NULL_KINDS`, or ``power``.
    :param options: ``block_bars`` (bootstrap), ``momentum`` (power).
    """
    if kind in ("run", "sign", "bootstrap"):
        recipe: dict[str, Any] = {"kind": kind, "seed": int(seed)}
        if kind == "bootstrap":
            recipe["block_bars"] = int(options.get("block_bars", 24))
        return recipe
    if kind in ("synthetic", "power"):
        synthetic = matched_synthetic_kwargs(env_kwargs, frame)
        synthetic["freq"] = str(pd.Timedelta(synthetic.get("freq", "1h")))
        synthetic["seed"] = int(seed)
        synthetic["momentum"] = float(options.get("momentum", DEFAULT_POWER_MOMENTUM)) if kind == "power" else 0.0
        return {"kind": kind, "seed": int(seed), "synthetic_kwargs": synthetic}
    raise ValueError(f"unknown market kind {kind!r}; known: run, power, {', '.join(NULL_KINDS)}")


def _timedelta_freq(value: str) -> str:
    """A Timedelta's text (``0 days 01:00:00``) as an offset alias pandas and the env accept (``1h``)."""
    step = pd.Timedelta(value)
    return f"{int(step.total_seconds())}s"


def market_env_kwargs(recipe: Mapping[str, Any], env_kwargs: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """The run's ``env_kwargs`` with the market of ``recipe`` swapped in; the bars of a ``sign`` or
    ``bootstrap`` market are written to ``folder/market.csv`` (once; the file is reused)."""
    kind = recipe["kind"]
    kwargs = dict(env_kwargs)
    if kind == "run":
        return kwargs
    for key in _DATA_KEYWORDS:
        kwargs.pop(key, None)
    if kind in ("synthetic", "power"):
        synthetic = dict(recipe["synthetic_kwargs"])
        synthetic["freq"] = _timedelta_freq(synthetic["freq"])
        kwargs.update(data="synthetic", synthetic_kwargs=synthetic)
        return kwargs
    path = Path(folder) / "market.csv"
    if not path.is_file():
        frame = run_frame(env_kwargs)
        if kind == "sign":
            bars = sign_randomised(frame, recipe["seed"])
        else:
            bars = block_bootstrap(frame, recipe["seed"], recipe.get("block_bars", 24))
        if frame.attrs.get("close_only"):  # written as closes only, so the env reads it as the run's data
            bars = bars[["close"]]
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            bars.to_csv(temporary)
    kwargs["data"] = str(Path(path).resolve())
    return kwargs


def trend_rule_sharpe(frame: pd.DataFrame, halflife: float, start: int, stop: int) -> float:
    """Annualised Sharpe ratio, before costs, of holding the sign of an exponential moving average
    of past bar returns (half-life ``halflife``) over rows ``[start, stop)``: what a simple rule
    that knows the planted signal's form earns, the yardstick of the power test."""
    close = frame["close"].to_numpy(np.float64)
    moves = np.diff(np.log(close), prepend=np.log(close[0]))
    ema = pd.Series(moves).ewm(halflife=halflife).mean().to_numpy()
    position = np.sign(ema[:-1])  # known at the close of bar t, earns bar t + 1
    earned = position * np.expm1(moves[1:])
    part = earned[max(start, 0) : max(stop - 1, 0)]
    if part.size < 2 or part.std(ddof=1) == 0:
        return float("nan")
    step = frame.index[1] - frame.index[0]
    return float(part.mean() / part.std(ddof=1) * np.sqrt(bars_per_year(step)))


__all__ = [
    "DEFAULT_POWER_MOMENTUM",
    "NULL_KINDS",
    "block_bootstrap",
    "market_env_kwargs",
    "market_recipe",
    "matched_synthetic_kwargs",
    "run_frame",
    "sign_randomised",
    "trend_rule_sharpe",
]
