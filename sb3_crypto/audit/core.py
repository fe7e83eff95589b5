"""The audit: is a trained agent's edge real? Parts, verdict and the files it writes.

:func:`audit` runs the parts on a trained run (:class:`Target`) and writes ``audit.json`` (and
``audit.html`` when the HTML report is available):

1. ``leak``: :func:`~sb3_crypto.audit.leaks.leak_check` of the run's env settings;
2. ``null``: the run's configuration trained, with the same budget, on no-edge markets
   (:mod:`~sb3_crypto.audit.markets`); the p-value of the agent's test-split Sharpe ratio against
   the null runs' test-split Sharpe ratios;
3. ``power``: the same configuration on a synthetic market with a planted edge of known size; it is
   *recovered* when the median power run's Sharpe ratio (the lower middle one of an even count: more
   than half the runs) is positive and above the ``1 - alpha`` quantile of the null runs';
4. ``costs``: :func:`~sb3_crypto.audit.costs.cost_sweep` of the trained agent;
5. ``selection``: deflated Sharpe ratio and PBO from the Optuna study, when one is given;
6. ``seeds``: the configuration retrained with several seeds on the run's own market: IQM of the
   test-split Sharpe ratios and total returns with bootstrap confidence intervals.

The **verdict** (:func:`decide`):

* ``leak_found``: a feature or observation reads the future; nothing else counts.
* ``untestable``: the env has no equity curve to test, no null run finished, or the power test
  failed while no edge was found (the configuration is too weak to find even a planted edge, so
  "no edge" would say nothing about the market).
* ``edge``: the agent's test Sharpe ratio beats the null at ``alpha`` *and* it makes money after
  costs, *and* no requested check speaks against it (deflated Sharpe ratio below 0.95, PBO above
  0.5, a seed confidence interval reaching down to 0).
* ``no_evidence``: otherwise (the reasons say which test it failed).
"""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sb3_crypto.audit import costs as cost_part
from sb3_crypto.audit import jobs as job_part
from sb3_crypto.audit import markets
from sb3_crypto.audit.leaks import leak_check
from sb3_crypto.audit.stats import null_p_value, seed_summary
from sb3_crypto.files import check_output_dir, write_json, write_text

#: The audit's schema version (``audit.json`` ``"schema"``).
SCHEMA = 1
#: Verdicts, in the words the report uses.
VERDICTS = {
    "edge": "edge",
    "no_evidence": "no evidence of edge",
    "leak_found": "leak found",
    "untestable": "untestable",
}
#: Every part, in the order they are reported.
PARTS = ("leak", "null", "power", "costs", "selection", "seeds")
#: Files the audit writes into its output folder.
OUTPUT_FILES = ("audit.json", "audit.html")
#: The deflated Sharpe ratio (a probability) an edge needs.
DSR_THRESHOLD = 0.95
#: PBO above which the selection is called overfit.
PBO_THRESHOLD = 0.5

_RUN_FOLDER = re.compile(r"^(?P<env>.+)_\d+$")


@dataclass
class Target:
    """What is audited: the model, its algorithm and env, the run's hyper-parameters and env settings."""

    model: Path
    algo: str
    env_id: str
    hyperparams: dict[str, Any]
    env_kwargs: dict[str, Any]
    seed: int = 0
    steps: int = 0
    run_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: Whether the target was given as a run folder (``--run``) rather than a model file.
    by_run: bool = False

    @property
    def default_out(self) -> Path:
        """``<run>/audit`` for a run folder, ``<model dir>/<model stem>_audit`` for a model file."""
        if self.by_run and self.run_dir is not None:
            return self.run_dir / "audit"
        return self.model.parent / f"{self.model.stem}_audit"


def _read_yaml_pairs(path: Path) -> dict[str, Any]:
    import yaml

    with open(path) as handle:
        loaded = yaml.load(handle, Loader=yaml.UnsafeLoader)  # RL Zoo writes OrderedDicts as pairs
    return dict(loaded) if loaded else {}


def _package_hyperparams(algo: str, env_id: str) -> dict[str, Any] | None:
    import yaml

    path = Path(__file__).resolve().parent.parent / "hyperparams" / f"{algo}.yml"
    if not path.is_file():
        return None
    entries = yaml.safe_load(path.read_text()) or {}
    return dict(entries.get(env_id) or entries.get("default") or {}) or None


def resolve_target(run: str | Path | None = None, model: str | Path | None = None) -> Target:
    """The :class:`Target` of an RL Zoo run folder (``logs/<algo>/<env>_<n>``) or a model file.

    The hyper-parameters are the run's ``<env>/config.yml`` (what RL Zoo trained with, command-line
    overrides included); a model without one gets the package's ``hyperparams/<algo>.yml`` entry and
    the env settings of the observation spec in its zip, and a note says so.
    """
    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.algorithms.model_io import (
        infer_algo,
        infer_env_id,
        load_observation_spec,
        model_file,
        refuse_vecnormalize,
        run_config,
    )

    if (run is None) == (model is None):
        raise ValueError("give a run folder (--run) or a model file (--model), not both")
    run_dir: Path | None = None
    if run is not None:
        run_dir = Path(run)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"--run {run_dir}: no such folder (give logs/<algo>/<env>_<n>)")
        match = _RUN_FOLDER.match(run_dir.name)
        if match is None:
            raise ValueError(f"--run {run_dir}: not an RL Zoo run folder named <env>_<n>")
        path = run_dir / f"{match.group('env')}.zip"
        if not path.is_file():
            raise FileNotFoundError(f"--run {run_dir}: no final model {path.name} in it (did training finish?)")
    else:
        path = model_file(model)  # type: ignore[arg-type]
        match = _RUN_FOLDER.match(path.parent.name)
        if match and (path.parent / match.group("env") / "config.yml").is_file():
            run_dir = path.parent
    refuse_vecnormalize(path)
    algo = infer_algo(path)
    spec = load_observation_spec(path)
    env_id = infer_env_id(path) or (spec or {}).get("env_id")
    if env_id is None:
        raise ValueError(f"{path}: cannot tell the env id (not an RL Zoo run and no observation spec in the zip)")
    notes: list[str] = []
    config = run_config(path)
    if config is not None:
        hyperparams = _read_yaml_pairs(config)
        env_kwargs = dict(hyperparams.get("env_kwargs") or {})
        args_file = config.parent / "args.yml"
        args = _read_yaml_pairs(args_file) if args_file.is_file() else {}
    else:
        hyperparams = _package_hyperparams(algo, env_id) or {}
        env_kwargs = dict((spec or {}).get("env_kwargs") or hyperparams.get("env_kwargs") or {})
        args = {}
        notes.append(
            f"no config.yml beside {path.name}: the retraining uses the package's hyperparams/{algo}.yml for "
            f"{env_id} and the env settings {'of the observation spec in the zip' if spec else 'of that file'}"
        )
    if not hyperparams:
        raise ValueError(
            f"{path}: no hyper-parameters to retrain with (no config.yml beside it, and the package's "
            f"hyperparams/{algo}.yml has no entry for {env_id})"
        )
    seed = args.get("seed", 0)
    seed = int(seed) if isinstance(seed, int) and seed >= 0 else 0
    steps = int(args.get("n_timesteps", -1) or -1)
    if steps <= 0 and config is None:
        steps = _trained_steps(path)  # the budget the model had, not the package file's default
        if steps > 0:
            notes.append(f"the retraining budget is the {steps} steps {path.name} was trained for")
    if steps <= 0:
        steps = int(float(hyperparams.get("n_timesteps", 0)))
    return Target(path, algo, env_id, hyperparams, env_kwargs, seed, steps, run_dir, notes, by_run=run is not None)


def _trained_steps(path: Path) -> int:
    """The steps a saved SB3 model was trained for (``num_timesteps`` in its zip), 0 when unknown."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        return max(int(data.get("num_timesteps") or 0), 0)
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return 0


@dataclass
class Budget:
    """Runs and steps of each training part (steps 0: the run's own budget)."""

    null_runs: int = 19
    null_steps: int = 0
    null_kinds: tuple[str, ...] = ("sign", "synthetic")
    block_bars: int = 24
    power_runs: int = 3
    power_steps: int = 0
    power_momentum: float | None = None
    seeds: int = 5
    seed_steps: int = 0
    cost_multiples: tuple[float, ...] = cost_part.DEFAULT_MULTIPLES


def _planned_jobs(target: Target, budget: Budget, parts: Sequence[str], frame: Any, digest: str | None) -> list[dict]:
    """Every training job of the null, power and seed parts."""
    jobs: list[dict[str, Any]] = []

    def add(part: str, market: dict[str, Any], seed: int, steps: int) -> None:
        jobs.append(
            job_part.make_job(
                part=part,
                algo=target.algo,
                env_id=target.env_id,
                hyperparams=target.hyperparams,
                env_kwargs=target.env_kwargs,
                market=market,
                seed=seed,
                steps=steps or target.steps,
                data_digest=digest if market["kind"] in ("run", "sign", "bootstrap") else None,
            )
        )

    if "null" in parts:
        for k in range(budget.null_runs):
            kind = budget.null_kinds[k % len(budget.null_kinds)]
            market = markets.market_recipe(kind, 1000 + k, target.env_kwargs, frame, block_bars=budget.block_bars)
            add("null", market, target.seed + 1 + k, budget.null_steps)
    if "power" in parts:
        momentum = budget.power_momentum
        if momentum is None:
            own = (target.env_kwargs.get("synthetic_kwargs") or {}).get("momentum", 0.0)
            own_synthetic = target.env_kwargs.get("data", "synthetic") == "synthetic"
            momentum = float(own) if own_synthetic and float(own) > 0 else markets.DEFAULT_POWER_MOMENTUM
        for k in range(budget.power_runs):
            market = markets.market_recipe("power", 2000 + k, target.env_kwargs, frame, momentum=momentum)
            add("power", market, target.seed + 101 + k, budget.power_steps)
    if "seeds" in parts:
        for seed in range(budget.seeds):
            add("seeds", markets.market_recipe("run", 0, target.env_kwargs, frame), seed, budget.seed_steps)
    return jobs


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def null_part(observed: float, results: Sequence[Mapping[str, Any]], alpha: float) -> dict[str, Any]:
    """The null distribution and the agent's p-value against it."""
    done = [r for r in results if "error" not in r]
    failed = [r for r in results if "error" in r]
    sharpes = [float(r["sharpe"]) if r.get("sharpe") is not None else float("nan") for r in done]
    by_kind: dict[str, list[float]] = {}
    for result, sharpe in zip(done, sharpes):
        by_kind.setdefault(result.get("market_kind", "?"), []).append(sharpe)
    part: dict[str, Any] = {
        "n_runs": len(done),
        "n_failed": len(failed),
        "errors": [r["error"] for r in failed][:5],
        "sharpes": sharpes,
        "by_kind": by_kind,
        "observed_sharpe": observed,
        "alpha": alpha,
        "smallest_p_value": 1.0 / (len(done) + 1),
    }
    if done:
        part["p_value"] = null_p_value(observed, sharpes)
        part["null_median"] = float(np.nanmedian(sharpes)) if _finite(sharpes) else None
        part["null_quantile"] = float(np.nanquantile(sharpes, 1 - alpha)) if _finite(sharpes) else None
    else:
        part["p_value"] = None
    return part


def power_part(results: Sequence[Mapping[str, Any]], null_sharpes: Sequence[float], alpha: float) -> dict[str, Any]:
    """Whether the configuration recovers the planted edge (see the module docstring)."""
    done = [r for r in results if "error" not in r]
    sharpes = [float(r["sharpe"]) if r.get("sharpe") is not None else float("nan") for r in done]
    null = _finite(null_sharpes)
    bar = float(np.quantile(null, 1 - alpha)) if null else 0.0
    # The median run; of an even count the lower of the middle two, so that "recovered" always means
    # that more than half the runs cleared the bar (one of two is not enough). Unmeasured runs count low.
    ranked = [s if np.isfinite(s) else -np.inf for s in sharpes]
    median = float(np.quantile(ranked, 0.5, method="lower")) if ranked else float("nan")
    median = median if np.isfinite(median) else float("nan")
    recovered = bool(done) and np.isfinite(median) and median > max(bar, 0.0)
    return {
        "n_runs": len(done),
        "n_failed": len(results) - len(done),
        "errors": [r["error"] for r in results if "error" in r][:5],
        "sharpes": sharpes,
        "median_sharpe": median,
        "bar": max(bar, 0.0),
        "beating_bar": int(sum(1 for s in sharpes if np.isfinite(s) and s > max(bar, 0.0))),
        "recovered": recovered,
    }


def seeds_part(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """IQM and bootstrap confidence intervals over the seeds (Sharpe ratio and total return)."""
    done = [r for r in results if "error" not in r]
    part: dict[str, Any] = {
        "n_seeds": len(done),
        "n_failed": len(results) - len(done),
        "errors": [r["error"] for r in results if "error" in r][:5],
    }
    if done:
        per_year = float(done[0].get("periods_per_year", 8760.0))
        returns = [np.asarray(r["returns"], dtype=np.float64) for r in done]
        part["sharpe"] = seed_summary(returns, metric="sharpe", periods_per_year=per_year)
        part["total_return"] = seed_summary(returns, metric="total_return", periods_per_year=per_year)
        part["seeds"] = [r.get("seed") for r in done]
    return part


def decide(parts: Mapping[str, Any], alpha: float = 0.05) -> tuple[str, list[str]]:
    """The verdict and its reasons from the parts' results (see the module docstring)."""
    reasons: list[str] = []
    leak = parts.get("leak")
    if leak and leak.get("leak"):
        return "leak_found", list(leak.get("reasons", []))
    if leak and leak.get("error"):  # the features could not be checked: nothing else can be trusted
        return "untestable", list(leak.get("reasons", []))
    untestable = parts.get("untestable")
    if untestable:
        return "untestable", [untestable]
    costs = parts.get("costs") or {}
    reasons.extend(costs.get("findings", []))
    null = parts.get("null")
    if not null:
        missing = "the null test did not run (left out, or --null-runs 0)"
        return "untestable", [f"{missing}, so nothing says what chance alone would give", *reasons]
    if not null.get("n_runs"):
        return "untestable", ["no null run finished, so nothing says what chance alone would give", *reasons]
    p_value = null["p_value"]
    observed = null["observed_sharpe"]
    edge = p_value is not None and p_value <= alpha and observed > 0 and costs.get("pnl_after_costs", 1.0) > 0
    null_text = (
        f"test-split Sharpe {observed:.2f} against {null['n_runs']} null runs "
        f"(median {null.get('null_median') or 0:.2f}): p = {p_value:.3f}"
    )
    if edge:
        reasons.insert(0, f"{null_text} <= {alpha}")
    else:
        if p_value is not None and p_value > alpha:
            extra = ""
            if null["smallest_p_value"] > alpha:
                extra = f" (with {null['n_runs']} null runs p cannot go below {null['smallest_p_value']:.3f}: run more)"
            reasons.insert(0, f"{null_text} > {alpha}: the result does not stand out from no-edge markets{extra}")
        elif observed <= 0:
            reasons.insert(0, f"{null_text}, but the Sharpe ratio is not positive")
        else:
            reasons.insert(0, f"{null_text}, but the agent loses money after costs")
    power = parts.get("power")
    if power and power.get("n_runs"):
        if power["recovered"]:
            reasons.append(
                f"power: the configuration recovered a planted edge (median Sharpe {power['median_sharpe']:.2f} "
                f"above {power['bar']:.2f} in {power['beating_bar']} of {power['n_runs']} runs)"
            )
        elif not edge:
            return "untestable", [
                f"power: the configuration did not recover a planted edge of known size ({power['beating_bar']} of "
                f"{power['n_runs']} runs above {power['bar']:.2f}, median Sharpe {power['median_sharpe']:.2f}): it is "
                "too weak to find one, so 'no edge' would say nothing about this market",
                *reasons,
            ]
    if not edge:
        return "no_evidence", reasons
    demoted = []
    selection = parts.get("selection") or {}
    dsr = selection.get("deflated_sharpe")
    if dsr is not None and dsr < DSR_THRESHOLD:
        demoted.append(
            f"selection: deflated Sharpe ratio {dsr:.2f} < {DSR_THRESHOLD} over {selection['n_trials']} trials: "
            "the search explains the result"
        )
    pbo = (selection.get("pbo") or {}).get("pbo") if isinstance(selection.get("pbo"), Mapping) else None
    if pbo is not None and pbo > PBO_THRESHOLD:
        demoted.append(
            f"selection: PBO {pbo:.2f} > {PBO_THRESHOLD}: the best trial in-sample is usually not out of sample"
        )
    seeds = (parts.get("seeds") or {}).get("sharpe")
    if seeds and seeds["n_seeds"] >= 2 and not seeds["ci_low"] > 0:
        demoted.append(
            f"seeds: the IQM Sharpe over {seeds['n_seeds']} seeds is {seeds['iqm']:.2f} with a CI down to "
            f"{seeds['ci_low']:.2f}: the result depends on the seed"
        )
    if demoted:
        return "no_evidence", [*demoted, *reasons]
    # An edge names every check it passed, so that a reader sees the search and the seeds were looked at.
    if dsr is not None:
        reasons.append(
            f"selection: deflated Sharpe ratio {dsr:.2f} >= {DSR_THRESHOLD} over {selection['n_trials']} trials"
        )
    if pbo is not None:
        reasons.append(f"selection: PBO {pbo:.2f} <= {PBO_THRESHOLD}")
    if seeds and seeds["n_seeds"] >= 2:
        reasons.append(
            f"seeds: IQM Sharpe {seeds['iqm']:.2f} over {seeds['n_seeds']} seeds, 95 % CI "
            f"[{seeds['ci_low']:.2f}, {seeds['ci_high']:.2f}] above 0"
        )
    return "edge", reasons


def figures(parts: Mapping[str, Any]) -> dict[str, float | None]:
    """The flat ``figures`` of ``audit.json`` (numbers or null)."""
    null = parts.get("null") or {}
    power = parts.get("power") or {}
    costs = parts.get("costs") or {}
    selection = parts.get("selection") or {}
    seeds = (parts.get("seeds") or {}).get("sharpe") or {}
    seed_returns = (parts.get("seeds") or {}).get("total_return") or {}
    agent = parts.get("agent") or {}
    pbo = selection.get("pbo")

    def number(value: Any) -> float | None:
        if value is None or isinstance(value, bool):
            return None if value is None else float(value)
        value = float(value)
        return value if np.isfinite(value) else None

    return {
        "test_sharpe": number(agent.get("sharpe")),
        "test_total_return": number(agent.get("total_return")),
        "null_p_value": number(null.get("p_value")),
        "n_null_runs": number(null.get("n_runs")),
        "null_median_sharpe": number(null.get("null_median")),
        "power_recovered": None if not power.get("n_runs") else float(bool(power.get("recovered"))),
        "power_median_sharpe": number(power.get("median_sharpe")) if power.get("n_runs") else None,
        "pnl_before_costs": number(costs.get("pnl_before_costs")),
        "pnl_after_costs": number(costs.get("pnl_after_costs")),
        "break_even_cost_multiple": number(costs.get("break_even_multiple")),
        "break_even_fee": number(costs.get("break_even_fee")),
        "turnover": number(costs.get("turnover")),
        "mean_holding_bars": number(costs.get("mean_holding_bars")),
        "fees_share_of_capital": number(costs.get("fees_share_of_capital")),
        "fills": number(costs.get("fills")),
        "deflated_sharpe": number(selection.get("deflated_sharpe")),
        "pbo": number(pbo.get("pbo")) if isinstance(pbo, Mapping) else None,
        "n_trials": number(selection.get("n_trials")),
        "seed_iqm": number(seeds.get("iqm")),
        "seed_iqm_ci_low": number(seeds.get("ci_low")),
        "seed_iqm_ci_high": number(seeds.get("ci_high")),
        "seed_total_return_iqm": number(seed_returns.get("iqm")),
        "n_seeds": number(seeds.get("n_seeds")),
    }


Progress = Callable[[str, int, int], None]


def _bars(total: Mapping[str, int], enabled: bool) -> tuple[Callable[[str, int], None], Callable[[], None]]:
    """One tqdm progress bar per part (``update(part, n)``, ``close()``)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with SB3's extras and RL Zoo
        enabled = False
    bars: dict[str, Any] = {}
    if enabled:
        for position, (part, count) in enumerate(total.items()):
            bars[part] = tqdm(total=count, desc=f"{part:<9}", position=position, leave=True, unit="run")
    lock = threading.Lock()

    def update(part: str, n: int = 1) -> None:
        with lock:
            if part in bars:
                bars[part].update(n)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def equity_curve_envs() -> list[str]:
    """The registered env ids whose class is evaluated by an equity curve (what the audit tests)."""
    from sb3_crypto.envs.registration import ENV_IDS, env_class

    return [env_id for env_id in ENV_IDS if getattr(env_class(env_id), "evaluation", None) == "equity_curve"]


def audit(
    target: Target,
    *,
    out: str | Path | None = None,
    parts: Sequence[str] = PARTS,
    budget: Budget | None = None,
    workers: int = 1,
    cache: str | Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    study_storage: str | None = None,
    alpha: float = 0.05,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Audit ``target`` and write ``audit.json`` (and ``audit.html``) into ``out`` (default
    :attr:`Target.default_out`); returns the audit as written. An ``out`` that holds an audit
    already is refused before anything runs unless ``overwrite``; the training results in ``cache``
    (default ``<out>/cache``) are reused either way.

    :param storage: Optuna storage shared with other machines for the training jobs (see
        :mod:`sb3_crypto.audit.jobs`).
    :param study: name of the Optuna study that selected the configuration (``selection`` part),
        in ``study_storage`` (default ``storage``).
    """
    import gymnasium as gym

    from sb3_crypto.algorithms.model_io import check_model_fits_env, load_model, settings_source
    from sb3_crypto.envs.registration import env_class

    budget = budget or Budget()
    parts = [part for part in PARTS if part in set(parts)]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown audit parts {sorted(unknown)}; known: {list(PARTS)}")
    if "selection" in parts and study is None:
        parts.remove("selection")
    out = Path(out) if out is not None else target.default_out
    check_output_dir(out, OUTPUT_FILES, overwrite=overwrite)
    cache = Path(cache) if cache is not None else out / "cache"
    # A wrong study name or storage URL fails here, in one line, not after hours of training.
    chosen_study = None
    if "selection" in parts and study is not None:
        from sb3_crypto.audit.selection import load_study

        where = study_storage or storage or ""
        option = "--study-storage" if study_storage and study_storage != storage else "--storage"
        chosen_study = load_study(study, where, option)
    if storage is not None and any(part in parts for part in ("null", "power", "seeds")):
        job_part.open_study(storage)
    results: dict[str, Any] = {"notes": list(target.notes)}
    kind = getattr(env_class(target.env_id), "evaluation", None)
    if kind != "equity_curve":
        results["untestable"] = (
            f"{target.env_id} is evaluated by {kind!r}, not by an equity curve over a test split; the audit tests "
            f"equity-curve envs ({', '.join(equity_curve_envs())})"
        )
    if "leak" in parts:
        echo("leak check ...")
        results["leak"] = leak_check(target.env_id, target.env_kwargs)
    leaking = bool(results.get("leak", {}).get("leak"))
    model = load_model(target.model, target.algo)
    if "untestable" not in results:
        check_model_fits_env(
            model,
            target.env_id,
            {**target.env_kwargs, "split": "test"},
            source=settings_source(target.model),
            hint="the run's config.yml next to the model",
        )
    agent: dict[str, Any] = {}
    frame = markets.run_frame(target.env_kwargs)
    data = target.env_kwargs.get("data", "synthetic")
    digest = job_part.file_digest(data) if isinstance(data, str) and data != "synthetic" else None
    training = [p for p in ("null", "power", "seeds") if p in parts]
    jobs = [] if leaking or "untestable" in results else _planned_jobs(target, budget, training, frame, digest)
    totals = {p: sum(1 for j in jobs if j["part"] == p) for p in training if any(j["part"] == p for j in jobs)}
    if "costs" in parts and "untestable" not in results and not leaking:
        totals = {"costs": len(set(budget.cost_multiples) | {0.0, 1.0}), **totals}
    update, close = _bars(totals, progress)
    finished: dict[str, dict[str, Any]] = {}
    runner_error: list[BaseException] = []

    def on_result(job: Mapping[str, Any], result: dict[str, Any]) -> None:
        update(job["part"], 1)

    runner = job_part.JobRunner(cache / "jobs", workers=workers, storage=storage, progress=on_result)

    def train_all() -> None:
        try:
            finished.update(runner.run(jobs))
        except BaseException as error:  # reported after the other parts
            runner_error.append(error)

    thread = threading.Thread(target=train_all, daemon=True)
    try:
        if jobs:
            thread.start()
        if "untestable" not in results and not leaking:
            env = gym.make(target.env_id, **{**target.env_kwargs, "split": "test", "episode_length": None})
            try:
                from sb3_crypto.evaluation.rollout import run_policy

                agent = job_part.backtest_record(run_policy(model, env, deterministic=True))
            finally:
                env.close()
            results["agent"] = {k: v for k, v in agent.items() if k != "returns"}
            if "costs" in parts:
                sweep = cost_part.cost_sweep(
                    model,
                    target.env_id,
                    target.env_kwargs,
                    budget.cost_multiples,
                    progress=lambda _: update("costs", 1),
                )
                results["costs"] = {k: v for k, v in sweep.items() if k != "returns"}
        if jobs:
            thread.join()
    finally:
        close()
    if runner_error:
        raise runner_error[0]
    by_part: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        result = dict(finished.get(job["key"], {"error": "no result"}))
        result.update(market_kind=job["market"]["kind"], seed=job["seed"])
        by_part.setdefault(job["part"], []).append(result)
    if "null" in by_part:
        results["null"] = null_part(float(agent.get("sharpe", float("nan"))), by_part["null"], alpha)
        results["null"]["kinds"] = list(budget.null_kinds)
    if "power" in by_part:
        results["power"] = power_part(by_part["power"], (results.get("null") or {}).get("sharpes", []), alpha)
        momentum = next((j["market"]["synthetic_kwargs"]["momentum"] for j in jobs if j["part"] == "power"), None)
        results["power"]["momentum"] = momentum
        power_market = next((j["market"]["synthetic_kwargs"] for j in jobs if j["part"] == "power"), None)
        if power_market is not None:
            results["power"]["trend_rule_sharpe"] = _trend_rule(target, power_market)
    if "seeds" in by_part:
        results["seeds"] = seeds_part(by_part["seeds"])
    if chosen_study is not None and agent:
        from sb3_crypto.audit.selection import selection_bias

        results["selection"] = selection_bias(
            chosen_study, agent["returns"], agent["periods_per_year"], algo=target.algo, env_id=target.env_id
        )
    verdict, reasons = decide(results, alpha)
    for part in ("leak",):
        reasons.extend((results.get(part) or {}).get("warnings", []))
    report = {
        "schema": SCHEMA,
        "verdict": verdict,
        "verdict_text": VERDICTS[verdict],
        "reasons": reasons,
        "figures": figures(results),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": str(target.model),
        "model_sha256": job_part.file_digest(target.model),
        "algo": target.algo,
        "env_id": target.env_id,
        "env_kwargs": target.env_kwargs,
        "steps": target.steps,
        "parts_run": parts,
        "budget": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(budget).items()},
        "alpha": alpha,
        "agent_returns": agent.get("returns"),
        "parts": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", report)
    write_text(out / "audit.html", render_html(report))
    echo(f"verdict: {VERDICTS[verdict]}")
    for reason in reasons:
        echo(f"  - {reason}")
    echo(f"audit written to {out}")
    return report


def _trend_rule(target: Target, synthetic: Mapping[str, Any]) -> float:
    """The trend rule's test-split Sharpe ratio on the first power market (the planted edge's size)."""
    import gymnasium as gym

    kwargs = markets.market_env_kwargs({"kind": "power", "synthetic_kwargs": dict(synthetic)}, target.env_kwargs, ".")
    env = gym.make(target.env_id, **{**kwargs, "split": "test", "episode_length": None})
    try:
        market = env.unwrapped.market
        start, stop = market.split_range("test")
        halflife = float(synthetic.get("momentum_halflife", 12.0))
        return markets.trend_rule_sharpe(market.frame, halflife, start, stop)
    finally:
        env.close()


def render_html(report: Mapping[str, Any]) -> str:
    """``audit.html`` for a report (:mod:`sb3_crypto.audit.report`)."""
    from sb3_crypto.audit.report import render

    return render(report)


__all__ = [
    "OUTPUT_FILES",
    "PARTS",
    "SCHEMA",
    "VERDICTS",
    "Budget",
    "Target",
    "audit",
    "decide",
    "figures",
    "null_part",
    "power_part",
    "resolve_target",
    "seeds_part",
]
