"""Real market files end to end: disorder and repair, every format the wild produces, multi-asset panels.

Every file is written here, small and shaped like the real thing (CryptoDataDownload banner +
header + newest-first rows, Binance's 12 headerless columns, ...), and the tests check exact
values and exact messages: a row is named by its 1-based line in the file, banner and header
counted, so ``line 7`` is what an editor shows as line 7.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_crypto.data import (
    DataError,
    GapWarning,
    Panel,
    RepairReport,
    RepairWarning,
    load_ohlcv,
    load_panel,
    synthetic_ohlcv,
)
from sb3_crypto.data.loaders import RepairReport as LoadersRepairReport

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prepare_data.py"
HINT = "Repair with load_ohlcv(..., repair=True) or scripts/prepare_data.py --repair"


def bars(n: int, start: str = "2024-03-01", freq: str = "1h", seed: int = 7) -> pd.DataFrame:
    """OHLCV bars with the precision of a real export: cents and 4-decimal volumes."""
    frame = synthetic_ohlcv(n, freq=freq, seed=seed, start=start)[["open", "high", "low", "close", "volume"]]
    return frame.round({"open": 2, "high": 2, "low": 2, "close": 2, "volume": 4})


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RepairWarning)
        return call(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# CryptoDataDownload: banner line, header, newest first


def cdd_line(stamp: pd.Timestamp, row: pd.Series, symbol: str = "BTCUSDT") -> str:
    quote = row["volume"] * row["close"]
    return (
        f"{stamp.strftime('%Y-%m-%d %I-%p')},{symbol},{row['open']:.2f},{row['high']:.2f},{row['low']:.2f},"
        f"{row['close']:.2f},{row['volume']:.4f},{quote:.2f}"
    )


def write_cdd(path: Path, rows: list[tuple[pd.Timestamp, pd.Series]]) -> Path:
    """Rows in the order given (newest first for a real export): row k is on line k + 3."""
    text = ["https://www.CryptoDataDownload.com", "Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT"]
    text += [cdd_line(stamp, row) for stamp, row in rows]
    path.write_text("\n".join(text) + "\n")
    return path


def newest_first(frame: pd.DataFrame) -> list[tuple[pd.Timestamp, pd.Series]]:
    return list(frame.iloc[::-1].iterrows())


def glitched_cdd(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """12 hourly bars newest first with the glitches of real exports.

    Lines 3, 4 = 11:00, 10:00; line 5 = a copy of the 03:00 bar; lines 6, 7 = 09:00, 08:00;
    lines 8, 9 = 06:00, 07:00 (swapped); lines 10-15 = 05:00 ... 00:00 (03:00 on line 12);
    line 16 = 00:00 again with another close.
    """
    frame = bars(12)
    rows = newest_first(frame)
    rows[4], rows[5] = rows[5], rows[4]
    rows.insert(2, rows[8])
    typo = rows[-1][1].copy()
    typo["close"] = typo["close"] + 1.0
    rows.append((rows[-1][0], typo))  # line 16: 00:00 again, close differs
    return write_cdd(tmp_path / "Binance_BTCUSDT_1h.csv", rows), frame


def test_newest_first_with_glitches_is_recognised_and_lines_are_named(tmp_path: Path) -> None:
    path, _ = glitched_cdd(tmp_path)
    with pytest.raises(DataError) as error:
        load_ohlcv(path)
    assert str(error.value) == (
        f"{path}: the rows are newest first, but with 2 rows out of order: line 5 (2024-03-01T03:00:00+00:00), "
        "line 9 (2024-03-01T07:00:00+00:00); "
        "2 duplicate timestamps: line 12 (2024-03-01T03:00:00+00:00) repeats line 5 (same values), "
        "line 16 (2024-03-01T00:00:00+00:00) repeats line 15 (different values). "
        f"{HINT}, which sort the rows, keep the first row of each timestamp and report every change."
    )


def test_value_errors_name_the_same_file_line_whatever_the_order(tmp_path: Path) -> None:
    frame = bars(12)
    rows = newest_first(frame)
    bad = rows[3][1].copy()
    bad["high"] = bad["low"] - 1.0  # 08:00, line 6 of the newest-first file
    rows[3] = (rows[3][0], bad)
    path = write_cdd(tmp_path / "cdd.csv", rows)
    with pytest.raises(DataError, match=r"high < low at line 6 \(2024-03-01T08:00:00\+00:00\)"):
        load_ohlcv(path)
    # The same line once the file also needs repair (it was 'row 3' / 'row 8' before).
    rows[0], rows[1] = rows[1], rows[0]
    path = write_cdd(tmp_path / "cdd2.csv", rows)
    with pytest.raises(DataError, match=r"high < low at line 6 \(2024-03-01T08:00:00\+00:00\)"):
        quiet(load_ohlcv, path, repair=True)
    # Frames have no lines: positions in the frame as given, called rows.
    given = frame.iloc[::-1].copy()
    given.iloc[3, given.columns.get_loc("high")] = given["low"].iloc[3] - 1.0
    with pytest.raises(DataError, match=r"high < low at row 3 \(2024-03-01T08:00:00\+00:00\)"):
        load_ohlcv(given)
    shuffled = frame.iloc[[0, 1, 2, 4, 3, 5, 6, 7, 8, 9, 10, 11]]
    with pytest.raises(DataError, match=r"1 row out of order: row 4 \(2024-03-01T03:00:00\+00:00\)\. Repair with"):
        load_ohlcv(shuffled)


def test_hourly_export_of_20k_rows_with_a_handful_of_glitches(tmp_path: Path) -> None:
    frame = bars(20_000, start="2021-01-01")
    rows = newest_first(frame)
    for i in (1_000, 9_000, 15_000):  # three adjacent pairs swapped
        rows[i], rows[i + 1] = rows[i + 1], rows[i]
    rows.insert(5_000, rows[12_000])  # two copied bars far from their place
    rows.insert(17_000, rows[3_000])
    path = write_cdd(tmp_path / "Binance_BTCUSDT_1h.csv", rows)
    with pytest.raises(DataError) as error:
        load_ohlcv(path)
    message = str(error.value)
    assert message.startswith(f"{path}: the rows are newest first, but with 4 rows out of order: line 1003 (")
    # Swapped pairs on lines 1003/1004, 9004/9005 and 15004/15005 (one of each is out of place); the
    # copy of the 12004 bar on line 5003 comes first in the file, so it is kept (and out of place)
    # and line 12004 is the duplicate; line 17003 repeats the bar of line 3003.
    named = [int(x) for x in re.findall(r"line (\d+)", message)]
    assert named == [1003, 5003, 9005, 15004, 12004, 5003, 17003, 3003]
    assert "2 duplicate timestamps: line 12004 (2021-11-30T07:00:00+00:00) repeats line 5003 (same values)" in message
    repaired, report = quiet(load_ohlcv, path, repair=True, return_report=True)
    expected = frame.copy()
    pd.testing.assert_frame_equal(repaired[list(expected.columns)], expected, check_freq=False)
    assert (report.n_moved, report.n_duplicates, report.n_copies, report.newest_first) == (4, 2, 0, True)
    assert report.moved["line"].tolist() == [1003, 5003, 9005, 15004]
    assert report.rows_in == 20_002 and report.rows_out == 20_000


def test_repair_sorts_deduplicates_and_reports_every_change(tmp_path: Path) -> None:
    path, frame = glitched_cdd(tmp_path)
    with pytest.warns(RepairWarning) as caught:
        repaired, report = load_ohlcv(path, repair=True, return_report=True)
    assert isinstance(report, RepairReport) and repaired.attrs["repair_report"] == report.as_dict()
    assert RepairReport is LoadersRepairReport and issubclass(RepairWarning, UserWarning)
    # Sorted and deduplicated, the first line of each timestamp kept (line 15: the original close).
    assert repaired.index.equals(frame.index)
    np.testing.assert_array_equal(repaired["close"].to_numpy(), frame["close"].to_numpy())
    assert (report.rows_in, report.rows_out, report.newest_first) == (14, 12, True)
    assert report.moved[["line", "timestamp"]].values.tolist() == [
        [5, ts("2024-03-01 03:00")],
        [9, ts("2024-03-01 07:00")],
    ]
    assert report.duplicates[["line", "kept_line", "same_values"]].values.tolist() == [[12, 5, True], [16, 15, False]]
    assert report.n_copies == 0
    assert str(caught[0].message) == (
        f"{path}: 14 rows (newest first) -> 12 rows:\n"
        "  2 rows moved to restore order: line 5 (2024-03-01T03:00:00+00:00), line 9 (2024-03-01T07:00:00+00:00)\n"
        "  2 duplicate timestamps dropped (1 with different values, the first row was kept): "
        "line 12 (2024-03-01T03:00:00+00:00) repeats line 5 (same values), "
        "line 16 (2024-03-01T00:00:00+00:00) repeats line 15 (different values)"
    )
    # Gaps are then handled as usual.
    assert repaired.attrs["n_gaps"] == 0 and repaired.attrs["format"] == "cryptodatadownload"


def test_repair_reports_suspected_copies(tmp_path: Path) -> None:
    frame = bars(8)
    rows = newest_first(frame)
    rows[2] = (rows[2][0], rows[5][1])  # 05:00 carries the values of 02:00
    path = write_cdd(tmp_path / "copies.csv", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_ohlcv(path)  # a sorted file loads as is; copies are looked for when repairing
    with pytest.warns(
        RepairWarning, match=r"1 suspected copy .*: line 5 \(2024-03-01T05:00:00\+00:00\) repeats line 8"
    ):
        _, report = load_ohlcv(path, repair=True, return_report=True)
    assert report.copies[["line", "copy_of_line", "copy_of_timestamp"]].values.tolist() == [
        [5, 8, ts("2024-03-01 02:00")]
    ]
    assert (report.n_moved, report.n_duplicates) == (0, 0)


def test_repair_without_changes_is_silent_and_frames_are_repaired_too() -> None:
    frame = bars(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, report = load_ohlcv(frame, repair=True, return_report=True)
    assert not report.changed and report.summary().endswith(": 6 rows (oldest first) -> 6 rows, nothing to repair")
    assert loaded.attrs["repair_report"]["moved"] == 0
    messy = pd.concat([frame.iloc[:3], frame.iloc[[1]], frame.iloc[3:]])
    with pytest.raises(DataError, match=r"1 duplicate timestamp: row 3 \(2024-03-01T01:00:00\+00:00\) repeats row 1"):
        load_ohlcv(messy)
    with pytest.warns(RepairWarning, match=r"row 3 \(2024-03-01T01:00:00\+00:00\) repeats row 1 \(same values\)"):
        assert load_ohlcv(messy, repair=True).index.equals(frame.index)


def _prepare_data():
    spec = importlib.util.spec_from_file_location("prepare_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_data_repair_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, frame = glitched_cdd(tmp_path)
    script = _prepare_data()
    assert script.main([str(path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "--repair" in capsys.readouterr().err
    out = tmp_path / "btc.parquet"
    assert script.main([str(path), "--out", str(out), "--repair"]) == 0
    printed = capsys.readouterr().out
    assert (
        "2 rows moved to restore order: line 5 (2024-03-01T03:00:00+00:00), line 9" in printed
        and "2 duplicate timestamps dropped" in printed
    )
    assert "12 bars" in printed
    assert load_ohlcv(out).index.equals(frame.index)


# --------------------------------------------------------------------------------------------
# Property: repair recovers the sorted, deduplicated frame; the error points into the disorder


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 24),
    seed=st.integers(0, 1000),
    edits=st.lists(
        st.tuples(st.sampled_from(["swap", "copy"]), st.integers(0, 999), st.integers(0, 999)), min_size=1, max_size=4
    ),
)
def test_property_repair_recovers_and_errors_point_at_the_disorder(n: int, seed: int, edits: list) -> None:
    frame = bars(n, seed=seed)
    rows = [(stamp, row, False) for stamp, row in newest_first(frame)]
    for kind, a, b in edits:
        i = a % len(rows)
        if kind == "swap":
            j = b % len(rows)
            if i != j:
                rows[i], rows[j] = (*rows[j][:2], True), (*rows[i][:2], True)
        else:
            rows[i] = (*rows[i][:2], True)
            rows.insert(b % (len(rows) + 1), (*rows[i][:2], True))
    with tempfile.TemporaryDirectory() as folder:
        messy = write_cdd(Path(folder) / "messy.csv", [(s, r) for s, r, _ in rows])
        clean = write_cdd(Path(folder) / "clean.csv", newest_first(frame))
        expected = load_ohlcv(clean)
        repaired = quiet(load_ohlcv, messy, repair=True)
        pd.testing.assert_frame_equal(repaired, expected)

        times = np.array([s.value for s, _, _ in rows])
        steps = np.diff(times)
        if (steps > 0).all() or (steps < 0).all():
            load_ohlcv(messy)  # still one clean direction: loads
            return
        with pytest.raises(DataError) as error:
            load_ohlcv(messy)
    message = str(error.value)
    oriented = times[::-1] if "newest first" in message.split(":")[1] else times
    position = {line: k for k, line in enumerate(range(3, 3 + len(rows)))}

    def disordered(line: int) -> bool:  # an equal or inverted neighbour somewhere, in the stated direction
        k = position[line] if oriented is times else len(rows) - 1 - position[line]
        return bool((oriented[:k] >= oriented[k]).any() or (oriented[k + 1 :] <= oriented[k]).any())

    named = [int(x) for x in re.findall(r"line (\d+)", message)]
    assert named and all(disordered(line) for line in named), message
    if "newest first" in message.split(":")[1]:  # the direction of the export was recognised (tiny files
        assert any(rows[position[line]][2] for line in named), message  # may look oldest first): edits named


# --------------------------------------------------------------------------------------------
# Formats


def test_dataframe_to_csv_with_named_or_unnamed_index(tmp_path: Path) -> None:
    frame = bars(5)
    frame.to_csv(tmp_path / "named.csv")
    frame.rename_axis(None).to_csv(tmp_path / "unnamed.csv")
    frame.rename_axis("Open time").to_csv(tmp_path / "open_time.csv")
    assert (tmp_path / "unnamed.csv").read_text().startswith(",open,high")
    for name in ("named.csv", "unnamed.csv", "open_time.csv"):
        loaded = load_ohlcv(tmp_path / name)
        assert loaded.index.equals(frame.index), name
        assert loaded["close"].iloc[2] == frame["close"].iloc[2]


def binance_text(frame: pd.DataFrame, unit: str = "ms") -> str:
    factor = {"s": 1, "ms": 1_000, "us": 1_000_000}[unit]
    lines = []
    for stamp, row in frame.iterrows():
        start = int(stamp.timestamp()) * factor
        quote = row["volume"] * row["close"]
        lines.append(
            f"{start},{row['open']:.2f},{row['high']:.2f},{row['low']:.2f},{row['close']:.2f},{row['volume']:.4f},"
            f"{start + 3600 * factor - 1},{quote:.4f},{100 + len(lines)},{row['volume'] / 2:.4f},{quote / 2:.4f},0"
        )
    return "\n".join(lines) + "\n"


def test_gzip_files_are_read_decompressed(tmp_path: Path) -> None:
    frame = bars(6)
    headerless = tmp_path / "BTCUSDT-1h-2024-03.csv.gz"
    headerless.write_bytes(gzip.compress(binance_text(frame).encode()))
    loaded = load_ohlcv(headerless)
    assert loaded.attrs["format"] == "binance" and loaded.index.equals(frame.index)
    assert loaded["trades"].tolist() == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    with_header = tmp_path / "bars.csv.gz"
    with_header.write_bytes(gzip.compress(frame.to_csv().encode()))
    assert load_ohlcv(with_header)["close"].iloc[-1] == frame["close"].iloc[-1]
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(binance_text(bars(200)).encode())[:300])
    with pytest.raises(DataError, match=re.escape(f"{truncated}: corrupt or truncated compressed file")):
        load_ohlcv(truncated)


def test_zip_of_one_csv_and_zips_that_are_not(tmp_path: Path) -> None:
    frame = bars(6)
    one = tmp_path / "BTCUSDT-1h-2024-03.zip"
    with zipfile.ZipFile(one, "w") as archive:
        archive.writestr("BTCUSDT-1h-2024-03.csv", binance_text(frame))
    assert load_ohlcv(one).index.equals(frame.index)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("BTCUSDT-1h-2024-03.csv", binance_text(frame))
        archive.writestr("BTCUSDT-1h-2024-04.csv", binance_text(frame))
    with pytest.raises(DataError) as error:
        load_ohlcv(two)
    assert str(error.value) == (
        f"{two}: a zip must hold exactly one data file, this one holds 2 "
        "(BTCUSDT-1h-2024-03.csv, BTCUSDT-1h-2024-04.csv)"
    )
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("klines/", "")
    with pytest.raises(
        DataError, match=re.escape(f"{empty}: a zip must hold exactly one data file, this one holds 0 (klines/)")
    ):
        load_ohlcv(empty)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(DataError, match=re.escape(f"{broken}: corrupt or truncated compressed file")):
        load_ohlcv(broken)


def monthly_files(folder: Path) -> pd.DataFrame:
    """Binance monthly dumps across the 2025 switch from milliseconds to microseconds."""
    frame = bars(9, start="2024-12-31 19:00")
    folder.mkdir()
    (folder / "BTCUSDT-1h-2024-11.csv").write_text(binance_text(frame.iloc[:2]))  # ms
    (folder / "BTCUSDT-1h-2024-12.csv").write_text(binance_text(frame.iloc[2:5]))  # ms
    (folder / "BTCUSDT-1h-2025-01.csv").write_text(binance_text(frame.iloc[5:], unit="us"))
    return frame


def test_directory_and_glob_of_monthly_files(tmp_path: Path) -> None:
    frame = monthly_files(tmp_path / "data")
    from_dir = load_ohlcv(tmp_path / "data")
    assert from_dir.index.equals(frame.index) and from_dir.attrs["format"] == "binance"
    assert from_dir.attrs["files"][0].endswith("BTCUSDT-1h-2024-11.csv")
    np.testing.assert_array_equal(from_dir["close"].to_numpy(), frame["close"].to_numpy())
    from_glob = load_ohlcv(str(tmp_path / "data" / "BTCUSDT-1h-2024-*.csv"))
    assert from_glob.index.equals(frame.index[:5])
    # Files are joined in time order, not name order.
    (tmp_path / "data" / "BTCUSDT-1h-2024-11.csv").rename(tmp_path / "data" / "BTCUSDT-1h-2025-02.csv")
    assert load_ohlcv(tmp_path / "data").index.equals(frame.index)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}/nothing-*.csv: no files match this pattern")):
        load_ohlcv(str(tmp_path / "nothing-*.csv"))
    # A bad value is named by its file and line.
    december = tmp_path / "data" / "BTCUSDT-1h-2024-12.csv"
    lines = december.read_text().splitlines()
    lines[1] = lines[1].replace(f"{frame['close'].iloc[3]:.2f}", "")
    december.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        load_ohlcv(tmp_path / "data")
    assert str(error.value) == (
        f"{tmp_path / 'data'}: column 'close' has NaN at BTCUSDT-1h-2024-12.csv line 2 (2024-12-31T22:00:00+00:00)"
    )


def test_overlapping_files_identical_bars_dropped_conflicting_ones_refused(tmp_path: Path) -> None:
    frame = bars(10)
    folder = tmp_path / "overlap"
    folder.mkdir()
    (folder / "a.csv").write_text(binance_text(frame.iloc[:6]))
    (folder / "b.csv").write_text(binance_text(frame.iloc[4:]))
    with pytest.warns(RepairWarning, match=r"2 identical bars in overlapping files dropped: b.csv line 1 "):
        loaded, report = load_ohlcv(folder, return_report=True)
    assert loaded.index.equals(frame.index)
    assert report.overlaps[["file", "line", "kept_file", "kept_line"]].values.tolist() == [
        ["b.csv", 1, "a.csv", 5],
        ["b.csv", 2, "a.csv", 6],
    ]
    changed = frame.iloc[4:].copy()
    changed.iloc[1, changed.columns.get_loc("close")] += 5.0
    changed.iloc[1, changed.columns.get_loc("high")] += 5.0
    (folder / "b.csv").write_text(binance_text(changed))
    with pytest.raises(DataError) as error:
        load_ohlcv(folder)
    assert str(error.value) == (
        f"{folder}: a.csv and b.csv overlap with different bars at 2024-03-01T05:00:00+00:00: a.csv line 6 has "
        f"open={frame['open'].iloc[5]:g}, high={frame['high'].iloc[5]:g}, low={frame['low'].iloc[5]:g}, "
        f"close={frame['close'].iloc[5]:g}, volume={frame['volume'].iloc[5]:g}, b.csv line 2 has "
        f"open={changed['open'].iloc[1]:g}, high={changed['high'].iloc[1]:g}, low={changed['low'].iloc[1]:g}, "
        f"close={changed['close'].iloc[1]:g}, volume={changed['volume'].iloc[1]:g}; "
        "remove one of the files or the overlapping rows"
    )


def test_parquet_and_corrupt_parquet(tmp_path: Path) -> None:
    frame = bars(5)
    frame.to_parquet(tmp_path / "bars.parquet")  # the index is stored as pandas metadata
    assert load_ohlcv(tmp_path / "bars.parquet").index.equals(frame.index)
    frame.reset_index().to_parquet(tmp_path / "columns.parquet", index=False)
    assert load_ohlcv(tmp_path / "columns.parquet")["close"].tolist() == frame["close"].tolist()
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes((tmp_path / "bars.parquet").read_bytes()[:200])
    with pytest.raises(DataError, match=re.escape(f"{corrupt}: not a readable Parquet file: ")):
        load_ohlcv(corrupt)
    bad = frame.copy()
    bad.iloc[3, 3] = -1.0
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"non-positive price -1.0 at row 3 \(2024-03-01T03:00:00\+00:00\)"):
        load_ohlcv(tmp_path / "bad.parquet")


def test_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    path = tmp_path / "export_eu.csv"
    path.write_text(
        "Date;Open;High;Low;Close;Volume\n"
        "31.01.2024 13:00;42.150,50;42.300,00;42.100,25;42.250,75;12,5\n"
        "31.01.2024 14:00;42250,75;42400;42200,5;42390,1;3,25\n"
    )
    loaded = load_ohlcv(path)
    assert loaded.index.tolist() == [ts("2024-01-31 13:00"), ts("2024-01-31 14:00")]
    assert loaded.iloc[0].tolist() == [42150.5, 42300.0, 42100.25, 42250.75, 12.5]
    assert loaded.iloc[1].tolist() == [42250.75, 42400.0, 42200.5, 42390.1, 3.25]
    path.write_text(path.read_text().replace("42400;", "42.40;"))  # a decimal point among decimal commas
    with pytest.raises(DataError, match=r"column 'High' has a non-numeric value '42.40' at line 3"):
        load_ohlcv(path)
    dots = tmp_path / "semicolon_dots.csv"
    dots.write_text("timestamp;open;high;low;close;volume\n2024-01-01;1.5;2.5;1.25;2.0;10\n2024-01-02;2;3;1.5;2.5;5\n")
    assert load_ohlcv(dots)["low"].tolist() == [1.25, 1.5]


def test_separate_date_and_time_columns(tmp_path: Path) -> None:
    path = tmp_path / "date_time.csv"
    path.write_text(
        "Date,Time,Open,High,Low,Close,Volume\n"
        "2024-01-02,09:00,10,11,9,10.5,100\n"
        "2024-01-02,09:30,10.5,12,10,11,50\n"
        "2024-01-02,10:00:00,11,11.5,10.5,11.2,70\n"
    )
    loaded = load_ohlcv(path)
    assert loaded.index.tolist() == [ts("2024-01-02 09:00"), ts("2024-01-02 09:30"), ts("2024-01-02 10:00")]
    assert loaded.attrs["freq"] == "30min"
    path.write_text(path.read_text().replace("09:30", "9h30"))
    with pytest.raises(DataError, match=r"column 'Time' has an unparseable time of day '9h30' at line 3"):
        load_ohlcv(path)


def test_yyyymmdd_integers_are_dates_not_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    path.write_text(
        "date,open,high,low,close,volume\n20240102,100,110,95,105,1\n20240103,105,112,101,110,2\n20240104,110,111,99,100,3\n"
    )
    loaded = load_ohlcv(path)
    assert loaded.index.tolist() == [ts("2024-01-02"), ts("2024-01-03"), ts("2024-01-04")]
    assert loaded.attrs["freq"] == "1d"  # not '1s' (epoch seconds), which made periods_per_year 31,536,000
    path.write_text(path.read_text().replace("20240103", "20240231"))
    with pytest.raises(DataError, match=r"column 'date' holds YYYYMMDD dates but 20240231 at line 3 is not a date"):
        load_ohlcv(path)


@pytest.mark.parametrize(("unit", "factor"), [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_epoch_units_per_file(tmp_path: Path, unit: str, factor: int) -> None:
    path = tmp_path / f"epoch_{unit}.csv"
    start = 1_709_251_200  # 2024-03-01
    body = "".join(f"{(start + 3600 * i) * factor},10,11,9,10.5,1\n" for i in range(3))
    path.write_text("time,open,high,low,close,volume\n" + body)
    assert load_ohlcv(path).index.tolist() == [ts("2024-03-01 00:00"), ts("2024-03-01 01:00"), ts("2024-03-01 02:00")]


def test_mixed_epoch_units_in_one_column_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        "1709251200000,10,11,9,10.5,1\n1709254800,10,11,9,10.5,1\n1709258400000,10,11,9,10.5,1\n"
    )
    with pytest.raises(DataError) as error:
        load_ohlcv(path)
    assert str(error.value) == (
        f"{path}: column 'time' mixes epoch units: 1709254800 at line 3 is in seconds but the column is in "
        "milliseconds (e.g. 1709251200000 at line 2); one column must use one unit"
    )


def test_missing_file_and_directories_without_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_ohlcv(tmp_path / "BTCUSDT-1h.csv")
    assert str(error.value) == f"{tmp_path / 'BTCUSDT-1h.csv'}: file not found"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("no data here")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'empty'}: is a directory with no data files in it")):
        load_ohlcv(tmp_path / "empty")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'empty'}: is a directory, expected a file")):
        load_ohlcv([tmp_path / "empty"])


def test_library_errors_become_data_errors_with_the_line(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,3\n2024-01-02,1,2,0.5,1.5,3,9,9\n")
    with pytest.raises(DataError, match=re.escape(f"{ragged}: cannot parse file: ") + r".*line 3"):
        load_ohlcv(ragged)
    headerless = tmp_path / "headerless.csv"
    headerless.write_text("1709251200,1,2,0.5,1.5\n1709254800,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match=r"line 1 has 5 fields and no header; cannot tell which column is which"):
        load_ohlcv(headerless)
    no_date = tmp_path / "no_date.csv"
    no_date.write_text("time,open,high,low,close,volume\n09:00,1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match="column 'time' holds times of day but there is no date column"):
        load_ohlcv(no_date)


# --------------------------------------------------------------------------------------------
# Panels


def test_panel_from_the_long_coinmarketcap_slice() -> None:
    panel = load_panel(FIXTURES / "coinmarketcap_daily_slice.csv", min_assets=2)
    assert isinstance(panel, Panel) and panel.assets == ("BTCBitcoin", "ETHEthereum")
    assert len(panel) == 61 and panel.freq == "1d"
    assert panel.index[0] == ts("2022-08-01") and panel.index[-1] == ts("2022-09-30")
    assert panel.close.loc[ts("2022-08-01")].tolist() == [23314.2, 1635.2]
    btc = panel["BTCBitcoin"]
    pd.testing.assert_frame_equal(
        btc, load_ohlcv(FIXTURES / "coinmarketcap_daily_slice.csv", asset="BTCBitcoin"), check_like=True
    )
    eth_only = load_panel(FIXTURES / "coinmarketcap_daily_slice.csv", ["ETHEthereum"])
    assert eth_only.assets == ("ETHEthereum",)
    with pytest.raises(DataError, match=r"1 asset\(s\) left, but the panel needs at least 2"):
        load_panel(FIXTURES / "coinmarketcap_daily_slice.csv", ["ETHEthereum"], min_assets=2)


def test_panel_unknown_assets_and_repeated_asset_rows(tmp_path: Path) -> None:
    source = FIXTURES / "coinmarketcap_daily_slice.csv"
    with pytest.raises(DataError) as error:
        load_panel(source, ["BTC", "ETHEthereum"])
    assert str(error.value) == (
        f"{source}: unknown asset 'BTC' ('BTC': did you mean 'BTCBitcoin'?); available: BTCBitcoin, ETHEthereum"
    )
    long = tmp_path / "long.csv"
    long.write_text(
        "date,asset,price_usd\n"
        "2024-01-01,BTC,42000\n2024-01-01,ETH,2300\n2024-01-02,BTC,43000\n2024-01-02,ETH,2350\n2024-01-02,BTC,43000\n"
    )
    with pytest.raises(DataError) as error:
        load_panel(long)
    assert str(error.value).startswith(
        f"{long} [BTC]: the rows are oldest first, but with 1 duplicate timestamp: line 6 "
        "(2024-01-02T00:00:00+00:00) repeats line 4 (same values). Repair with load_panel(..., repair=True)"
    )
    with pytest.warns(RepairWarning, match=r"(?s)\[BTC\].*line 6 \(2024-01-02T00:00:00\+00:00\) repeats line 4"):
        panel = load_panel(long, repair=True)
    assert panel.reports["BTC"].n_duplicates == 1 and panel.close["BTC"].tolist() == [42000.0, 43000.0]


def wide_panel(path: Path) -> Path:
    """Daily closes: ALT lists on day 3 and is delisted after day 6, NEW has a gap on day 5."""
    path.write_text(
        "date,BTC,ALT,NEW\n"
        "2024-01-01,42000,,\n"
        "2024-01-02,42500,,10\n"
        "2024-01-03,43000,1.5,11\n"
        "2024-01-04,43500,1.25,12\n"
        "2024-01-05,44000,1.0,\n"
        "2024-01-06,44500,0.5,14\n"
        "2024-01-07,45000,,15\n"
    )
    return path


def test_wide_panel_keeps_listing_and_delisting_and_never_fills_outside_a_life(tmp_path: Path) -> None:
    path = wide_panel(tmp_path / "closes.csv")
    with pytest.warns(
        GapWarning, match=r"1 asset\(s\) have gaps inside their listed life: NEW \(1 gap\(s\), 1 missing"
    ):
        panel = load_panel(path, min_assets=2)
    assert panel.assets == ("BTC", "ALT", "NEW") and len(panel) == 7
    assert panel.listed.to_dict() == {"BTC": ts("2024-01-01"), "ALT": ts("2024-01-03"), "NEW": ts("2024-01-02")}
    assert panel.delisted.to_dict() == {"BTC": ts("2024-01-07"), "ALT": ts("2024-01-06"), "NEW": ts("2024-01-07")}
    close = panel.close
    assert close["ALT"].isna().tolist() == [True, True, False, False, False, False, True]
    assert np.isnan(close.loc[ts("2024-01-05"), "NEW"])  # an unfilled gap
    assert panel.alive["ALT"].tolist() == [False, False, True, True, True, True, False]
    assert panel.alive["NEW"].tolist() == [False, True, True, True, True, True, True]
    assert panel["ALT"].index.tolist() == [ts(f"2024-01-0{d}") for d in (3, 4, 5, 6)]
    assert panel["ALT"].attrs["close_only"] is True and (panel["ALT"]["volume"] == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filled = load_panel(path, fill_missing=True)
    assert filled.close.loc[ts("2024-01-05"), "NEW"] == 12.0  # inside the life: carried forward
    assert filled.close["ALT"].isna().tolist() == [True, True, False, False, False, False, True]  # outside: not
    assert np.isnan(filled.close.loc[ts("2024-01-01"), "NEW"])  # never back-filled before listing
    assert filled.aligned("ALT")["close"].iloc[2] == 1.5
    with pytest.raises(DataError, match=r"unknown asset 'ETH'.*available: BTC, ALT, NEW"):
        load_panel(path, ["ETH"])
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().replace("1.25", "1.25?"))
    with pytest.raises(DataError, match=r"bad.csv \[ALT\]: column 'ALT' has a non-numeric value '1.25\?' at line 5"):
        load_panel(bad)


def test_panel_from_a_dict_of_sources_on_the_union_clock(tmp_path: Path) -> None:
    btc = bars(6, seed=1)
    eth = bars(4, start="2024-03-01 03:00", seed=2)
    monthly_files(tmp_path / "sol")
    panel = load_panel({"BTC": btc, "ETH": eth, "SOL": tmp_path / "sol"}, min_assets=3)
    assert panel.assets == ("BTC", "ETH", "SOL")
    assert panel.index[0] == ts("2024-03-01 00:00") and panel.index[-1] == ts("2025-01-01 03:00")
    assert panel.listed["ETH"] == ts("2024-03-01 03:00") and panel.delisted["ETH"] == ts("2024-03-01 06:00")
    assert panel.close["ETH"].notna().sum() == 4 and panel.field("volume")["BTC"].notna().sum() == 6
    with pytest.raises(DataError, match=r"panel \[ETH\]: high < low at row 1 \(2024-03-01T04:00:00\+00:00\)"):
        load_panel({"BTC": btc, "ETH": eth.assign(high=eth["low"].where(eth.index != eth.index[1], 1.0))})
    with pytest.raises(DataError, match=r"panel: unknown asset 'DOGE'"):
        load_panel({"BTC": btc}, ["DOGE"])
    with pytest.raises(DataError, match=r"holds the bars of one asset \(no asset column\)"):
        load_panel(btc)
