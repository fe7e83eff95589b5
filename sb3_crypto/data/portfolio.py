"""The prepared market of the portfolio env: several assets on one clock, per-asset causal features.

:func:`build_portfolio_market` loads a panel (:func:`~sb3_crypto.data.load_panel`; the built-in
default is :func:`~sb3_crypto.data.synthetic.synthetic_panel`), splits the common clock
chronologically, computes each asset's features with the feature pipeline on **that asset's own
bars** (its listed life; nothing is back-filled) and z-scores them with statistics fitted on the
asset's bars inside the normalisation warm-up of the training split, which no episode steps through.
An asset with fewer than two finite values of a channel in the warm-up (listed late) is z-scored with
the statistics pooled over every asset's warm-up bars instead (still only warm-up bars). Perturbing
any bar after ``k`` therefore changes nothing before ``k``.

Rows where an asset has no bar (before listing, after delisting, inside a gap) or no finite features
yet (an indicator's warm-up) are **masked**: their features are 0 and the ``alive`` channel, appended
to every asset's channels, is 0 (1 on rows with a bar and finite features).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto.data import keywords
from sb3_crypto.data.features import PCT_FEATURES, FeatureNormalizer, chronological_split
from sb3_crypto.data.formats import DATA_SUFFIXES, is_data_file
from sb3_crypto.data.loaders import DataError, infer_freq
from sb3_crypto.data.market import _split_rule, norm_warmup_option
from sb3_crypto.data.panel import Panel, load_panel
from sb3_crypto.data.pipeline import FeatureSpec, compute_blocks, feature_spec
from sb3_crypto.data.synthetic import panel_options, periods_per_year, synthetic_panel

#: Name of the mask channel appended to every asset's feature channels.
ALIVE_CHANNEL = "alive"

PortfolioSource = str | os.PathLike | pd.DataFrame | Mapping[str, Any]


@lru_cache(maxsize=4)
def _cached_synthetic_panel(items: tuple[tuple[str, Any], ...]) -> dict[str, pd.DataFrame]:
    return synthetic_panel(**dict(items))


@dataclass
class PortfolioMarket:
    """Arrays the portfolio env steps through; row ``t`` is bar ``t`` of the common clock.

    ``open`` / ``close`` are ``(n_bars, n_assets)`` with NaN where an asset has no bar; ``mark`` is the
    close carried forward inside each asset's life (0 outside it), the price positions are valued at.
    ``windows`` is ``(n_assets, n_bars, n_channels)`` float32: the normalised features, 0 on masked
    rows, the last channel being ``alive``.
    """

    panel: Panel
    assets: tuple[str, ...]
    times: np.ndarray
    open: np.ndarray
    close: np.ndarray
    mark: np.ndarray
    has_bar: np.ndarray  #: (n_bars, n_assets) bool: the asset has a bar on this row
    ready: np.ndarray  #: (n_bars, n_assets) bool: a bar with finite features (``alive`` channel)
    listed_until: np.ndarray  #: (n_assets,) int: row of each asset's last bar (its delisting)
    windows: np.ndarray
    channels: tuple[str, ...]
    splits: dict[str, tuple[int, int]]
    warmup_end: int
    normalizers: dict[str, FeatureNormalizer]  #: statistics per asset (pooled ones for late listings)
    pooled: tuple[str, ...]  #: assets z-scored with the pooled warm-up statistics
    clip: float
    periods_per_year: float
    split_rule: str
    features_start: int  #: longest feature warm-up (rows) over the assets
    feature_spec: FeatureSpec

    @property
    def n_bars(self) -> int:
        """Bars on the common clock."""
        return len(self.times)

    @property
    def n_assets(self) -> int:
        """Number of assets."""
        return len(self.assets)

    @property
    def frame(self) -> pd.DataFrame:
        """The closes, one column per asset, on the common clock (NaN where an asset has no bar):
        what the single-asset :class:`~sb3_crypto.data.Market`'s ``frame`` is to its env (its index
        gives the bars' times, ``attrs["source"]`` names the data)."""
        close = self.panel.close
        close.attrs["source"] = self.panel.source
        return close

    def split_range(self, split: str) -> tuple[int, int]:
        """Rows ``[start, stop)`` of a split; ``"all"`` is the whole clock."""
        if split == "all":
            return 0, self.n_bars
        return self.splits[split]

    def decision_range(self, split: str, window: int) -> tuple[int, int]:
        """First and last decision bar of ``split``: a full window of rows, after the warm-up, and a
        next bar (the fill) still inside the split. Assets not ready on a row are masked, not waited for."""
        start, stop = self.split_range(split)
        first = max(start, window - 1, self.warmup_end)
        last = stop - 2
        if last < first:
            raise DataError(
                f"{self.panel.source}: split {split!r} (rows {start}..{stop - 1} of {self.n_bars}, {self.split_rule}) "
                f"has no room for a decision: window_size={window}, the normalisation warm-up (norm_warmup) ends at "
                f"row {self.warmup_end}; use more data, a smaller window_size or a smaller norm_warmup"
            )
        return first, last


def resolve_panel(
    data: Any = "synthetic",
    *,
    assets: Sequence[str] | None = None,
    synthetic_kwargs: Mapping[str, Any] | None = None,
    fill_missing: bool = False,
) -> Panel:
    """The panel a portfolio env's ``data`` names: ``"synthetic"`` (options in ``synthetic_kwargs``,
    see :func:`~sb3_crypto.data.synthetic.synthetic_panel`), a long or wide file or frame (e.g. the
    CoinMarketCap daily file), a directory of per-asset files (the asset is the file name without its
    suffix), or a dict ``{asset: path or frame}``. ``assets`` picks and orders the assets (all by
    default); a portfolio needs at least 2."""
    fill_missing = keywords.boolean("fill_missing", fill_missing)
    if not keywords.is_none(assets):
        listed = keywords.items("assets", assets, what="asset names")
        assets = [keywords.text(f"assets[{k}]", name) for k, name in enumerate(listed)]
        repeated = sorted({a for a in assets if assets.count(a) > 1})
        if repeated:
            raise ValueError(f"assets names {', '.join(map(repr, repeated))} more than once")
        if len(assets) < 2:
            raise ValueError(f"assets must name at least 2 assets (a portfolio), got {assets!r}")
    else:
        assets = None
    is_synthetic = isinstance(data, str) and data == "synthetic"
    given_options = not keywords.is_none(synthetic_kwargs) and not (
        isinstance(synthetic_kwargs, Mapping) and not synthetic_kwargs
    )
    if given_options and not is_synthetic:
        raise ValueError("synthetic_kwargs given but data is not 'synthetic'")
    if is_synthetic:
        options = panel_options(synthetic_kwargs)
        try:
            source: Any = _cached_synthetic_panel(tuple(sorted(options.items())))
        except ValueError as exc:
            raise ValueError(f"synthetic_kwargs={dict(options)!r}: {exc}") from None
        source = {name: frame.copy() for name, frame in source.items()}
    elif isinstance(data, (pd.DataFrame, Mapping)):
        source = data
    elif isinstance(data, (str, os.PathLike)) and str(data).strip():
        path = Path(data)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and is_data_file(p))
            if not files:
                raise DataError(f"{path}: a directory with no data files ({', '.join(DATA_SUFFIXES)}), one per asset")
            source = {_asset_name(p): p for p in files}
        elif not path.is_file():
            raise DataError(f"{path}: file or directory not found")
        else:
            source = path
    else:
        raise TypeError(
            "data must be 'synthetic', a long or wide file, a directory of per-asset files, a DataFrame or a dict "
            f"{{asset: path or frame}}, got {keywords.describe(data)}"
        )
    try:
        panel = load_panel(source, assets, fill_missing=fill_missing, min_rows=2, min_assets=2)
    except DataError as exc:
        if assets is not None and "unknown asset" in str(exc):
            raise DataError(f"assets={assets!r}: {exc}") from None
        raise
    if isinstance(source, Mapping):  # frames that say they hold closes only (a panel's own frames) stay so
        for name, frame in panel.frames.items():
            item = source[name]
            if isinstance(item, pd.DataFrame) and item.attrs.get("close_only", False):
                frame.attrs["close_only"] = True
    return panel


def _asset_name(path: Path) -> str:
    name = path.name
    for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def build_portfolio_market(
    data: Any = "synthetic",
    *,
    assets: Sequence[str] | None = None,
    synthetic_kwargs: Mapping[str, Any] | None = None,
    fill_missing: bool = False,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    split_dates: Sequence[str] | None = None,
    norm_warmup: float | int = 0.1,
    clip: float = 10.0,
    features: str | Mapping[str, Any] | FeatureSpec = "zscore",
) -> PortfolioMarket:
    """Load the panel, split its clock and compute every asset's normalised, masked feature windows
    (see the module docstring). Same ``features``, ``norm_warmup``, ``split_fractions`` and
    ``split_dates`` as :func:`~sb3_crypto.data.build_market`, applied per asset."""
    spec = feature_spec(features)
    warmup = norm_warmup_option(norm_warmup)
    clip = keywords.real("clip", clip, low=0.0, low_inclusive=False)
    panel = resolve_panel(data, assets=assets, synthetic_kwargs=synthetic_kwargs, fill_missing=fill_missing)
    index = panel.index
    n, names = len(index), panel.assets
    splits = chronological_split(index, split_fractions, split_dates)
    train_start, train_stop = splits["train"]
    rule = _split_rule(split_fractions, split_dates)
    if spec.needs_fit:
        warmup_bars = round(warmup * (train_stop - train_start)) if isinstance(warmup, float) else warmup
        warmup_end = train_start + warmup_bars
        if warmup_bars < 2 or warmup_end > train_stop:
            raise DataError(
                f"{panel.source}: the normalisation warm-up (norm_warmup={norm_warmup!r}: {warmup_bars} bars) does not "
                f"fit in the training split of {train_stop - train_start} bars ({rule}); it needs at least 2 bars"
            )
    else:
        warmup_end = train_start
    step = infer_freq(index)
    raw: dict[str, np.ndarray] = {}
    rows: dict[str, np.ndarray] = {}
    channels: tuple[str, ...] | None = None
    features_start = 0
    for name in names:
        frame = panel.frames[name]
        where = index.get_indexer(frame.index)
        own_splits = {key: tuple(int(x) for x in np.searchsorted(where, bounds)) for key, bounds in splits.items()}
        own_warmup = int(np.searchsorted(where, warmup_end))
        try:
            blocks = compute_blocks(frame, spec, splits=own_splits, warmup_end=own_warmup, step=step)
        except (DataError, ValueError) as exc:
            raise type(exc)(f"{panel.source} [{name}]: {exc}") from None
        values = blocks[0].values if len(blocks) == 1 else np.concatenate([b.values for b in blocks], axis=1)
        found = tuple(channel for block in blocks for channel in block.channels)
        if channels is not None and found != channels:
            raise DataError(
                f"{panel.source} [{name}]: features {list(found)} differ from the first asset's {list(channels)} "
                "(mix of close-only and OHLCV assets?); every asset needs the same channels"
            )
        channels = found
        features_start = max(features_start, max(block.lead for block in blocks))
        raw[name], rows[name] = values, where
    assert channels is not None
    normalizers, pooled, bound = _fit(
        raw, rows, channels, spec, train_start, warmup_end, clip, panel.source, norm_warmup
    )

    n_assets, n_channels = len(names), len(channels) + 1
    windows = np.zeros((n_assets, n, n_channels), dtype=np.float32)
    open_ = np.full((n, n_assets), np.nan)
    close = np.full((n, n_assets), np.nan)
    has_bar = np.zeros((n, n_assets), dtype=bool)
    ready = np.zeros((n, n_assets), dtype=bool)
    listed_until = np.zeros(n_assets, dtype=np.int64)
    for k, name in enumerate(names):
        where, frame = rows[name], panel.frames[name]
        z = normalizers[name].transform(raw[name])
        finite = np.isfinite(z).all(axis=1)
        windows[k, where[finite], :-1] = z[finite]
        windows[k, where[finite], -1] = 1.0
        open_[where, k] = frame["open"].to_numpy(dtype="float64")
        close[where, k] = frame["close"].to_numpy(dtype="float64")
        has_bar[where, k] = True
        ready[where[finite], k] = True
        listed_until[k] = where[-1]
    mark = pd.DataFrame(close).ffill().to_numpy()
    life = panel.alive.to_numpy()
    mark = np.where(life & np.isfinite(mark), mark, 0.0)
    return PortfolioMarket(
        panel=panel,
        assets=tuple(names),
        times=index.to_numpy(),
        open=open_,
        close=close,
        mark=mark,
        has_bar=has_bar,
        ready=ready,
        listed_until=listed_until,
        windows=windows,
        channels=(*channels, ALIVE_CHANNEL),
        splits=splits,
        warmup_end=warmup_end,
        normalizers=normalizers,
        pooled=pooled,
        clip=bound,
        periods_per_year=periods_per_year(step) if step is not None else 365.0,
        split_rule=rule,
        features_start=features_start,
        feature_spec=spec,
    )


def _fit(
    raw: dict[str, np.ndarray],
    rows: dict[str, np.ndarray],
    channels: tuple[str, ...],
    spec: FeatureSpec,
    start: int,
    stop: int,
    clip: float,
    source: str,
    norm_warmup: Any,
) -> tuple[dict[str, FeatureNormalizer], tuple[str, ...], float]:
    """Per-asset statistics on the warm-up rows ``[start, stop)`` of the clock; pooled ones for assets
    with fewer than 2 finite values of a channel there. Returns them, the pooled assets and the bound."""
    n_channels = len(channels)
    if not spec.needs_fit:
        identity = FeatureNormalizer(np.zeros(n_channels), np.ones(n_channels), clip=100.0)
        return dict.fromkeys(raw, identity), (), 100.0
    warm = {name: raw[name][(rows[name] >= start) & (rows[name] < stop)] for name in raw}
    stacked = np.concatenate(list(warm.values()), axis=0)
    if (np.isfinite(stacked).sum(axis=0) < 2).any():
        raise DataError(
            f"{source}: fewer than 2 finite feature values in the normalisation warm-up (norm_warmup={norm_warmup!r}: "
            f"rows {start}..{stop - 1}) over all assets; use a larger norm_warmup, shorter indicators or assets listed "
            "earlier"
        )
    n_pct = sum(channel in PCT_FEATURES for channel in channels) if spec.base == "pct_change" else 0
    pooled_stats = _normalizer(stacked, n_pct, clip)
    out: dict[str, FeatureNormalizer] = {}
    pooled = []
    for name, values in warm.items():
        if len(values) >= 2 and (np.isfinite(values).sum(axis=0) >= 2).all():
            out[name] = _normalizer(values, n_pct, clip)
        else:
            out[name] = pooled_stats
            pooled.append(name)
    return out, tuple(pooled), pooled_stats.clip


def _normalizer(values: np.ndarray, n_pct: int, clip: float) -> FeatureNormalizer:
    stats = FeatureNormalizer.fit(values, clip=clip)
    if n_pct:  # S4's pct_change base channels stay as they are; the bound is theirs
        stats.mean[:n_pct] = 0.0
        stats.std[:n_pct] = 1.0
        stats.clip = 100.0
    return stats


__all__ = ["ALIVE_CHANNEL", "PortfolioMarket", "build_portfolio_market", "resolve_panel"]
