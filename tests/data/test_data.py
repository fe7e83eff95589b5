"""Market-data layer: every real-world format loads, every bad input gets a clear error."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sb3_crypto.data import (
    DataError,
    GapWarning,
    build_market,
    chronological_split,
    compute_features,
    find_gaps,
    load_ohlcv,
    synthetic_ohlcv,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def assert_canonical(frame: pd.DataFrame) -> None:
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert list(frame.columns[:5]) == ["open", "high", "low", "close", "volume"]
    assert all(frame[c].dtype == np.float64 for c in frame.columns)
    assert (frame["low"] <= frame[["open", "close"]].min(axis=1)).all()
    assert (frame["high"] >= frame[["open", "close"]].max(axis=1)).all()


@pytest.mark.parametrize(
    ("name", "fmt", "rows", "first"),
    [
        ("binance_BTCUSDT-1h-2019-10-17.csv", "binance", 48, "2019-10-17 00:00"),
        ("binance_BTCUSDT-1m-2025-01-01_us.csv", "binance", 20, "2025-01-01 00:00"),
        ("cryptodatadownload_Binance_BTCUSDT_1h.csv", "cryptodatadownload", 48, "2019-10-17 00:00"),
        ("cryptodatadownload_Bitstamp_ETHUSD_1h.csv", "cryptodatadownload", 48, "2019-10-17 00:00"),
        ("generic_ohlcv_iso.csv", "csv", 48, "2019-10-17 00:00"),
        ("generic_ohlcv_epoch_s.csv", "csv", 48, "2019-10-17 00:00"),
        ("generic_ohlcv.parquet", "parquet", 48, "2019-10-17 00:00"),
    ],
)
def test_formats_load_without_naming_them(name: str, fmt: str, rows: int, first: str) -> None:
    frame = load_ohlcv(FIXTURES / name)
    assert_canonical(frame)
    assert frame.attrs["format"] == fmt
    assert len(frame) == rows
    assert frame.index[0] == pd.Timestamp(first, tz="UTC")
    assert frame.attrs["n_gaps"] == 0


def test_all_hourly_formats_agree_on_prices() -> None:
    reference = load_ohlcv(FIXTURES / "binance_BTCUSDT-1h-2019-10-17.csv")
    for name in (
        "cryptodatadownload_Binance_BTCUSDT_1h.csv",
        "generic_ohlcv_iso.csv",
        "generic_ohlcv.parquet",
    ):
        other = load_ohlcv(FIXTURES / name)
        assert (other.index == reference.index).all()
        np.testing.assert_allclose(other["close"], reference["close"], atol=0.006)


def test_cryptodatadownload_picks_base_volume_and_reverses_newest_first() -> None:
    raw = pd.read_csv(FIXTURES / "cryptodatadownload_Binance_BTCUSDT_1h.csv", skiprows=1)
    frame = load_ohlcv(FIXTURES / "cryptodatadownload_Binance_BTCUSDT_1h.csv")
    # Base-currency (BTC) volume, not quote (USDT); the file's last row is the oldest bar.
    assert frame["volume"].iloc[0] == pytest.approx(raw["Volume BTC"].iloc[-1])
    eth = load_ohlcv(FIXTURES / "cryptodatadownload_Bitstamp_ETHUSD_1h.csv")
    raw_eth = pd.read_csv(FIXTURES / "cryptodatadownload_Bitstamp_ETHUSD_1h.csv", skiprows=1)
    assert eth["volume"].iloc[-1] == pytest.approx(raw_eth["Volume ETH"].iloc[0])
    assert eth["trades"].iloc[-1] == raw_eth["tradecount"].iloc[0]


def test_binance_keeps_trade_count_and_generic_keeps_vwap() -> None:
    binance = load_ohlcv(FIXTURES / "binance_BTCUSDT-1h-2019-10-17.csv")
    assert binance["trades"].iloc[0] == 100
    generic = load_ohlcv(FIXTURES / "generic_ohlcv_iso.csv")
    assert {"vwap", "trades"} <= set(generic.columns)
    assert "note" not in [c.lower() for c in generic.columns]


def test_close_only_long_format_selects_asset() -> None:
    path = FIXTURES / "coinmarketcap_daily_slice.csv"
    btc = load_ohlcv(path, asset="BTCBitcoin")
    assert_canonical(btc)
    assert btc.attrs["close_only"] is True
    assert len(btc) == 61
    assert (btc["open"] == btc["close"]).all() and (btc["volume"] == 0).all()
    assert btc["close"].iloc[0] == 23314.2
    with pytest.raises(DataError, match=r"holds 2 assets.*asset="):
        load_ohlcv(path)
    with pytest.raises(DataError, match=r"asset 'BTC' not found.*did you mean BTCBitcoin"):
        load_ohlcv(path, asset="BTC")
    assert compute_features(btc).shape == (61, 1)


def _frame(n: int = 10) -> pd.DataFrame:
    return synthetic_ohlcv(n, seed=1)


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    frame.rename_axis("timestamp").reset_index().to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("mutate", "row", "pattern"),
    [
        (lambda f: f.drop(columns=["high"]), None, r"missing column\(s\) \['high'\]"),
        (
            lambda f: f.assign(close=f["close"].where(f.index != f.index[4], np.nan)),
            4,
            r"column 'close' has NaN at {where} \(2020-01-01T04:00",
        ),
        (
            lambda f: f.assign(volume=f["volume"].where(f.index != f.index[3], np.inf)),
            3,
            r"column 'volume' has an infinite value at {where}",
        ),
        (
            lambda f: f.assign(
                open=f["open"].where(f.index != f.index[2], -1.0),
                low=f["low"].where(f.index != f.index[2], -2.0),
            ),
            2,
            r"column 'open' has a non-positive price -1.0 at {where}",
        ),
        (
            lambda f: f.assign(high=f["high"].where(f.index != f.index[5], f["low"] * 0.5)),
            5,
            r"high < low at {where}",
        ),
        (
            lambda f: f.assign(close=f["close"].where(f.index != f.index[6], f["high"] * 1.1)),
            6,
            r"close outside \[low, high\] at {where}",
        ),
        (
            lambda f: f.assign(volume=f["volume"].where(f.index != f.index[1], -5.0)),
            1,
            r"column 'volume' has a negative value -5.0 at {where}",
        ),
    ],
)
def test_bad_values_name_column_and_row(tmp_path: Path, mutate, row: int | None, pattern: str) -> None:
    # Files name the line an editor shows (header = line 1, so row r is line r + 2) ...
    path = _write(tmp_path, mutate(_frame()))
    in_file = pattern.format(where=f"line {row + 2}" if row is not None else "")
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + in_file):
        load_ohlcv(path)
    # ... frames passed directly name the row position; the same checks apply.
    with pytest.raises(DataError, match=pattern.format(where=f"row {row}" if row is not None else "")):
        load_ohlcv(mutate(_frame()))


def test_duplicate_and_unsorted_timestamps(tmp_path: Path) -> None:
    frame = _frame()
    duplicated = pd.concat([frame.iloc[:5], frame.iloc[4:]])
    # Rows are named by their line in the file (the header is line 1).
    with pytest.raises(
        DataError, match=r"1 duplicate timestamp: line 7 \(2020-01-01T04:00:00\+00:00\) repeats line 6 \(same values\)"
    ):
        load_ohlcv(_write(tmp_path, duplicated))
    shuffled = frame.iloc[[0, 1, 3, 2, 4, 5, 6, 7, 8, 9]]
    with pytest.raises(
        DataError, match=r"oldest first, but with 1 row out of order: line 5 \(2020-01-01T02:00:00\+00:00\)"
    ):
        load_ohlcv(_write(tmp_path, shuffled, "shuffled.csv"))
    # Strictly newest-first data is a known export convention and is reversed, not rejected.
    newest_first = load_ohlcv(_write(tmp_path, frame.iloc[::-1], "reversed.csv"))
    assert newest_first.index.equals(frame.index)


def test_malformed_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_ohlcv(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_ohlcv(empty)
    no_time = tmp_path / "no_time.csv"
    no_time.write_text("open,high,low,close,volume\n1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match="no time column found"):
        load_ohlcv(no_time)
    bad_time = tmp_path / "bad_time.csv"
    bad_time.write_text("date,open,high,low,close,volume\n2020-01-01,1,2,0.5,1.5,3\nnot-a-date,1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match=r"column 'date' has an unparseable time 'not-a-date' at line 3"):
        load_ohlcv(bad_time)
    text = tmp_path / "text.csv"
    text.write_text("date,open,high,low,close,volume\n2020-01-01,1,2,0.5,abc,3\n2020-01-02,1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match=r"column 'close' has a non-numeric value 'abc' at line 2"):
        load_ohlcv(text)


def test_too_few_rows_for_window() -> None:
    with pytest.raises(DataError, match=r"10 rows, but at least 50 are needed"):
        load_ohlcv(_frame(), min_rows=50)
    with pytest.raises(DataError, match=r"no room for a decision|exceeds"):
        import gymnasium as gym

        import sb3_crypto  # noqa: F401

        gym.make("CryptoTrading-v0", data=synthetic_ohlcv(200, seed=0), window_size=64, episode_length=100)


def test_gaps_are_reported_and_filled_forward_only() -> None:
    frame = _frame(12).drop(index=_frame(12).index[[4, 5, 9]])
    with pytest.warns(GapWarning, match=r"2 gap\(s\), 3 missing bar\(s\); first after 2020-01-01T03:00"):
        loaded = load_ohlcv(frame)
    assert loaded.attrs["n_gaps"] == 2
    gaps = find_gaps(loaded)
    assert gaps["missing_bars"].tolist() == [2, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filled = load_ohlcv(frame, fill_missing=True)
    assert len(filled) == 12
    previous_close = frame["close"].iloc[3]
    for row in (4, 5):
        assert filled.iloc[row][["open", "high", "low", "close"]].tolist() == [previous_close] * 4
        assert filled["volume"].iloc[row] == 0.0
    # Never back-filled: the bar after the gap keeps its own values.
    assert filled["close"].iloc[6] == frame["close"].iloc[4]


def test_synthetic_is_reproducible_and_crypto_like() -> None:
    a = synthetic_ohlcv(5000, seed=3)
    b = synthetic_ohlcv(5000, seed=3)
    c = synthetic_ohlcv(5000, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["close"], c["close"])
    assert_canonical(load_ohlcv(a))
    returns = np.diff(np.log(a["close"].to_numpy()))
    kurtosis = ((returns - returns.mean()) ** 4).mean() / returns.var() ** 2
    assert kurtosis > 5  # fat tails from jumps
    magnitude = np.abs(returns)
    assert np.corrcoef(magnitude[1:], magnitude[:-1])[0, 1] > 0.1  # volatility clustering
    daily = synthetic_ohlcv(400, freq="1D", seed=0)
    assert daily.index.freq is None or daily.index[1] - daily.index[0] == pd.Timedelta("1D")


def test_planted_momentum_is_predictable() -> None:
    def predictability(momentum: float) -> float:
        frame = synthetic_ohlcv(20000, seed=5, momentum=momentum)
        r = np.diff(np.log(frame["close"].to_numpy()))
        trend = pd.Series(r).ewm(halflife=12).mean().to_numpy()
        return float(np.mean(np.sign(trend[:-1]) * r[1:]) / np.std(r))

    assert predictability(0.5) > 0.1
    assert abs(predictability(0.0)) < 0.03


def test_chronological_split_by_fraction_and_date() -> None:
    index = pd.date_range("2021-01-01", periods=100, freq="1D", tz="UTC")
    assert chronological_split(index) == {"train": (0, 70), "validation": (70, 85), "test": (85, 100)}
    by_date = chronological_split(index, dates=("2021-02-01", "2021-03-01"))
    assert by_date == {"train": (0, 31), "validation": (31, 59), "test": (59, 100)}
    with pytest.raises(ValueError, match="sum"):
        chronological_split(index, fractions=(0.5, 0.2, 0.2))


def test_normaliser_uses_only_the_training_warmup() -> None:
    frame = synthetic_ohlcv(3000, seed=2)
    market = build_market(frame, norm_warmup=0.2)
    assert market.warmup_end == 420  # 20 % of the 2100-bar training split
    changed = frame.copy()
    changed.iloc[500:, :4] *= 3.0  # everything after the warm-up (and all validation/test) differs
    changed.iloc[500:, 4] *= 10.0
    other = build_market(changed, norm_warmup=0.2)
    np.testing.assert_array_equal(market.normalizer.mean, other.normalizer.mean)
    np.testing.assert_array_equal(market.normalizer.std, other.normalizer.std)
    raw = compute_features(frame)[:420]
    np.testing.assert_allclose(market.normalizer.mean, raw.mean(axis=0))
    # Fitted features are standardised on the warm-up, not on the whole series.
    np.testing.assert_allclose(market.features[:420].mean(axis=0), 0.0, atol=0.05)


def test_prepare_data_script(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "prepare_data.py"
    out = tmp_path / "btc.parquet"
    result = subprocess.run(
        [sys.executable, str(script), str(FIXTURES / "cryptodatadownload_Binance_BTCUSDT_1h.csv"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "48 bars" in result.stdout and "format cryptodatadownload" in result.stdout
    assert_canonical(load_ohlcv(out))
    # An existing output is refused (one line, status 2) unless --overwrite; written atomically.
    written = out.read_bytes()
    argv = [sys.executable, str(script), str(FIXTURES / "cryptodatadownload_Binance_BTCUSDT_1h.csv"), "--out", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "btc.parquet" in result.stderr and "--overwrite" in result.stderr
    assert out.read_bytes() == written
    result = subprocess.run([*argv, "--overwrite"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["btc.parquet"]
    assert_canonical(load_ohlcv(out))
    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close,volume\n2020-01-01,1,2,0.5,1.5,3\n2020-01-01,1,2,0.5,1.5,3\n")
    result = subprocess.run(
        [sys.executable, str(script), str(bad), "--out", str(tmp_path / "x.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "duplicate timestamp" in result.stderr
