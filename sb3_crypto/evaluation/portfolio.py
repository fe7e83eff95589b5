"""Backtest of the portfolio env: the agent against portfolio baselines, every one run through the env.

Every baseline is a rule that gives target weights (cash first) at each decision bar; a
:class:`WeightsPolicy` turns them into the env's action and the env executes them exactly as it
executes the agent's: rebalanced at the next bar's opens through the one accounting core, with the
same fees, slippage, dead band and asset lifetimes. No second cost model exists.

Baselines (:func:`portfolio_baselines`):

* ``equal_weight_hold``: equal weights over the tradable assets at the first decision, then held
  (no trade: the weights drift with the prices);
* ``uniform_crp``: the uniform constant rebalanced portfolio, back to equal weights every bar;
* ``best_asset_hindsight``: all in the asset that did best over the split, held. It is chosen
  **with hindsight** (the split's last prices) and is not a strategy anyone could have run;
* ``olmar``: On-Line Moving Average Reversion (Li & Hoi 2012), computed by the
  ``universal-portfolios`` library (``pip install sb3_crypto[portfolio]``) from the closes up to the
  decision bar only.

:func:`backtest_portfolio` runs them and the agent and reports, beside the usual metrics:
turnover, concentration (HHI, effective number of assets), each asset's contribution to the PnL,
and the weights over time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sb3_crypto import metrics

#: Baseline name -> what it is (reports list them in this order).
BASELINES = {
    "equal_weight_hold": "equal weights over the tradable assets once, then held",
    "uniform_crp": "uniform constant rebalanced portfolio (equal weights every bar)",
    "best_asset_hindsight": "the split's best asset, chosen with hindsight, held",
    "olmar": "OLMAR (universal-portfolios), closes up to the decision bar",
}


def olps_weights(algo: Any, closes: pd.DataFrame) -> np.ndarray:
    """Weights an online portfolio selection algorithm of ``universal-portfolios`` (an ``Algo``, e.g.
    ``universal.algos.OLMAR()``) holds after each row of ``closes`` (rows: bars, columns: assets, NaN
    where an asset has no price): row ``t`` of the result uses ``closes[: t + 1]`` only.

    The library's ``B`` row ``t`` holds the weights for the period ending on row ``t``, chosen from the
    rows before it; row ``t + 1`` is therefore the portfolio to hold after row ``t``. A copy of the
    last row is appended so that the last row has one too (it does not influence any row's weights).
    """
    if closes.shape[0] < 1 or closes.shape[1] < 1:
        raise ValueError(f"olps_weights: closes must have at least one row and one asset, got {closes.shape}")
    padded = pd.concat([closes, closes.iloc[[-1]]], ignore_index=True)
    with warnings.catch_warnings():
        # universal-portfolios' ratio conversion (for its own result object, unused here) assigns
        # through a chained index, which pandas >= 3 warns about; the weights do not go through it.
        warnings.simplefilter("ignore")
        weights = algo.run(padded, log_progress=False).B.to_numpy(dtype=np.float64)
    return weights[1:]


def olmar(**kwargs: Any) -> Any:
    """``universal.algos.OLMAR(**kwargs)``, with a clear error when the library is missing."""
    try:
        from universal.algos import OLMAR
    except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
        raise ImportError(
            "the OLMAR baseline needs universal-portfolios: pip install 'sb3_crypto[portfolio]'"
        ) from exc
    return OLMAR(**kwargs)
