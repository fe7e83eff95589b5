"""What the feature spec costs when an env is built: ten features over 100,000 hourly bars, with the
leak check on and off, measured in the same run.

Three measurements, each the best of ``--rounds`` interleaved rounds (on and off alternate):

* the feature pipeline alone (:func:`sb3_crypto.data.pipeline.compute_blocks`: the five base
  channels and the ten features, with their warm-up and finiteness checks);
* the whole :func:`~sb3_crypto.data.build_market` (validating the frame, splits, the pipeline, the
  normaliser fitted on the warm-up, the normalised float32 matrix) - what every env pays once;
* per feature: computing it on the full data, and its leak check (recomputing it on the prefixes
  :func:`~sb3_crypto.data.pipeline.leak_check_cuts` chooses and comparing).

The ratio printed is leak check on / off. The ten features are those of ``bench_env_speed.py``.

Run: ``python benchmarks/bench_features.py [--bars 100000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from bench_env_speed import TEN_FEATURES


def best_of(rounds: int, *functions: Callable[[], object]) -> list[float]:
    """Seconds of each function: the best of ``rounds`` interleaved calls."""
    best = [float("inf")] * len(functions)
    for _ in range(rounds):
        for k, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from sb3_crypto.data import build_market, chronological_split, feature_spec, infer_freq, synthetic_ohlcv
    from sb3_crypto.data.pipeline import check_leaks, compute_blocks, compute_item, leak_check_cuts

    frame = synthetic_ohlcv(args.bars, seed=0)
    spec_on = feature_spec(TEN_FEATURES)
    spec_off = feature_spec({**TEN_FEATURES, "leak_check": False})
    splits = chronological_split(frame.index)
    warmup_end = round(0.1 * splits["train"][1])
    step = infer_freq(frame.index)

    def pipeline(spec: object) -> Callable[[], object]:
        return lambda: compute_blocks(frame, spec, splits=splits, warmup_end=warmup_end, step=step)

    def market(features: object) -> Callable[[], object]:
        return lambda: build_market(frame, features=features)

    on, off = best_of(args.rounds, pipeline(spec_on), pipeline(spec_off))
    market_on, market_off, market_plain = best_of(
        args.rounds, market(TEN_FEATURES), market(spec_off.to_dict()), market("zscore")
    )
    built = build_market(frame, features=TEN_FEATURES)
    print(f"{args.bars:,} hourly bars, ten features ({len(built.channels)} channels with the 5 base ones)")
    print(f"{'':<44}{'leak check on':>15}{'off':>10}{'on / off':>10}")
    print(f"{'feature pipeline (compute_blocks)':<44}{on:>14.3f}s{off:>9.3f}s{on / off:>9.2f}x")
    ratio = market_on / market_off
    print(f"{'build_market (what each env pays once)':<44}{market_on:>14.3f}s{market_off:>9.3f}s{ratio:>9.2f}x")
    print(f"{'build_market with features=zscore, for scale':<44}{'':>15}{market_plain:>9.3f}s")

    print(f"\n{'feature':<44}{'compute':>10}{'leak check':>12}{'cuts':>6}")
    for item in spec_on.indicators:
        cuts = leak_check_cuts(len(frame), splits, warmup_end)

        def compute(part: object, item: object = item) -> object:
            return compute_item(item, part, step)

        channels, values = compute(frame)
        full, leak = best_of(
            args.rounds,
            lambda compute=compute: compute(frame),
            lambda compute=compute, channels=channels, values=values, cuts=cuts, item=item: check_leaks(
                item.label, item.position, compute, frame, channels, values, cuts
            ),
        )
        print(f"{item.label:<44}{full * 1e3:>8.1f}ms{leak * 1e3:>10.1f}ms{len(cuts):>6}")


if __name__ == "__main__":
    main()
