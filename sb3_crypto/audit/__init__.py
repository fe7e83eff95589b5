"""``sb3_crypto.audit``: a verdict on whether a trained agent's edge is real.

``python -m sb3_crypto.audit --run logs/<algo>/<env>_<n>`` (or ``--model``; ``--study NAME --storage
URL`` for the Optuna study that chose the configuration) checks the run for leaks, trains the run's
own configuration on no-edge markets (null test) and on a market with a planted edge (power test),
sweeps its costs, deflates its Sharpe ratio for the search and retrains it with several seeds, then
writes ``audit.json`` and ``audit.html`` with the verdict: *edge*, *no evidence of edge*, *leak
found* or *untestable*. See :mod:`sb3_crypto.audit.core` for the parts and the verdict's rules.

:func:`seed_summary` gives the interquartile mean over seeds with a bootstrap confidence interval
(rliable's recipe) for any list of per-seed test-split returns.
"""

from __future__ import annotations

from sb3_crypto.audit.core import PARTS, SCHEMA, VERDICTS, Budget, Target, audit, decide, figures, resolve_target
from sb3_crypto.audit.stats import (
    break_even_multiple,
    deflated_sharpe,
    iqm,
    null_p_value,
    pbo_cscv,
    seed_summary,
)

__all__ = [
    "PARTS",
    "SCHEMA",
    "VERDICTS",
    "Budget",
    "Target",
    "audit",
    "break_even_multiple",
    "decide",
    "deflated_sharpe",
    "figures",
    "iqm",
    "null_p_value",
    "pbo_cscv",
    "resolve_target",
    "seed_summary",
]
