"""Prepare market data: read any supported format, validate it, write the canonical form.

Examples::

    python scripts/prepare_data.py BTCUSDT-1h.csv --out data/btc_1h.parquet
    python scripts/prepare_data.py coinmarketcap_daily_2013_2022.csv --asset BTCBitcoin --out data/btc_daily.csv
    python scripts/prepare_data.py BTCUSDT-1m.csv --fill-missing --sessions --context 90 --session 60 \\
        --out data/btc_sessions.npz

Without ``--sessions`` the output is the canonical OHLCV frame (CSV or Parquet by suffix), which
every environment takes as ``data=``; with it, the S3 volatility sessions as ``.npz`` for
``CryptoFuturesSession-v0``. Errors name the file, column and row (see ``load_ohlcv``).

The output is written atomically (a temporary file beside it, renamed once complete); an existing
output is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from sb3_crypto.data import DataError, RepairWarning, find_gaps, load_ohlcv
from sb3_crypto.data.sessions import extract_sessions
from sb3_crypto.files import OutputExistsError, atomic_path, refuse_existing


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="input file (CSV, CSV.gz, Parquet; Binance, CryptoDataDownload, generic)")
    parser.add_argument("--out", required=True, help="output: .csv / .parquet (bars) or .npz (sessions)")
    parser.add_argument("--asset", default=None, help="asset to select from a long-format file")
    parser.add_argument("--fill-missing", action="store_true", help="carry the last close over missing bars")
    parser.add_argument("--repair", action="store_true", help="sort rows, drop repeated timestamps, report changes")
    parser.add_argument("--sessions", action="store_true", help="extract S3 volatility sessions")
    parser.add_argument("--context", type=int, default=90)
    parser.add_argument("--session", type=int, default=60)
    parser.add_argument("--signal-window", type=int, default=10)
    parser.add_argument("--signal-threshold", type=float, default=0.05)
    parser.add_argument("--contrast", type=float, default=5.0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.sessions and out.suffix != ".npz":
        out = out.with_suffix(out.suffix + ".npz")  # what numpy writes
    try:
        refuse_existing([out], overwrite=args.overwrite)
    except OutputExistsError as error:
        parser.error(str(error))
    try:
        with warnings.catch_warnings():  # the report is printed below, once
            warnings.simplefilter("ignore", RepairWarning)
            frame, report = load_ohlcv(
                args.source, asset=args.asset, fill_missing=args.fill_missing, repair=args.repair, return_report=True
            )
        if report.changed:
            print(report.summary())
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.sessions:
            sessions = extract_sessions(
                frame,
                context=args.context,
                session=args.session,
                signal_window=args.signal_window,
                signal_threshold=args.signal_threshold,
                contrast=args.contrast,
            )
            written = sessions.save(out)
            print(f"{len(sessions)} sessions of {sessions.context}+{sessions.session} bars -> {written}")
            return 0
        table = frame.reset_index()
        with atomic_path(out) as temporary:
            if out.suffix in (".parquet", ".pq"):
                table.to_parquet(temporary, index=False)
            else:
                table.to_csv(temporary, index=False)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    gaps = find_gaps(frame)
    print(
        f"{len(frame)} bars {frame.index[0]} .. {frame.index[-1]} (every {frame.attrs.get('freq')}), "
        f"{len(gaps)} gap(s), format {frame.attrs.get('format')} -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
