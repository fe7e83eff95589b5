"""Selection bias: what the Optuna study that chose the configuration says about its result.

``python -m sb3_crypto.train ... -optimize --optimize-metric sharpe --storage URL --study-name NAME``
stores in every trial its validation-split per-bar returns (user attribute ``validation_returns``),
the metric it maximised (``metric``) and the bars per year (``periods_per_year``). From the study:

* the **deflated Sharpe ratio** of the agent's test-split returns, with the study's real number of
  trials (every finished one, pruned ones included: they were tried) and the variance of the
  trials' per-bar Sharpe ratios (from their return series, else from their values when the study
  maximised ``sharpe``: the annualised value over the square root of the bars per year);
* the **PBO** by CSCV over the trials' validation return series (:func:`~sb3_crypto.audit.stats.pbo_cscv`).

Studies made before the returns were stored (or with RL Zoo's mean-reward objective) give the
deflated Sharpe ratio from their values only when those are Sharpe ratios, and no PBO; the report
says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_crypto.audit.jobs import StorageError, storage_backend
from sb3_crypto.audit.stats import deflated_sharpe, pbo_cscv, per_bar_sharpe

#: The user attributes tuning stores in each trial (see :mod:`sb3_crypto.zoo.manager`).
RETURNS_ATTR = "validation_returns"


def load_study(name: str, storage: str, option: str = "--storage") -> Any:
    """An existing Optuna study (``.log`` storage is Optuna's journal file, as tuning accepts); a
    :class:`~sb3_crypto.audit.jobs.StorageError` naming the studies there when ``name`` is not one,
    and for a storage that cannot be opened (a missing file is not created)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = storage_backend(storage, option, must_exist=True)
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage=backend))
        there = f"the studies there: {', '.join(names)}" if names else "it holds no study"
        raise StorageError(f"--study {name!r}: no such study in {storage} ({there})") from None


def tuned_what(trials: Sequence[Any]) -> tuple[set[str], set[str]]:
    """The algorithms and env ids the study's trials say they tuned (tuning stores both since this
    release; empty sets for older studies)."""
    algos = {t.user_attrs["algo"] for t in trials if "algo" in t.user_attrs}
    envs = {t.user_attrs["env_id"] for t in trials if "env_id" in t.user_attrs}
    return algos, envs


def selection_bias(
    study: Any,
    returns: Sequence[float],
    periods_per_year: float,
    n_blocks: int = 8,
    *,
    algo: str | None = None,
    env_id: str | None = None,
) -> dict[str, Any]:
    """Deflated Sharpe ratio and PBO of the selection the study made (see the module docstring).

    With ``algo`` / ``env_id`` (the audited model's), a study whose trials say they tuned another
    algorithm or env gives neither figure: its search did not select this model."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = study.get_trials(deepcopy=False, states=states)
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    notes: list[str] = []
    algos, envs = tuned_what(finished)
    wrong = [
        f"{kind} {sorted(tuned)} (the model: {mine})"
        for kind, tuned, mine in (("algorithm", algos, algo), ("env", envs, env_id))
        if mine is not None and tuned and tuned != {mine}
    ]
    if wrong:
        return {
            "study": study.study_name,
            "n_trials": len(finished),
            "n_complete": len(complete),
            "sharpe_source": "none: the study tuned something else",
            "deflated_sharpe": None,
            "pbo": None,
            "mismatch": True,
            "notes": [
                f"the study {study.study_name!r} tuned another {' and '.join(wrong)}: its trials say nothing about "
                "how this model was selected, so no deflated Sharpe ratio or PBO is given"
            ],
        }
    series = [
        np.asarray(t.user_attrs[RETURNS_ATTR], dtype=np.float64) for t in complete if RETURNS_ATTR in t.user_attrs
    ]
    sharpes: list[float]
    if series:
        sharpes = [per_bar_sharpe(s) for s in series]
        source = f"per-bar Sharpe ratios of {len(series)} trials' validation returns"
    else:
        metric = {t.user_attrs.get("metric") for t in complete}
        if metric <= {"sharpe"} or metric == {None}:
            per_year = float(next((t.user_attrs.get("periods_per_year") for t in complete), None) or periods_per_year)
            sharpes = [float(t.value) / math.sqrt(per_year) for t in complete if t.value is not None]
            source = "trial values read as annualised Sharpe ratios (the study stored no return series)"
            if metric == {None}:
                notes.append(
                    "the study's trials do not say which metric they maximised; their values were taken as annualised "
                    "Sharpe ratios (tune with --optimize-metric sharpe so that this is known)"
                )
        else:
            sharpes = []
            source = f"none: the study maximised {sorted(m for m in metric if m)}, not the Sharpe ratio"
    result: dict[str, Any] = {
        "study": study.study_name,
        "n_trials": len(finished),
        "n_complete": len(complete),
        "sharpe_source": source,
        "notes": notes,
    }
    agent = np.asarray(returns, dtype=np.float64)
    if agent.size < 3 or not agent.std() > 0:
        result["deflated_sharpe"] = None
        notes.append("no deflated Sharpe ratio: the agent's test-split returns have no spread (it hardly trades)")
    elif sharpes:
        values = sharpes + [float("nan")] * (len(finished) - len(sharpes))  # pruned ones count as tries
        result.update(deflated_sharpe(returns, values))
    else:
        result["deflated_sharpe"] = None
        notes.append("no deflated Sharpe ratio: the trials carry no Sharpe ratios")
    lengths = {len(s) for s in series}
    if len(series) >= 2 and len(lengths) == 1:
        try:
            result["pbo"] = pbo_cscv(np.column_stack(series), n_blocks=n_blocks)
        except ValueError as error:
            result["pbo"] = None
            notes.append(f"no PBO: {error}")
    else:
        result["pbo"] = None
        if len(series) < 2:
            notes.append(
                f"no PBO: {len(series)} of {len(complete)} trials carry validation return series (tuning stores them "
                "with --optimize-metric since this release; older studies have none)"
            )
        else:
            notes.append(f"no PBO: the trials' return series differ in length ({sorted(lengths)})")
    return result


__all__ = ["RETURNS_ATTR", "load_study", "selection_bias", "tuned_what"]
