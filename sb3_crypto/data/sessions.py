"""Trading sessions cut around volatility signals (reference system S3), made precise.

A **signal** fires on bar ``s`` of a bar series when

* the move over the signal window is large: ``|close[s] / close[s - signal_window] - 1| > signal_threshold``;
* the stretch before it was calm: over the ``context - signal_window`` bars before the signal
  window, no ``signal_window``-bar move exceeded ``signal_threshold / contrast``;
* there is room: ``context`` bars up to and including ``s`` and ``session`` bars after it.

The sample is bars ``s - context + 1 .. s + session``: ``context`` bars the agent sees before trading
(ending with the signal bar) followed by ``session`` trading bars. Detection reads bars ``<= s`` only,
and sessions never overlap (the next search starts after the previous session's last bar).
Each sample is keyed by ``(ticker, signal time)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.keywords import check, integer, real
from sb3_crypto.data.loaders import DataError, load_ohlcv
from sb3_crypto.data.synthetic import MAX_BARS, bar_spacing
from sb3_crypto.files import atomic_path

#: Channels of a session array, in order (S3's own layout uses ``S3_CHANNELS``).
SESSION_CHANNELS = ("open", "high", "low", "close", "volume", "vwap", "trades")
S3_CHANNELS = ("open", "high", "volume_weighted_average", "low", "close", "volume", "num_trades")
_S3_ORDER = [0, 1, 3, 4, 5, 2, 6]  # S3 column index for each SESSION_CHANNELS entry


@dataclass
class SessionSet:
    """Session samples: ``bars`` of shape ``(n, context + session, 7)`` in :data:`SESSION_CHANNELS` order."""

    bars: np.ndarray
    tickers: np.ndarray  #: ticker of each session (str)
    signal_times: np.ndarray  #: signal bar time of each session (datetime64[ns], UTC)
    context: int
    session: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.bars.ndim != 3 or self.bars.shape[2] != len(SESSION_CHANNELS):
            raise DataError(
                f"sessions: bars must have shape (n, length, {len(SESSION_CHANNELS)}), got {self.bars.shape}"
            )
        if self.bars.shape[1] != self.context + self.session:
            raise DataError(
                f"sessions: bars hold {self.bars.shape[1]} bars but context + session = {self.context + self.session}"
            )
        if len(self.tickers) != len(self.bars) or len(self.signal_times) != len(self.bars):
            raise DataError("sessions: one ticker and one signal time are needed per session")
        bad = np.argwhere(~np.isfinite(self.bars))
        if bad.size:
            n, t, c = bad[0]
            raise DataError(f"sessions: non-finite value in session {n}, bar {t}, channel '{SESSION_CHANNELS[c]}'")
        prices = self.bars[:, :, [0, 1, 2, 3]]
        bad = np.argwhere(prices <= 0)
        if bad.size:
            n, t, c = bad[0]
            raise DataError(f"sessions: non-positive price in session {n}, bar {t}, channel '{SESSION_CHANNELS[c]}'")

    def __len__(self) -> int:
        return len(self.bars)

    @property
    def keys(self) -> list[tuple[str, pd.Timestamp]]:
        """``(ticker, signal time)`` of every session."""
        return [(str(t), pd.Timestamp(s, tz="UTC")) for t, s in zip(self.tickers, self.signal_times)]

    def subset(self, index: np.ndarray | slice) -> SessionSet:
        """The sessions at ``index`` (same context and session length)."""
        return SessionSet(
            self.bars[index], self.tickers[index], self.signal_times[index], self.context, self.session, dict(self.meta)
        )

    def sorted_by_time(self) -> SessionSet:
        """Sessions in signal-time order (ties by ticker)."""
        order = np.lexsort((self.tickers, self.signal_times))
        return self.subset(order)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.npz`` with bars, keys and lengths (atomically; ``.npz`` is added when missing,
        as numpy does); returns the path written."""
        path = Path(path)
        target = path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")
        with atomic_path(target) as temporary:
            np.savez_compressed(
                temporary,
                bars=self.bars,
                tickers=self.tickers.astype(str),
                signal_times=self.signal_times.astype("datetime64[ns]").astype("int64"),
                context=self.context,
                session=self.session,
            )
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, *, context: int | None = None) -> SessionSet:
        """Read a :meth:`save` file, or S3's own ``(N, 150, 7)`` array (``.npy``/``.npz``).

        S3 arrays carry no keys: sessions are keyed ``("s3", index)`` in stored order, and their
        context length must be given (S3 used 90 of 150 bars; the demo preset 30 of 40).
        """
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: file not found")
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return cls.from_s3_array(loaded, context=context, source=str(path))
        with loaded:
            if "bars" not in loaded:
                names = list(loaded.keys())
                if len(names) == 1:
                    return cls.from_s3_array(loaded[names[0]], context=context, source=str(path))
                raise DataError(
                    f"{path}: expected a 'bars' array (sb3_crypto sessions) or a single S3 array, got {names}"
                )
            return cls(
                bars=loaded["bars"].astype("float64"),
                tickers=loaded["tickers"].astype(str),
                signal_times=loaded["signal_times"].astype("int64").astype("datetime64[ns]"),
                context=int(loaded["context"]),
                session=int(loaded["session"]),
                meta={"source": str(path)},
            )

    @classmethod
    def from_s3_array(cls, array: np.ndarray, *, context: int | None, source: str = "S3 array") -> SessionSet:
        """Wrap S3's ``(N, length, 7)`` array (channels :data:`S3_CHANNELS`)."""
        if array.ndim != 3 or array.shape[2] != len(S3_CHANNELS):
            raise DataError(f"{source}: S3 sessions have shape (N, length, 7), got {array.shape}")
        if context is None:
            raise DataError(f"{source}: an S3 array has no stored context length; pass context= (S3 used 90)")
        if not 0 < context < array.shape[1]:
            raise DataError(f"{source}: context={context} must be between 1 and {array.shape[1] - 1}")
        n = len(array)
        return cls(
            bars=np.asarray(array, dtype="float64")[:, :, _S3_ORDER],
            tickers=np.full(n, "s3"),
            signal_times=np.arange(n).astype("datetime64[m]").astype("datetime64[ns]"),
            context=context,
            session=array.shape[1] - context,
            meta={"source": source},
        )


def session_values(frame: pd.DataFrame) -> np.ndarray:
    """A canonical frame's bars as ``(n, 7)`` values in :data:`SESSION_CHANNELS` order; a missing
    ``vwap`` is the bar's typical price ``(high + low + close) / 3`` and missing ``trades`` 0."""
    return np.column_stack(
        [
            frame["open"],
            frame["high"],
            frame["low"],
            frame["close"],
            frame["volume"],
            frame["vwap"] if "vwap" in frame else (frame["high"] + frame["low"] + frame["close"]) / 3.0,
            frame["trades"] if "trades" in frame else np.zeros(len(frame)),
        ]
    ).astype("float64")


def find_signals(
    close: np.ndarray,
    *,
    context: int = 90,
    session: int = 60,
    signal_window: int = 10,
    signal_threshold: float = 0.05,
    contrast: float = 5.0,
) -> list[int]:
    """Signal bars of one close series under the rule in the module docstring."""
    if not 0 < signal_window < context:
        raise ValueError(f"signal_window ({signal_window}) must be between 1 and context - 1 ({context - 1})")
    if signal_threshold <= 0 or contrast < 1:
        raise ValueError("signal_threshold must be > 0 and contrast >= 1")
    n = len(close)
    moves = np.full(n, np.nan)
    moves[signal_window:] = np.abs(close[signal_window:] / close[:-signal_window] - 1.0)
    calm_limit = signal_threshold / contrast
    calm_span = context - signal_window  # bars before the signal window whose moves must be calm
    signals = []
    s = context - 1
    while s + session < n:
        if moves[s] > signal_threshold:
            # moves ending at bars s - calm_span + 1 - ... : every w-bar move finished before the signal window
            stretch = moves[max(signal_window, s - calm_span + 1) : s - signal_window + 1]
            if s - calm_span + 1 >= signal_window and stretch.size and np.nanmax(stretch) < calm_limit:
                signals.append(s)
                s += session + 1
                continue
        s += 1
    return signals


def extract_sessions(
    data: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    context: int = 90,
    session: int = 60,
    signal_window: int = 10,
    signal_threshold: float = 0.05,
    contrast: float = 5.0,
) -> SessionSet:
    """Cut sessions from one canonical frame or a ``{ticker: frame}`` mapping (see module docstring).

    Frames are validated through :func:`~sb3_crypto.data.load_ohlcv`; missing ``vwap`` is taken as the
    bar's typical price ``(high + low + close) / 3`` and missing ``trades`` as 0.
    """
    frames = {"asset": data} if isinstance(data, pd.DataFrame) else dict(data)
    bars, tickers, times = [], [], []
    for ticker, frame in frames.items():
        frame = load_ohlcv(frame)
        values = session_values(frame)
        close = frame["close"].to_numpy()
        for s in find_signals(
            close,
            context=context,
            session=session,
            signal_window=signal_window,
            signal_threshold=signal_threshold,
            contrast=contrast,
        ):
            bars.append(values[s - context + 1 : s + session + 1])
            tickers.append(str(ticker))
            times.append(frame.index[s].as_unit("ns").to_datetime64())
    if not bars:
        raise DataError(
            f"no session found with context={context}, session={session}, signal_window={signal_window}, "
            f"signal_threshold={signal_threshold}, contrast={contrast}"
        )
    sessions = SessionSet(np.stack(bars), np.array(tickers), np.array(times, dtype="datetime64[ns]"), context, session)
    return sessions.sorted_by_time()


#: Every option of :func:`synthetic_session_market` with its check (``synthetic_kwargs`` of the
#: session env).
SESSION_MARKET_OPTIONS = {
    "n_bars": check(integer, low=2, high=MAX_BARS),
    "seed": check(integer, low=0),
    "freq": bar_spacing,
    "spike_every": check(integer, low=2, high=MAX_BARS),
    "spike_size": check(real, low=0.0, high=10.0, low_inclusive=False, high_inclusive=True),
    "signal_window": check(integer, low=1, high=MAX_BARS),
    "follow_through": check(real, low=0.0, high=1.0, high_inclusive=True),
    "follow_bars": check(integer, low=1, high=MAX_BARS),
    "minute_vol": check(real, low=0.0, high=0.5, low_inclusive=False, high_inclusive=True),
    "start_price": check(real, low=1e-6, high=1e12, high_inclusive=True),
}


def session_market_options(options: Mapping[str, object] | None, name: str = "synthetic_kwargs") -> dict:
    """Check and convert options of :func:`synthetic_session_market`; unknown names and bad values
    are refused naming ``synthetic_kwargs['option']``."""
    return keywords.options(name, options, SESSION_MARKET_OPTIONS)


def synthetic_session_market(
    n_bars: int = 60_000,
    seed: int = 0,
    *,
    freq: str = "1min",
    spike_every: int = 400,
    spike_size: float = 0.07,
    signal_window: int = 10,
    follow_through: float = 0.85,
    follow_bars: int = 20,
    minute_vol: float = 0.0004,
    start_price: float = 30_000.0,
) -> pd.DataFrame:
    """Minute bars with planted volatility spikes for :func:`extract_sessions`.

    Calm random walk (``minute_vol`` per bar), and about every ``spike_every`` bars a move of
    ``spike_size`` over ``signal_window`` bars in a random direction. With probability
    ``follow_through`` the next ``follow_bars`` bars drift further in the spike's direction
    (momentum after the spike, the planted signal), otherwise they drift back; ``follow_through=0.5``
    gives no edge.
    """
    given = {
        "n_bars": n_bars,
        "seed": seed,
        "freq": freq,
        "spike_every": spike_every,
        "spike_size": spike_size,
        "signal_window": signal_window,
        "follow_through": follow_through,
        "follow_bars": follow_bars,
        "minute_vol": minute_vol,
        "start_price": start_price,
    }
    checked = {name: SESSION_MARKET_OPTIONS[name](f"synthetic_session_market: {name}", v) for name, v in given.items()}
    n_bars, seed, spike_every, signal_window = (checked[k] for k in ("n_bars", "seed", "spike_every", "signal_window"))
    spike_size, follow_through, follow_bars = checked["spike_size"], checked["follow_through"], checked["follow_bars"]
    minute_vol, start_price = checked["minute_vol"], checked["start_price"]
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, minute_vol, n_bars)
    t = int(rng.integers(200, 200 + spike_every))
    while t + signal_window + follow_bars < n_bars:
        direction = 1.0 if rng.random() < 0.5 else -1.0
        returns[t : t + signal_window] += direction * np.log1p(spike_size) / signal_window
        follow = 1.0 if rng.random() < follow_through else -1.0
        drift = direction * follow * spike_size * 0.5 / follow_bars
        returns[t + signal_window : t + signal_window + follow_bars] += drift
        t += int(spike_every * (0.75 + 0.5 * rng.random()))
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([start_price], close[:-1]))
    spread = np.abs(rng.normal(0.0, minute_vol * 0.5, n_bars))
    high = np.maximum(open_, close) * (1.0 + spread)
    low = np.minimum(open_, close) * (1.0 - spread)
    volume = rng.lognormal(3.0, 0.4, n_bars) * (1.0 + 50.0 * np.abs(returns))
    index = pd.date_range("2022-01-01", periods=n_bars, freq=freq, tz="UTC", name="timestamp")
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": (high + low + close) / 3.0,
            "trades": np.round(volume * 3.0),
        },
        index=index,
    )
    frame.attrs.update(source=f"synthetic_session_market(seed={seed})", format="synthetic", close_only=False)
    return frame


def split_sessions(
    sessions: SessionSet,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
) -> dict[str, np.ndarray]:
    """Chronological train / validation / test index arrays by signal time (``fractions`` is the
    env's ``split_fractions``)."""
    fractions = keywords.fractions("split_fractions", fractions)
    order = np.argsort(sessions.signal_times, kind="stable")
    n = len(order)
    a = round(n * fractions[0])
    b = round(n * (fractions[0] + fractions[1]))
    return {"train": order[:a], "validation": order[a:b], "test": order[b:]}
