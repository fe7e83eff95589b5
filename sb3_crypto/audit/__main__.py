"""``python -m sb3_crypto.audit``: is a trained agent's edge real? A verdict with its reasons.

Examples::

    python -m sb3_crypto.audit --run logs/sac/CryptoTrading-v0_1
    python -m sb3_crypto.audit --run logs/sac/CryptoTrading-v0_1 --workers 2 --null-runs 39 --seeds 10
    python -m sb3_crypto.audit --model agent.zip --study sac-tuning --storage sqlite:///tuning.db
    # on other machines, sharing the training jobs of audits started with --storage:
    python -m sb3_crypto.audit --worker --storage postgresql://user@host/db --workers 2

Writes ``audit.json`` and ``audit.html`` into ``<run>/audit/`` (``<model dir>/<model stem>_audit/``
for ``--model``; ``--out`` elsewhere). An audit already there is refused unless ``--overwrite``; the
trained null, power and seed runs are cached by configuration, data, budget and seed in
``<out>/cache`` (``--cache``), so a second audit reuses them. Exit status 0 whatever the verdict;
2 for bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from sb3_crypto.audit.core import PARTS, Budget, audit, resolve_target
from sb3_crypto.audit.costs import DEFAULT_MULTIPLES
from sb3_crypto.audit.markets import NULL_KINDS
from sb3_crypto.common.cli import int_in, usage_errors


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected multiples >= 0 separated by commas, got {text!r}")
    return values


def _names(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(x.strip() for x in text.split(",") if x.strip())
        wrong = [name for name in names if name not in choices]
        if wrong or not names:
            raise argparse.ArgumentTypeError(f"expected names out of {','.join(choices)}, got {text!r}")
        return names

    parse.__name__ = "names"
    return parse


def parser() -> argparse.ArgumentParser:
    """The command line of the audit."""
    p = argparse.ArgumentParser(
        prog="python -m sb3_crypto.audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="RL Zoo run folder logs/<algo>/<env>_<n>")
    target.add_argument("--model", help="a saved model .zip (the run's config.yml is used when beside it)")
    target.add_argument("--worker", action="store_true", help="run waiting audit jobs from --storage, then exit")
    p.add_argument("--out", help="output folder (default <run>/audit or <model dir>/<stem>_audit)")
    p.add_argument("--overwrite", action="store_true", help="replace an audit already in the output folder")
    p.add_argument("--cache", help="folder of cached training results (default <out>/cache)")
    p.add_argument("--parts", type=_names(PARTS), default=PARTS, help=f"parts to run (default all: {','.join(PARTS)})")
    p.add_argument("--skip", type=_names(PARTS), default=(), help="parts to leave out")
    p.add_argument("--workers", type=int_in(1, 256), default=1, help="training processes at a time (default 1)")
    p.add_argument("--storage", help="Optuna storage URL shared by machines for the training jobs (and --study)")
    p.add_argument("--study", help="Optuna study that selected the configuration (selection-bias part)")
    p.add_argument("--study-storage", help="storage of --study when it differs from --storage")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    budget = p.add_argument_group("budgets (steps 0: the run's own n_timesteps)")
    budget.add_argument("--null-runs", type=int_in(0), default=19, help="null runs (default 19: p can reach 0.05)")
    budget.add_argument("--null-steps", type=int_in(0), default=0, help="training steps of each null run")
    budget.add_argument(
        "--null-kinds", type=_names(NULL_KINDS), default=("sign", "synthetic"), help="null markets, used in turn"
    )
    budget.add_argument("--block-bars", type=int_in(1), default=24, help="block length of the bootstrap null")
    budget.add_argument("--power-runs", type=int_in(0), default=3, help="power runs (default 3)")
    budget.add_argument("--power-steps", type=int_in(0), default=0, help="training steps of each power run")
    budget.add_argument(
        "--power-momentum", type=float, default=None, help="planted signal (default: the run's own, else 0.5)"
    )
    budget.add_argument("--seeds", type=int_in(0), default=5, help="seeds of the configuration (default 5)")
    budget.add_argument("--seed-steps", type=int_in(0), default=0, help="training steps of each seed")
    budget.add_argument(
        "--cost-multiples",
        type=_floats,
        default=DEFAULT_MULTIPLES,
        help="multiples of the run's fee and slippage (default " + ",".join(f"{m:g}" for m in DEFAULT_MULTIPLES) + ")",
    )
    p.add_argument("--idle", type=float, default=0.0, help="--worker: seconds to wait for new jobs before exiting")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> Any:
    """Command-line entry point."""
    from sb3_crypto.algorithms.model_io import ModelEnvMismatch
    from sb3_crypto.audit.jobs import StorageError
    from sb3_crypto.common.threads import configure_threads
    from sb3_crypto.data import DataError
    from sb3_crypto.files import OutputExistsError

    p = parser()
    args = p.parse_args(argv)
    configure_threads()
    if args.worker:
        from sb3_crypto.audit.jobs import work

        if not args.storage:
            p.error("--worker needs --storage (the Optuna storage the audits share)")
        with usage_errors(p, StorageError):
            ran = work(args.storage, args.cache or "audit_cache", workers=args.workers, idle_seconds=args.idle)
        print(f"ran {ran} audit jobs")
        return ran
    if not 0 < args.alpha < 1:
        p.error(f"--alpha must be in (0, 1), got {args.alpha}")
    if args.study and not (args.storage or args.study_storage):
        p.error("--study needs --storage (or --study-storage): where the Optuna study is")
    if "selection" in args.parts and args.parts != PARTS and not args.study:
        p.error("--parts selection needs --study NAME (the Optuna study that chose the configuration)")
    parts = [part for part in args.parts if part not in args.skip]
    budget = Budget(
        null_runs=args.null_runs,
        null_steps=args.null_steps,
        null_kinds=args.null_kinds,
        block_bars=args.block_bars,
        power_runs=args.power_runs,
        power_steps=args.power_steps,
        power_momentum=args.power_momentum,
        seeds=args.seeds,
        seed_steps=args.seed_steps,
        cost_multiples=args.cost_multiples,
    )
    errors = (FileNotFoundError, NotADirectoryError, OutputExistsError, ModelEnvMismatch, DataError, StorageError)
    with usage_errors(p, *errors, ValueError):
        target = resolve_target(run=args.run, model=args.model)
    with usage_errors(p, *errors):
        return audit(
            target,
            out=args.out,
            parts=parts,
            budget=budget,
            workers=args.workers,
            cache=args.cache,
            storage=args.storage,
            study=args.study,
            study_storage=args.study_storage or args.storage,
            alpha=args.alpha,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )


if __name__ == "__main__":
    main()
