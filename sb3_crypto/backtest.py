"""``python -m sb3_crypto.backtest``: backtest a saved model on a split against the baselines.

``python -m sb3_crypto.backtest --model logs/sac/CryptoTrading-v0_1/CryptoTrading-v0.zip`` evaluates
an RL Zoo run on the untouched ``test`` split (the environment settings are read from the run's
saved ``config.yml``) and prints the agent beside the baselines under the same costs: buy-and-hold,
flat and random for the equity-curve envs; every session once against flat, long/short-and-hold,
random and S3's supervised baseline for ``CryptoFuturesSession-v0``; S1's four DCA baselines for
``CryptoDCA-v0``. The work is done by :mod:`sb3_crypto.evaluation`.

``--out DIR`` receives ``metrics.json`` and the CSV files and figures, written once the backtest has
finished, each atomically; a folder that already holds them is refused unless ``--overwrite``. The
same report as one interactive page, ``report.html`` (opens offline), is written there too when
plotly, the ``report`` extra, is installed (``pip install "sb3_crypto[report]"``).
A missing model file, a model that does not fit the env (its observation space differs from the
env's made with the run's settings) and an occupied ``--out`` are reported in one line with exit
status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sb3_crypto._aliases import moved_names

_EVALUATION = "sb3_crypto.evaluation"
__getattr__ = moved_names(
    __name__,
    {
        "BacktestResult": f"{_EVALUATION}.rollout",
        "PolicyLike": f"{_EVALUATION}.rollout",
        "predictor": f"{_EVALUATION}.rollout",
        "run_policy": f"{_EVALUATION}.rollout",
        "constant_exposure": f"{_EVALUATION}.baselines",
        "random_baseline": f"{_EVALUATION}.baselines",
        "compare_with_baselines": f"{_EVALUATION}.baselines",
        "format_table": f"{_EVALUATION}.reports",
        "trade_log": f"{_EVALUATION}.reports",
        "write_results": f"{_EVALUATION}.reports",
        "plot_equity": f"{_EVALUATION}.plots",
        "READINESS_CRITERIA": "sb3_crypto.metrics",
        "production_readiness": "sb3_crypto.metrics",
        "deflated_sharpe_ratio": "sb3_crypto.metrics",
        "saved_env_kwargs": "sb3_crypto.algorithms.model_io",
        "load_model": "sb3_crypto.algorithms.model_io",
    },
)


def main(argv: list[str] | None = None) -> Any:
    """Command-line entry point: backtest a saved model on a split against the baselines."""
    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.algorithms.model_io import (
        ModelEnvMismatch,
        check_model_fits_env,
        infer_env_id,
        load_model,
        model_file,
        refuse_vecnormalize,
        saved_env_kwargs,
        settings_source,
    )
    from sb3_crypto.common.cli import usage_errors
    from sb3_crypto.common.threads import configure_threads
    from sb3_crypto.data import DataError
    from sb3_crypto.evaluation.backtest import backtest
    from sb3_crypto.files import OutputExistsError

    parser = argparse.ArgumentParser(
        prog="python -m sb3_crypto.backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="path to a saved model .zip")
    parser.add_argument("--env", default=None, help="environment id (default: from an RL Zoo model name)")
    parser.add_argument("--algo", default=None, help="algorithm (inferred from an RL Zoo path)")
    parser.add_argument("--data", default=None, help="data file (default: the run's env_kwargs)")
    parser.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    parser.add_argument("--out", default=None, help="folder for metrics.json and equity.csv")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    parser.add_argument(
        "--readiness",
        default=None,
        help='production-readiness criteria as JSON, e.g. \'{"sharpe": [">", 1.5], "max_drawdown": [">", -0.2]}\'',
    )
    args = parser.parse_args(argv)
    configure_threads()

    criteria = {k: tuple(v) for k, v in json.loads(args.readiness).items()} if args.readiness else None
    with usage_errors(parser, FileNotFoundError, NotADirectoryError, OutputExistsError, ModelEnvMismatch, DataError):
        model_path = model_file(args.model)
        refuse_vecnormalize(model_path)
        env_id = args.env or infer_env_id(model_path) or "CryptoTrading-v0"
        env_kwargs = saved_env_kwargs(model_path)
        source = settings_source(model_path)
        if args.data is not None:
            env_kwargs["data"] = args.data
            source += ", with --data"
        model = load_model(model_path, args.algo)
        check_model_fits_env(
            model,
            env_id,
            {**env_kwargs, "split": args.split},
            source=source,
            hint="the run's config.yml next to the model (or --env, --data)",
        )
        return backtest(
            model,
            env_id,
            env_kwargs,
            split=args.split,
            deterministic=not args.stochastic,
            out=Path(args.out) if args.out else None,
            meta={"model": str(model_path)},
            readiness=criteria,
            overwrite=args.overwrite,
        )


if __name__ == "__main__":
    main()
