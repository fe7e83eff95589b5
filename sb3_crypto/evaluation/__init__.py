"""Evaluation: the one rollout loop, baselines, session, DCA and portfolio evaluation, reports and
plots, the risk callbacks, walk-forward and S3's strategy layer.

Which evaluation an env gets is stated by the env class (``evaluation``: ``"equity_curve"``,
``"sessions"``, ``"dca_cycles"`` or ``"portfolio"``); :func:`sb3_crypto.evaluation.backtest.backtest`
picks the matching backtest.
"""
