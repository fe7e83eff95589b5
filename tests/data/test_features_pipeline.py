"""The feature spec: built-in indicators equal TA-Lib, higher timeframes visible only once closed,
leaks caught by name, warm-ups kept out of observations, the normaliser fitted on the warm-up only."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest
import talib
import yaml
from helpers import bars

from sb3_crypto.data import (
    DataError,
    FeatureError,
    FeatureNormalizer,
    LeakError,
    build_market,
    compute_features,
    feature_spec,
    synthetic_ohlcv,
)
from sb3_crypto.data.features import compute_pct_features
from sb3_crypto.data.indicators import INDICATORS
from sb3_crypto.data.pipeline import (
    align_higher,
    compute_item,
    leak_check_cuts,
    resample_bars,
)

FRAME = synthetic_ohlcv(3000, seed=5)
STEP = pd.Timedelta("1h")


def item(**entry):
    """One checked spec item."""
    return feature_spec({"base": "none", "indicators": [entry]}).indicators[0]


def raw(entry: dict, frame: pd.DataFrame = FRAME) -> tuple[tuple[str, ...], np.ndarray]:
    return compute_item(item(**entry), frame, STEP)


def hlc(frame: pd.DataFrame = FRAME) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (frame[c].to_numpy(dtype=float) for c in ("high", "low", "close"))


# ---------------------------------------------------------------------------------- the shorthands
@pytest.mark.parametrize("warmup", [0.1, 50])
def test_the_two_strings_give_bit_for_bit_the_features_they_always_gave(warmup) -> None:
    raw_z = compute_features(FRAME)
    old = FeatureNormalizer.fit(raw_z[: round(warmup * 2100) if isinstance(warmup, float) else warmup])
    for given in ("zscore", {"base": "zscore"}, {}):
        market = build_market(FRAME, norm_warmup=warmup, features=given)
        np.testing.assert_array_equal(market.features, old.transform(raw_z))
        assert market.features_start == 0 and market.channels[0] == "open_return"
    pct = compute_pct_features(FRAME, clip=100.0)
    for given in ("pct_change", {"base": "pct_change"}):
        market = build_market(FRAME, norm_warmup=warmup, features=given)
        np.testing.assert_array_equal(market.features, pct.astype(np.float32))
        assert market.warmup_end == 0 and market.normalizer.clip == 100.0


# ------------------------------------------------------------------------------- built-in values
def test_talib_indicators_equal_talib_called_directly() -> None:
    high, low, close = hlc()
    volume = FRAME["volume"].to_numpy(dtype=float)
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    slowk, slowd = talib.STOCH(high, low, close, 5, 3, 0, 3, 0)
    expected = {
        "rsi": talib.RSI(close, 14)[:, None],
        "macd": np.stack((macd / close, signal / close, hist / close), axis=1),
        "atr": (talib.ATR(high, low, close, 14) / close)[:, None],
        "bollinger_width": ((upper - lower) / middle)[:, None],
        "adx": talib.ADX(high, low, close, 14)[:, None],
        "cci": talib.CCI(high, low, close, 20)[:, None],
        "mfi": talib.MFI(high, low, close, volume, 14)[:, None],
        "willr": talib.WILLR(high, low, close, 14)[:, None],
        "stoch": np.stack((slowk, slowd), axis=1),
        "ema_ratio": (close / talib.EMA(close, 20) - 1.0)[:, None],
    }
    for name, values in expected.items():
        np.testing.assert_array_equal(raw({"name": name})[1], values, err_msg=name)
    np.testing.assert_array_equal(raw({"name": "rsi", "period": 7})[1][:, 0], talib.RSI(close, 7))
    np.testing.assert_array_equal(
        raw({"name": "macd", "fast": 5, "slow": 35, "signal": 5})[1][:, 2], talib.MACD(close, 5, 35, 5)[2] / close
    )


def test_rolling_statistics_by_hand() -> None:
    close = FRAME["close"].to_numpy(dtype=float)[:300]
    volume = np.log1p(FRAME["volume"].to_numpy(dtype=float)[:300])
    frame = FRAME.iloc[:300]
    returns = np.log(close[1:] / close[:-1])
    vol = raw({"name": "realized_vol", "period": 24}, frame)[1][:, 0]
    z = raw({"name": "volume_zscore", "period": 48}, frame)[1][:, 0]
    ret = raw({"name": "returns", "k": 4}, frame)[1][:, 0]
    assert np.isnan(vol[:24]).all() and np.isnan(z[:47]).all() and np.isnan(ret[:4]).all()
    for t in (24, 100, 299):
        assert vol[t] == pytest.approx(np.std(returns[t - 24 : t], ddof=1), rel=1e-9)
    for t in (47, 150, 299):
        window = volume[t - 47 : t + 1]
        assert z[t] == pytest.approx((volume[t] - window.mean()) / window.std(), rel=1e-9)
    for t in (4, 200):
        assert ret[t] == pytest.approx(np.log(close[t] / close[t - 4]), rel=1e-12)
    flat = bars([100.0] * 60)  # equal volumes: the z-score is 0, not NaN
    np.testing.assert_array_equal(raw({"name": "volume_zscore", "period": 10}, flat)[1][9:, 0], 0.0)


def test_channel_names_name_every_channel() -> None:
    spec = {
        "indicators": [
            {"name": "rsi", "period": 14},
            {"name": "macd", "fast": 12, "slow": 26, "signal": 9},
            {"name": "bollinger_width", "period": 20, "k": 2.5},
            {"name": "stoch"},
            {"name": "returns", "k": 4},
            {"name": "rsi", "period": 14, "timeframe": "4h"},
            {"name": "atr", "timeframe": "1d"},
            {"function": "helpers:momentum_feature", "kwargs": {"span": 5}, "lookback": 6},
            {"function": "helpers:momentum_feature", "name": "slow", "kwargs": {"span": 10}, "lookback": 11},
        ]
    }
    market = build_market(FRAME, features=spec, norm_warmup=0.2)
    assert market.channels == (
        "open_return",
        "high_return",
        "low_return",
        "close_return",
        "log_volume",
        "rsi_14",
        "macd_12_26_9",
        "macd_signal_12_26_9",
        "macd_hist_12_26_9",
        "bollinger_width_20_2.5",
        "stoch_k_5_3_3",
        "stoch_d_5_3_3",
        "returns_4",
        "rsi_14@4h",
        "atr_14@1d",
        "mom",
        "mom_ema",
        "slow_mom",
        "slow_mom_ema",
    )
    assert market.features.shape == (len(FRAME), len(market.channels)) and len(market.normalizer.mean) == 19


def test_every_builtin_passes_the_leak_check_also_on_higher_timeframes() -> None:
    indicators = [{"name": name} for name in INDICATORS] + [{"name": name, "timeframe": "4h"} for name in INDICATORS]
    market = build_market(FRAME, features={"indicators": indicators}, norm_warmup=0.3)
    assert np.isfinite(market.features[market.features_start :]).all()


# ------------------------------------------------------------------------------ higher timeframes
def test_higher_timeframe_bars_become_visible_when_they_close() -> None:
    """Hourly bars 00:00 .. 11:00 (open times). The 4h bar opening at 00:00 closes at 04:00: it is
    visible from the hourly bar opening at 03:00 (which closes at 04:00), not before."""
    frame = bars([float(c) for c in range(1, 13)])
    frame["volume"] = np.arange(1.0, 13.0)
    higher = resample_bars(frame, pd.Timedelta("4h"))
    assert list(higher.index.strftime("%H:%M")) == ["00:00", "04:00", "08:00"]
    assert higher["open"].tolist() == [frame["open"].iloc[0], frame["open"].iloc[4], frame["open"].iloc[8]]
    assert higher["close"].tolist() == [4.0, 8.0, 12.0]
    assert higher["high"].tolist() == [frame["high"].iloc[k : k + 4].max() for k in (0, 4, 8)]
    assert higher["low"].tolist() == [frame["low"].iloc[k : k + 4].min() for k in (0, 4, 8)]
    assert higher["volume"].tolist() == [10.0, 26.0, 42.0]
    channels, values = compute_item(item(function="helpers:close_feature", timeframe="4h"), frame, STEP)
    assert channels == ("close@4h",)
    shown = dict(zip(frame.index.strftime("%H:%M"), values[:, 0]))
    expected = {
        "00:00": np.nan,
        "01:00": np.nan,
        "02:00": np.nan,
        "03:00": 4.0,  # closes at 04:00 with the 4h bar
        "04:00": 4.0,
        "05:00": 4.0,
        "06:00": 4.0,
        "07:00": 8.0,
        "08:00": 8.0,
        "09:00": 8.0,
        "10:00": 8.0,
        "11:00": 12.0,
    }
    assert shown.keys() == expected.keys()
    for stamp, value in expected.items():
        assert (np.isnan(value) and np.isnan(shown[stamp])) or shown[stamp] == value, stamp


@pytest.mark.parametrize("timeframe", ["4h", "3h", "1D", "7D"])
def test_resampling_matches_pandas_resample_with_gaps(timeframe: str) -> None:
    frame = FRAME.drop(FRAME.index[100:130]).drop(FRAME.index[2000])
    step = pd.Timedelta(timeframe)
    grouped = frame.resample(step, origin="epoch", label="left", closed="left")
    expected = grouped.agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "trades": "sum"}
    )
    expected = expected[grouped["close"].count().to_numpy() > 0]
    higher = resample_bars(frame, step)
    pd.testing.assert_frame_equal(higher[expected.columns], expected, check_freq=False, check_names=False)
    weighted = (frame["vwap"] * frame["volume"]).resample(step, origin="epoch", label="left", closed="left").sum()
    np.testing.assert_allclose(higher["vwap"], (weighted / expected["volume"]).loc[higher.index], rtol=1e-12)


def test_a_partial_higher_bar_is_never_shown() -> None:
    """Data starting at 02:00 and ending at 09:00: the bin 00:00-04:00 holds two bars and closes with
    the 03:00 bar; the last bin (08:00-12:00) never closes inside the data."""
    frame = bars([float(c) for c in range(1, 9)])
    frame.index = frame.index + pd.Timedelta("2h")
    _, values = compute_item(item(function="helpers:close_feature", timeframe="4h"), frame, STEP)
    # bars 02 03 04 05 06 07 08 09: closes 1..8
    np.testing.assert_array_equal(values[:, 0], [np.nan, 2.0, 2.0, 2.0, 2.0, 6.0, 6.0, 6.0])


def test_daily_bars_close_at_midnight_utc() -> None:
    frame = synthetic_ohlcv(24 * 5, seed=1)  # starts 2020-01-01 00:00
    _, values = compute_item(item(function="helpers:close_feature", timeframe="1d"), frame, STEP)
    assert np.isnan(values[:23, 0]).all()
    assert values[23, 0] == frame["close"].iloc[23]  # the 23:00 bar closes the day
    assert (values[23:47, 0] == frame["close"].iloc[23]).all() and values[47, 0] == frame["close"].iloc[47]


def test_higher_timeframe_rsi_is_talib_on_the_resampled_closes() -> None:
    higher = resample_bars(FRAME, pd.Timedelta("4h"))
    expected = align_higher(
        talib.RSI(higher["close"].to_numpy(dtype=float), 14)[:, None],
        higher.index,
        pd.Timedelta("4h"),
        FRAME.index,
        STEP,
    )
    channels, values = raw({"name": "rsi", "period": 14, "timeframe": "4h"})
    assert channels == ("rsi_14@4h",)
    np.testing.assert_array_equal(values, expected)
    assert np.isnan(values[: 4 * 15 - 1]).all() and np.isfinite(values[4 * 15 - 1 :]).all()


def test_timeframes_must_be_multiples_of_the_bar_spacing() -> None:
    for timeframe, pattern in [("90min", "whole multiple"), ("1h", "whole multiple"), ("30min", "whole multiple")]:
        with pytest.raises(ValueError, match=rf"features\['indicators'\]\[0\]\['timeframe'\] must be a {pattern}"):
            build_market(FRAME, features={"indicators": [{"name": "rsi", "timeframe": timeframe}]})
    for bad in ("4 hours", "1M", "0h", 4):
        with pytest.raises((TypeError, ValueError), match=r"\['timeframe'\] must be a duration such as"):
            feature_spec({"indicators": [{"name": "rsi", "timeframe": bad}]})


# ----------------------------------------------------------------------------------- leak check
def leak_bar(lookback: int = 1) -> list[int]:
    """The prefix lengths the leak check uses on FRAME with the default splits and warm-up."""
    splits = {"train": (0, 2100), "validation": (2100, 2550), "test": (2550, 3000)}
    return list(leak_check_cuts(len(FRAME), splits, warmup_end=210, min_bars=max(2, lookback)))


@pytest.mark.parametrize(
    ("function", "channel", "first_changed_row"),
    [
        # the shortest prefix (2 bars) already loses tomorrow's close on its last bar
        ("helpers:peek_next", "close", lambda cuts: cuts[0] - 1),
        # a centred 5-bar window is NaN on 2-bar data either way; the 210-bar prefix loses its last 2 bars
        ("helpers:centered_mean", "close", lambda cuts: cuts[1] - 2),
        # whole-sample statistics change every bar
        ("helpers:full_sample_zscore", "z", lambda cuts: 0),
        # the 4h close shown from the bin's first hourly bar: bar 00:00 shows the close of 03:00
        ("helpers:resample_at_open", "close_4h", lambda cuts: 0),
    ],
)
def test_the_leak_check_names_feature_channel_and_first_changed_bar(function, channel, first_changed_row) -> None:
    cuts = leak_bar()
    assert cuts[:2] == [2, 210] and {2101, 2551, 2999} <= set(cuts)
    row = first_changed_row(cuts)
    stamp = FRAME.index[row].isoformat()
    pattern = (
        rf"^feature '{re.escape(function)}' \(features\['indicators'\]\[0\]\) looks ahead: channel '{channel}' at "
        rf"bar {re.escape(stamp)} \(row {row}\) is .* on the full data but .* when the data end at "
    )
    with pytest.raises(LeakError, match=pattern):
        build_market(FRAME, features={"indicators": [{"function": function}]})


def test_the_leak_check_respects_lookback_and_a_name() -> None:
    assert leak_bar(lookback=30)[0] == 30
    stamp = re.escape(FRAME.index[29].isoformat())
    with pytest.raises(LeakError, match=rf"^feature 'tomorrow' .* channel 'tomorrow_close' at bar {stamp} \(row 29\)"):
        build_market(
            FRAME, features={"indicators": [{"function": "helpers:peek_next", "lookback": 30, "name": "tomorrow"}]}
        )
    assert issubclass(LeakError, DataError) and issubclass(LeakError, FeatureError)


def test_leak_check_false_skips_the_check() -> None:
    spec = {"indicators": [{"function": "helpers:full_sample_zscore"}], "leak_check": False}
    assert build_market(FRAME, features=spec).channels[-1] == "z"
    with pytest.raises(LeakError):
        build_market(FRAME, features={**spec, "leak_check": "true"})


def test_the_cuts_fall_at_the_start_of_each_split_and_inside_the_data() -> None:
    splits = {"train": (0, 700), "validation": (700, 850), "test": (850, 1000)}
    assert leak_check_cuts(1000, splits, 70) == (2, 70, 250, 500, 701, 750, 851, 999)
    assert leak_check_cuts(1000, splits, 70, min_bars=600) == (600, 701, 750, 851, 999)
    assert leak_check_cuts(5, {"train": (0, 5)}, 2, min_bars=10) == ()


# ------------------------------------------------------------------------------ user functions
@pytest.mark.parametrize(
    ("function", "error", "pattern"),
    [
        ("helpers.close_feature", ValueError, r"\['function'\] must be a path 'module.sub:function'"),
        ("no_such_module_xyz:f", ValueError, r"cannot import module 'no_such_module_xyz'.*ModuleNotFoundError"),
        ("helpers:missing", ValueError, r"'helpers:missing' does not exist \(no attribute 'missing' in 'helpers'\)"),
        ("helpers:NOT_CALLABLE", ValueError, r"'helpers:NOT_CALLABLE' is not callable, it is 42 \(int\)"),
        ("helpers:raises", FeatureError, r"^feature 'helpers:raises' .* raised RuntimeError on 3000 bars: boom"),
        ("helpers:returns_list", FeatureError, r"returned list, expected a pandas DataFrame with one column"),
        ("helpers:one_row_short", FeatureError, r"returned 2999 rows for 3000 bars"),
        ("helpers:reindexed", FeatureError, r"returned a frame whose index differs from the bars' at row 0"),
        ("helpers:text_column", FeatureError, r"returned column 'label' of non-numeric"),
    ],
)
def test_user_functions_are_validated_naming_the_feature(function, error, pattern) -> None:
    with pytest.raises(error, match=pattern) as caught:
        build_market(FRAME, features={"indicators": [{"name": "rsi"}, {"function": function}]})
    assert "features['indicators'][1]" in str(caught.value)


def test_nan_after_warmup_and_infinite_values_name_feature_channel_and_bar() -> None:
    stamp = re.escape(FRAME.index[100].isoformat())
    with pytest.raises(FeatureError, match=rf"'helpers:nan_in_middle' .*channel 'broken' is NaN at bar {stamp} "):
        build_market(FRAME, features={"indicators": [{"function": "helpers:nan_in_middle"}]})
    stamp = re.escape(FRAME.index[50].isoformat())
    with pytest.raises(FeatureError, match=rf"channel 'infinite' is infinite at bar {stamp} \(row 50\)"):
        build_market(FRAME, features={"indicators": [{"function": "helpers:inf_at_50"}], "leak_check": False})


def test_user_function_gets_its_columns_and_kwargs_and_lookback_is_its_warmup() -> None:
    spec = {"base": "none", "indicators": [{"function": "helpers:momentum_feature", "columns": ["close"]}]}
    market = build_market(FRAME, features={**spec, "indicators": [{**spec["indicators"][0], "lookback": 40}]})
    assert market.channels == ("mom", "mom_ema") and market.features_start == 39
    assert build_market(FRAME, features=spec).features_start == 3  # span 3: three NaN returns
    with pytest.raises(DataError, match=r"asks for column\(s\) \['funding'\] the data do not have"):
        build_market(FRAME, features={"indicators": [{"function": "helpers:close_feature", "columns": ["funding"]}]})
    with pytest.raises(ValueError, match=r"channel 'close' is given twice"):
        build_market(
            FRAME,
            features={"indicators": [{"function": "helpers:close_feature"}, {"function": "helpers:close_feature"}]},
        )


# ------------------------------------------------------------------- warm-up and normalisation
SPEC = {
    "indicators": [
        {"name": "rsi", "period": 14},
        {"name": "macd"},
        {"name": "atr"},
        {"name": "rsi", "period": 14, "timeframe": "4h"},
        {"function": "helpers:momentum_feature", "lookback": 10},
    ]
}


def test_indicator_warmup_never_reaches_an_observation() -> None:
    market = build_market(FRAME, features=SPEC, norm_warmup=70, split_fractions=(0.5, 0.25, 0.25))
    assert market.features_start == 4 * 15 - 1  # rsi_14@4h: 15 closed 4h bars
    assert np.isnan(market.features[market.features_start - 1]).any()
    assert np.isfinite(market.features[market.features_start :]).all()
    window = 32
    first, _ = market.decision_range("train", window)
    assert first == market.features_start + window - 1 > market.warmup_end
    assert np.isfinite(market.features[first - window + 1 : first + 1]).all()
    assert market.decision_range("train", 4)[0] == market.warmup_end  # a short window: the warm-up rules
    for split in ("validation", "test"):  # later splits start after it anyway
        assert market.decision_range(split, window)[0] == market.splits[split][0]


def test_a_warmup_without_two_finite_values_is_refused_naming_the_channel() -> None:
    pattern = r"channel 'rsi_14@1d' \(features\['indicators'\]\[0\]\) has 0 finite value\(s\) in the normalisation"
    with pytest.raises(DataError, match=pattern):
        build_market(FRAME, features={"indicators": [{"name": "rsi", "timeframe": "1d"}]}, norm_warmup=100)


def test_normaliser_statistics_come_from_the_warmup_only() -> None:
    market = build_market(FRAME, features=SPEC, norm_warmup=0.2)
    assert market.warmup_end == 420
    changed = FRAME.copy()
    changed.iloc[420:, :4] *= np.exp(np.linspace(0, 1, len(FRAME) - 420))[:, None]
    changed.iloc[420:, 4] *= 5.0
    other = build_market(changed, features=SPEC, norm_warmup=0.2)
    np.testing.assert_array_equal(market.normalizer.mean, other.normalizer.mean)
    np.testing.assert_array_equal(market.normalizer.std, other.normalizer.std)
    values = market.features[market.features_start : 420]
    np.testing.assert_allclose(values.mean(axis=0), 0.0, atol=0.25)  # standardised on the warm-up
    assert FeatureNormalizer.from_dict(market.normalizer.to_dict()).to_dict() == market.normalizer.to_dict()


@pytest.mark.parametrize("k", [500, 1500, 2600])
def test_perturbing_the_future_leaves_every_earlier_feature_unchanged(k: int) -> None:
    changed = FRAME.copy()
    rng = np.random.default_rng(k)
    changed.iloc[k:, :4] = (
        changed.iloc[k:, :4].to_numpy() * np.exp(np.cumsum(rng.normal(0, 0.02, len(FRAME) - k)))[:, None]
    )
    changed.iloc[k:, 4] *= 3.0
    a = build_market(FRAME, features=SPEC)
    b = build_market(changed, features=SPEC)
    np.testing.assert_array_equal(a.features[:k], b.features[:k])
    assert not np.array_equal(a.features[k], b.features[k])


def test_pct_change_base_keeps_its_channels_and_zscores_the_indicators() -> None:
    market = build_market(FRAME, features={"base": "pct_change", "indicators": [{"name": "rsi"}]})
    np.testing.assert_array_equal(market.features[:, :5], compute_pct_features(FRAME, clip=100.0).astype(np.float32))
    assert market.normalizer.clip == 100.0 and market.normalizer.std[:5].tolist() == [1.0] * 5
    assert market.warmup_end == 210 and market.normalizer.mean[5] != 0.0
    only = build_market(FRAME, features={"base": "none", "indicators": [{"name": "rsi"}]})
    assert only.channels == ("rsi_14",) and only.normalizer.clip == 10.0


# ------------------------------------------------------------------------------ the spec itself
def test_the_spec_round_trips_through_yaml() -> None:
    given = {
        "base": "zscore",
        "indicators": [
            {"name": "bollinger_width", "period": 20, "k": 2},
            {"name": "rsi", "timeframe": "4H"},
            {"function": "helpers:momentum_feature", "columns": ["close"], "lookback": 20, "kwargs": {"span": 5}},
        ],
    }
    spec = feature_spec(given)
    text = yaml.safe_dump(spec.to_dict())
    assert feature_spec(yaml.safe_load(text)) == spec
    assert spec.to_dict()["indicators"][1] == {"name": "rsi", "period": 14, "timeframe": "4h"}
    assert feature_spec("zscore").shorthand and not spec.shorthand


@pytest.mark.parametrize(
    ("spec", "error", "pattern"),
    [
        ("minmax", ValueError, r"^unknown features 'minmax': features must be 'zscore', 'pct_change' or a feature"),
        (3, TypeError, r"^features must be 'zscore', 'pct_change' or a feature spec mapping"),
        ({"indicator": []}, ValueError, r"^features has unknown option\(s\) 'indicator'; known: base, indicators"),
        ({"base": "raw"}, ValueError, r"^unknown features\['base'\] 'raw'"),
        ({"base": "none"}, ValueError, r"^features has no channels"),
        ({"indicators": {"name": "rsi"}}, TypeError, r"^features\['indicators'\] must be a list of feature items"),
        ({"indicators": ["rsi"]}, TypeError, r"^features\['indicators'\]\[0\] must be a mapping such as"),
        ({"indicators": [{"period": 3}]}, ValueError, r"^features\['indicators'\]\[0\] needs 'name'"),
        ({"indicators": [{"name": "rsx"}]}, ValueError, r"^unknown features\['indicators'\]\[0\]\['name'\] 'rsx'"),
        (
            {"indicators": [{"name": "rsi", "length": 3}]},
            ValueError,
            r"has unknown parameter\(s\) 'length' for indicator 'rsi'; its parameters: period",
        ),
        (
            {"indicators": [{"name": "rsi", "period": 1}]},
            ValueError,
            r"^features\['indicators'\]\[0\]\['period'\] must be an integer in \[2, 100000\], got 1",
        ),
        ({"indicators": [{"name": "macd", "fast": 30}]}, ValueError, r"macd needs fast < slow, got fast=30, slow=26"),
        (
            {"indicators": [{"function": "helpers:close_feature", "lookback": 0}]},
            ValueError,
            r"\['lookback'\] must be an integer in \[1, 100000\]",
        ),
        (
            {"indicators": [{"function": "helpers:close_feature", "window": 3}]},
            ValueError,
            r"unknown option\(s\) 'window' for a user function",
        ),
        ({"leak_check": "maybe"}, ValueError, r"^features\['leak_check'\] must be a boolean"),
    ],
)
def test_spec_errors_name_the_option(spec, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        build_market(FRAME, features=spec)


def test_close_only_data_refuse_indicators_that_need_high_low_or_volume() -> None:
    frame = pd.DataFrame(
        {"close": 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.02, 400)))},
        index=pd.date_range("2020-01-01", periods=400, freq="1D", tz="UTC"),
    )
    market = build_market(frame, features={"indicators": [{"name": "rsi"}, {"name": "returns", "k": 7}]})
    assert market.channels == ("close_return", "rsi_14", "returns_7")
    with pytest.raises(DataError, match=r"feature 'atr\(period=14\)' .* needs high, low, but the data are close-only"):
        build_market(frame, features={"indicators": [{"name": "atr"}]})


def test_missing_talib_is_an_import_error_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "talib", None)
    with pytest.raises(ImportError, match=r"pip install 'sb3_crypto\[features\]'"):
        build_market(FRAME, features={"indicators": [{"name": "rsi"}]})
    assert build_market(FRAME, features={"indicators": [{"name": "realized_vol"}]}).channels[-1] == "realized_vol_24"
