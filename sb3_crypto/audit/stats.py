"""The statistics of the audit: numbers in, numbers out (no training, no files).

* :func:`null_p_value`: how often a no-edge market gives a Sharpe ratio at least as high as the
  agent's (the permutation-test p-value ``(1 + #{null >= observed}) / (1 + n)``, never 0);
* :func:`pbo_cscv`: the probability of backtest overfitting by combinatorially symmetric
  cross-validation (Bailey, Borwein, Lopez de Prado & Zhu, 2015) over the trials' return series;
* :func:`deflated_sharpe`: :func:`sb3_crypto.metrics.deflated_sharpe_ratio` with the trial count
  and the variance of the trials' (per-bar) Sharpe ratios;
* :func:`seed_summary`: interquartile mean (IQM) over seeds with a percentile-bootstrap confidence
  interval, as ``rliable`` (Agarwal et al., 2021) computes them for one task;
* :func:`break_even_multiple`: where a PnL-against-cost curve crosses zero.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from sb3_crypto import metrics


def per_bar_sharpe(returns: np.ndarray | Sequence[float]) -> float:
    """``mean / std (ddof=1)`` of per-bar returns (not annualised); nan for fewer than 2 bars or a flat series."""
    values = np.asarray(returns, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    spread = values.std(ddof=1)
    return float(values.mean() / spread) if spread > 0 else float("nan")


def null_p_value(observed: float, null: Sequence[float]) -> float:
    """One-sided p-value of ``observed`` against the ``null`` sample: ``(1 + k) / (1 + n)`` where
    ``k`` null values are at least ``observed`` (a null value that is nan counts against the agent,
    as a run that could not be measured cannot vouch for it). The smallest p-value ``n`` null runs
    can give is ``1 / (n + 1)``: 19 runs are needed for 0.05."""
    values = np.asarray(list(null), dtype=np.float64)
    if values.size == 0:
        raise ValueError("null_p_value needs at least one null run")
    if not math.isfinite(observed):
        return 1.0
    at_least = np.count_nonzero(~(values < observed))  # nan >= anything here
    return float((1 + at_least) / (1 + values.size))


def pbo_cscv(returns: np.ndarray, n_blocks: int = 8) -> dict[str, Any]:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation.

    ``returns`` is a ``T x N`` matrix: the per-bar returns of ``N`` trials (configurations) over the
    same ``T`` bars. Its rows are cut into ``n_blocks`` (even) consecutive blocks of equal size
    (the last ``T mod n_blocks`` rows are dropped). For every choice of half the blocks as the
    in-sample set (``C(S, S/2)`` combinations) the trial with the best in-sample Sharpe ratio is
    picked and its out-of-sample Sharpe ratio ranked among all trials' out-of-sample ones
    (``rank / (N + 1)``, rank 1 the worst, ties averaged); the logit ``log(w / (1 - w))`` of that
    relative rank is below or at 0 when the pick did no better than the median trial out of sample.
    PBO is the share of combinations whose logit is ``<= 0`` (Bailey et al. 2015, eq. 8 with the
    median as the threshold).

    Returns ``{"pbo", "logits", "n_combinations", "n_trials", "n_blocks", "block_bars"}``.
    """
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"pbo_cscv needs a T x N matrix of returns, got an array of shape {matrix.shape}")
    bars, trials = matrix.shape
    if trials < 2:
        raise ValueError(f"pbo_cscv needs at least 2 trials (columns), got {trials}")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"pbo_cscv: n_blocks must be an even number >= 2, got {n_blocks}")
    size = bars // n_blocks
    if size < 2:
        raise ValueError(f"pbo_cscv: {bars} bars cannot make {n_blocks} blocks of at least 2 bars")
    if not np.isfinite(matrix[: size * n_blocks]).all():
        raise ValueError("pbo_cscv: the returns contain nan or inf")
    blocks = [matrix[k * size : (k + 1) * size] for k in range(n_blocks)]
    logits = []
    for chosen in itertools.combinations(range(n_blocks), n_blocks // 2):
        inside = np.concatenate([blocks[k] for k in chosen])
        outside = np.concatenate([blocks[k] for k in range(n_blocks) if k not in chosen])
        in_sharpe = _column_sharpe(inside)
        out_sharpe = _column_sharpe(outside)
        best = int(np.nanargmax(in_sharpe)) if np.isfinite(in_sharpe).any() else 0
        rank = stats.rankdata(np.nan_to_num(out_sharpe, nan=-np.inf))[best]
        relative = rank / (trials + 1)
        logits.append(float(np.log(relative / (1.0 - relative))))
    logits_array = np.asarray(logits)
    return {
        "pbo": float(np.mean(logits_array <= 0.0)),
        "logits": logits,
        "n_combinations": len(logits),
        "n_trials": trials,
        "n_blocks": n_blocks,
        "block_bars": size,
    }


def _column_sharpe(matrix: np.ndarray) -> np.ndarray:
    spread = matrix.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, matrix.mean(axis=0) / spread, np.nan)


def deflated_sharpe(returns: np.ndarray | Sequence[float], trial_sharpes: Sequence[float]) -> dict[str, Any]:
    """The deflated Sharpe ratio of ``returns`` (per bar) given the per-bar Sharpe ratios of every
    trial of the search that selected it (their count and variance; non-finite ones are dropped
    from the variance but still count as tries)."""
    values = [float(x) for x in trial_sharpes]
    finite = np.asarray([x for x in values if math.isfinite(x)])
    n_trials = max(len(values), 1)
    variance = float(finite.var(ddof=1)) if finite.size >= 2 else 0.0
    return {
        "deflated_sharpe": metrics.deflated_sharpe_ratio(np.asarray(returns, dtype=np.float64), n_trials, variance),
        "n_trials": n_trials,
        "trial_sharpe_variance": variance,
        "sharpe_per_bar": per_bar_sharpe(returns),
    }


#: What :func:`seed_summary` can score a seed's test-split returns by.
SEED_METRICS = ("sharpe", "total_return", "annual_return", "sortino", "max_drawdown")


def score(returns: np.ndarray | Sequence[float], metric: str, periods_per_year: float) -> float:
    """One number for a return series: a metric of :mod:`sb3_crypto.metrics` named in :data:`SEED_METRICS`."""
    values = np.asarray(returns, dtype=np.float64)
    if metric == "sharpe":
        if values.size >= 2 and not np.any(values):
            return 0.0  # never in the market: 0, as the agent's and the null runs' Sharpe ratios count it
        return metrics.sharpe_ratio(values, periods_per_year)
    if metric == "total_return":
        return metrics.total_return(values)
    if metric == "annual_return":
        return metrics.annual_return(values, periods_per_year)
    if metric == "sortino":
        return metrics.sortino_ratio(values, periods_per_year)
    if metric == "max_drawdown":
        return metrics.max_drawdown(values)
    raise ValueError(f"metric must be one of {list(SEED_METRICS)}, got {metric!r}")


def iqm(scores: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle half (25 % trimmed from each end), as
    ``rliable.metrics.aggregate_iqm`` computes it (``scipy.stats.trim_mean(x, 0.25)``)."""
    return float(stats.trim_mean(np.asarray(scores, dtype=np.float64), proportiontocut=0.25, axis=None))


def seed_summary(
    per_seed_returns: Sequence[np.ndarray | Sequence[float]],
    *,
    metric: str = "sharpe",
    periods_per_year: float = 8760.0,
    confidence: float = 0.95,
    reps: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """IQM over seeds of ``metric`` of each seed's test-split returns, with a percentile-bootstrap
    confidence interval over seeds.

    This is rliable's recipe (Agarwal et al., 2021: IQM, stratified percentile bootstrap; with one
    task the stratified bootstrap resamples the runs) computed with ``scipy``: rliable 1.2 needs
    ``arch < 8``, which does not import under pandas 3. Use it for headline numbers over seeds::

        summary = seed_summary([result.returns for result in per_seed], metric="total_return")
        print(f"{summary['iqm']:+.1%} (95 % CI {summary['ci_low']:+.1%} .. {summary['ci_high']:+.1%})")

    :param per_seed_returns: one series of per-bar returns per seed (the test split's).
    :param metric: one of :data:`SEED_METRICS` (``sharpe`` annualised with ``periods_per_year``).
    :returns: ``{"metric", "scores", "iqm", "mean", "median", "ci_low", "ci_high", "confidence",
        "n_seeds"}``; with one seed the interval is that seed's score. ``n_seeds`` counts the seeds
        the IQM is over: a seed whose score is not finite (fewer than 2 bars) stays in ``scores`` as
        nan but not in the IQM. A seed that never trades scores a Sharpe ratio of 0.
    """
    scores = np.asarray([score(r, metric, periods_per_year) for r in per_seed_returns], dtype=np.float64)
    if scores.size == 0:
        raise ValueError("seed_summary needs the returns of at least one seed")
    finite = scores[np.isfinite(scores)]
    centre = iqm(finite) if finite.size else float("nan")
    if finite.size >= 2 and np.ptp(finite) > 0:
        interval = stats.bootstrap(
            (finite,),
            iqm,
            vectorized=False,
            n_resamples=reps,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    else:
        low = high = centre
    return {
        "metric": metric,
        "scores": scores.tolist(),
        "iqm": centre,
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "n_seeds": int(finite.size),
    }


def break_even_multiple(multiples: Sequence[float], pnl: Sequence[float]) -> float | None:
    """The cost multiple at which ``pnl`` (against increasing ``multiples``) first crosses from
    positive to at most zero, linearly interpolated; ``0.0`` when it is not positive even without
    costs, ``None`` when it stays positive over the whole sweep (break-even lies beyond it)."""
    xs = np.asarray(multiples, dtype=np.float64)
    ys = np.asarray(pnl, dtype=np.float64)
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    if not ys[0] > 0:
        return 0.0
    for k in range(1, len(xs)):
        if not ys[k] > 0:
            x0, x1, y0, y1 = xs[k - 1], xs[k], ys[k - 1], ys[k]
            if not math.isfinite(y1):
                return float(x1)
            return float(x0 + (x1 - x0) * y0 / (y0 - y1))
    return None


__all__ = [
    "SEED_METRICS",
    "break_even_multiple",
    "deflated_sharpe",
    "iqm",
    "null_p_value",
    "pbo_cscv",
    "per_bar_sharpe",
    "score",
    "seed_summary",
]
