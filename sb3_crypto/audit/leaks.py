"""The leak check of a run's env settings, user features included.

Two checks, both on the run's own data and settings:

1. **Feature leak check** (:mod:`sb3_crypto.data.pipeline`): the env is built with the run's
   ``features`` and ``leak_check`` forced on (a run may have turned it off), so every base feature,
   indicator and user function is recomputed on prefixes of the data and must agree with its value
   on the whole data (:class:`~sb3_crypto.data.pipeline.LeakError` otherwise).
2. **Observation perturbation**: the bars after a cut are changed (prices scaled by random factors,
   volumes too), an env of the run's class is made over the changed bars with the run's fitted
   normaliser, and the observations of bars before the cut must be bit-for-bit those of the
   original bars. This catches anything between the features and the agent (windows, account
   state, features that the pipeline does not see).

Deprecated ``extra_features`` slots held the next bars' features before they were zeroed; a run
that has them is reported (its model may have been trained on a version where they leaked).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_crypto.audit.markets import run_frame
from sb3_crypto.data.pipeline import FeatureError, LeakError
from sb3_crypto.envs.registration import env_class

#: Positions of the cuts in the data (fractions of its length) for the perturbation check.
CUTS = (0.5, 0.8)
#: Bars before each cut whose observations are compared.
COMPARED_BARS = 8


def _forced_leak_check(features: Any) -> Any:
    if isinstance(features, Mapping):
        return {**features, "leak_check": True}
    return features  # a base-feature name: checked by default


def leak_check(env_id: str, env_kwargs: Mapping[str, Any], *, seed: int = 0) -> dict[str, Any]:
    """Run both checks; ``{"leak": bool, "checks": [...], "reasons": [...], "warnings": [...]}``."""
    checks: list[dict[str, Any]] = []
    reasons: list[str] = []
    warnings: list[str] = []
    kwargs = dict(env_kwargs)
    if "features" in kwargs:
        kwargs["features"] = _forced_leak_check(kwargs["features"])
    turned_off = isinstance(env_kwargs.get("features"), Mapping) and env_kwargs["features"].get("leak_check") is False
    if turned_off:
        warnings.append("the run turned the feature leak check off (features: {leak_check: false}); it ran here")
    if env_kwargs.get("extra_features"):
        warnings.append(
            f"extra_features={list(env_kwargs['extra_features'])} is set: in releases before these slots were "
            "zeroed they held the next bars' features, so a model trained with such a release saw the future; "
            "retrain without extra_features to be sure"
        )
    try:
        env = gym.make(env_id, **{**kwargs, "split": "train"})
    except LeakError as error:
        checks.append({"check": "features", "passed": False, "detail": str(error)})
        reasons.append(f"leak found in the run's features: {error}")
        return {"leak": True, "checks": checks, "reasons": reasons, "warnings": warnings}
    except FeatureError as error:
        checks.append({"check": "features", "passed": False, "detail": str(error)})
        reasons.append(f"the run's features cannot be checked: {error}")
        return {"leak": False, "error": True, "checks": checks, "reasons": reasons, "warnings": warnings}
    if getattr(env.unwrapped, "market", None) is None:  # features made outside the pipeline: not checked
        detail = f"not run: {env_id} makes its features outside the feature pipeline"
        checks.append({"check": "features", "passed": None, "detail": detail})
        warnings.append(f"the feature leak check did not run: {env_id} makes its features outside the feature pipeline")
    else:
        checks.append({"check": "features", "passed": True, "detail": "every feature recomputed on prefixes agrees"})
    try:
        detail = _perturbation(env, env_id, env_kwargs, seed)
    except _NotApplicable as skipped:  # reported as not run, never as passed
        checks.append({"check": "perturbation", "passed": None, "detail": f"not run: {skipped}"})
        warnings.append(f"the observation perturbation check did not run: {skipped}")
    else:
        if detail is None:
            checks.append({"check": "perturbation", "passed": True, "detail": "observations ignore later bars"})
        else:
            checks.append({"check": "perturbation", "passed": False, "detail": detail})
            reasons.append(f"leak found: {detail}")
    finally:
        env.close()
    return {"leak": bool(reasons), "checks": checks, "reasons": reasons, "warnings": warnings}


class _NotApplicable(Exception):
    """The perturbation check cannot run on this env (the message says why)."""


def _perturbation(env: gym.Env, env_id: str, env_kwargs: Mapping[str, Any], seed: int) -> str | None:
    """``None`` when observations before each cut ignore the bars after it, else what changed;
    :class:`_NotApplicable` when the env cannot be observed bar by bar over the run's frame."""
    base = env.unwrapped
    cls = env_class(env_id)
    market = getattr(base, "market", None)
    if cls is None or not hasattr(cls, "observer") or not hasattr(base, "observation_at") or market is None:
        raise _NotApplicable(f"{env_id} is not observed bar by bar over one market frame (sessions, cycles)")
    frame = run_frame(env_kwargs).copy()
    if frame.attrs.get("close_only"):  # an env reads a given frame by its columns: keep it close-only
        frame = frame[["close"]]
    normalizer = market.normalizer
    settings = {key: value for key, value in env_kwargs.items() if key != "split"}
    original = cls.observer(frame, settings, normalizer)
    rng = np.random.default_rng(seed)
    first = original.first_bar
    for share in CUTS:
        cut = int(len(frame) * share)
        if cut - COMPARED_BARS <= first:
            continue
        changed = frame.copy()
        factor = np.exp(rng.normal(0.0, 0.05, size=len(frame) - cut))
        for column in ("open", "high", "low", "close", "vwap"):
            if column in changed.columns:
                changed.iloc[cut:, changed.columns.get_loc(column)] *= factor
        if "volume" in changed.columns:
            changed.iloc[cut:, changed.columns.get_loc("volume")] *= rng.uniform(0.2, 5.0, size=len(frame) - cut)
        other = cls.observer(changed, settings, normalizer)
        for t in range(cut - COMPARED_BARS, cut):
            try:
                before = np.asarray(original.observation_at(t, None))
                after = np.asarray(other.observation_at(t, None))
            except (ValueError, NotImplementedError) as error:
                raise _NotApplicable(f"{env_id} cannot observe a bar without an account state ({error})") from None
            if not np.array_equal(before, after):
                where = int(np.flatnonzero(before != after)[0])
                return (
                    f"the observation of bar {frame.index[t].isoformat()} (row {t}) changes when only bars from row "
                    f"{cut} on are changed (first differing slot {where}): it reads the future"
                )
    return None


__all__ = ["leak_check"]
