"""The audit's statistics and verdicts on constructed cases with known answers.

The agents here are fixed rules (no training), so the tests are about the statistics: a trend rule
on a market with a strongly planted trend is an agent with a real edge, the same rule on a market
without one has none, and a rule that flips its position every bar churns fees.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from sb3_crypto import metrics
from sb3_crypto.audit import decide, null_p_value, pbo_cscv, seed_summary
from sb3_crypto.audit.core import null_part, power_part
from sb3_crypto.audit.costs import cost_sweep, holding_periods
from sb3_crypto.audit.jobs import backtest_record
from sb3_crypto.audit.leaks import leak_check
from sb3_crypto.audit.markets import block_bootstrap, market_env_kwargs, market_recipe, run_frame, sign_randomised
from sb3_crypto.audit.selection import selection_bias
from sb3_crypto.audit.stats import break_even_multiple, per_bar_sharpe

ENV = "CryptoTrading-v0"
WINDOW = 16


def market(momentum: float, seed: int = 1, **costs: float) -> dict:
    """A small synthetic market (test split of about 450 bars)."""
    return {
        "data": "synthetic",
        "synthetic_kwargs": {"n_bars": 3000, "seed": seed, "momentum": momentum},
        "window_size": WINDOW,
        "episode_length": 64,
        "fee": costs.get("fee", 0.0002),
        "slippage": costs.get("slippage", 0.0),
        "dead_band": 0.0,
    }


def trend_rule(obs: np.ndarray) -> np.ndarray:
    """Long when the window's summed close returns are positive, else short (channel 3 of 5)."""
    window = obs[: WINDOW * 5].reshape(WINDOW, 5)
    return np.array([1.0 if window[:, 3].sum() > 0 else -1.0], dtype=np.float32)


def flip_rule(obs: np.ndarray) -> np.ndarray:
    """Follows the last bar's close return alone: in and out almost every bar."""
    return np.array([1.0 if obs[(WINDOW - 1) * 5 + 3] > 0 else -1.0], dtype=np.float32)


def backtest_of(policy, kwargs: dict) -> dict:
    """The policy's backtest record on the test split of the market."""
    import gymnasium as gym

    from sb3_crypto.evaluation.rollout import run_policy

    env = gym.make(ENV, **{**kwargs, "split": "test", "episode_length": None})
    return backtest_record(run_policy(policy, env))


def null_results(policy, kwargs: dict, runs: int, tmp_path) -> list[dict]:
    """The rule's test-split results on ``runs`` no-edge versions of the market (sign-randomised and
    synthetic without the signal, in turn), as the null part collects them."""
    frame = run_frame(kwargs)
    results = []
    for k in range(runs):
        kind = ("sign", "synthetic")[k % 2]
        recipe = market_recipe(kind, 100 + k, kwargs, frame)
        swapped = market_env_kwargs(recipe, kwargs, tmp_path / f"null{k}")
        results.append({**backtest_of(policy, swapped), "market_kind": kind})
    return results


def power_results(policy, kwargs: dict, runs: int, momentum: float = 0.7) -> list[dict]:
    """The rule's test-split results on ``runs`` synthetic markets with a planted trend."""
    frame = run_frame(kwargs)
    out = []
    for k in range(runs):
        recipe = market_recipe("power", 200 + k, kwargs, frame, momentum=momentum)
        out.append(backtest_of(policy, market_env_kwargs(recipe, kwargs, ".")))
    return out


# ------------------------------------------------------------------ verdicts of constructed agents
def test_planted_edge_agent_gets_edge(tmp_path):
    kwargs = market(momentum=0.7)
    agent = backtest_of(trend_rule, kwargs)
    null = null_part(agent["sharpe"], null_results(trend_rule, kwargs, 19, tmp_path), alpha=0.05)
    assert null["p_value"] == pytest.approx(1 / 20)  # above every one of the 19 null runs
    power = power_part(power_results(trend_rule, kwargs, 3), null["sharpes"], alpha=0.05)
    costs = cost_sweep(trend_rule, ENV, kwargs, (0.0, 1.0, 3.0))
    verdict, reasons = decide({"null": null, "power": power, "costs": costs})
    assert power["recovered"]
    assert verdict == "edge", reasons
    assert "p = 0.050" in reasons[0]


def test_agent_on_a_no_edge_market_gets_no_evidence(tmp_path):
    kwargs = market(momentum=0.0, seed=2)
    agent = backtest_of(trend_rule, kwargs)
    null = null_part(agent["sharpe"], null_results(trend_rule, kwargs, 9, tmp_path), alpha=0.05)
    power = power_part(power_results(trend_rule, kwargs, 3), null["sharpes"], alpha=0.05)
    costs = cost_sweep(trend_rule, ENV, kwargs, (0.0, 1.0))
    verdict, reasons = decide({"null": null, "power": power, "costs": costs})
    assert power["recovered"]  # the rule can find a planted trend, so "no evidence" is informative
    assert null["p_value"] > 0.05
    assert verdict == "no_evidence", reasons
    assert "does not stand out" in reasons[0]


def test_power_failure_makes_no_edge_untestable(tmp_path):
    """A 'configuration' that cannot find even a planted edge (always flat) is too weak to judge."""
    flat = lambda obs: np.zeros(1, dtype=np.float32)  # noqa: E731
    kwargs = market(momentum=0.0, seed=2)
    agent = backtest_of(flat, kwargs)
    assert agent["sharpe"] == 0.0  # never trades: 0, not an undefined ratio
    null = null_part(agent["sharpe"], null_results(flat, kwargs, 3, tmp_path), alpha=0.05)
    power = power_part(power_results(flat, kwargs, 1), null["sharpes"], alpha=0.05)
    costs = cost_sweep(flat, ENV, kwargs, (1.0,))
    verdict, reasons = decide({"null": null, "power": power, "costs": costs})
    assert not power["recovered"]
    assert verdict == "untestable"
    assert "too weak to find one" in reasons[0]
    assert "never trades on the test split" in reasons[-1] and not costs["fee_churn"]


def test_fee_churning_agent_has_its_churn_named():
    kwargs = market(momentum=0.7, fee=0.005, slippage=0.00125)
    costs = cost_sweep(flip_rule, ENV, kwargs, (0.0, 0.25, 0.5, 1.0, 2.0))
    assert costs["pnl_before_costs"] > 0 > costs["pnl_after_costs"]
    assert costs["fee_churn"]
    assert costs["findings"][0].startswith("fee churn")
    assert costs["mean_holding_bars"] < 5 and costs["turnover_per_bar"] > 0.2
    # break-even between the grid points where PnL changes sign, and the fee it means
    rows = {row["multiple"]: row["total_return"] for row in costs["sweep"]}
    crossing = costs["break_even_multiple"]
    low = max(m for m, pnl in rows.items() if pnl > 0)
    assert low < crossing <= min(m for m, pnl in rows.items() if m > low)
    assert costs["break_even_fee"] == pytest.approx(crossing * 0.005)
    null = {"n_runs": 3, "p_value": 0.25, "observed_sharpe": -1.0, "smallest_p_value": 0.25, "null_median": 0.0}
    verdict, reasons = decide({"null": null, "costs": costs})
    assert verdict == "no_evidence"
    assert any(reason.startswith("fee churn") for reason in reasons)


def test_leaking_feature_gets_leak_found():
    kwargs = market(momentum=0.0)
    kwargs["features"] = {
        "indicators": [{"function": "helpers:peek_next", "name": "tomorrow"}],
        "leak_check": False,  # the run turned the check off; the audit turns it back on
    }
    leak = leak_check(ENV, kwargs)
    assert leak["leak"]
    assert "tomorrow" in leak["reasons"][0] and "looks ahead" in leak["reasons"][0]
    assert any("turned the feature leak check off" in warning for warning in leak["warnings"])
    verdict, reasons = decide({"leak": leak, "null": {"n_runs": 19, "p_value": 0.05}})
    assert verdict == "leak_found"
    assert reasons == leak["reasons"]


def test_clean_features_pass_both_leak_checks():
    kwargs = market(momentum=0.0)
    feature = {"function": "helpers:momentum_feature", "kwargs": {"span": 5}, "lookback": 6}
    kwargs["features"] = {"indicators": [feature]}
    leak = leak_check(ENV, kwargs)
    assert not leak["leak"]
    assert [c["check"] for c in leak["checks"]] == ["features", "perturbation"]
    assert all(c["passed"] for c in leak["checks"])


# ------------------------------------------------------------------ statistics with hand-computed values
def test_null_p_value():
    assert null_p_value(2.0, [0.0, 1.0, 3.0]) == pytest.approx(2 / 4)
    assert null_p_value(5.0, [0.0, 1.0, 3.0]) == pytest.approx(1 / 4)  # never 0
    assert null_p_value(2.0, [0.0, float("nan")]) == pytest.approx(2 / 3)  # an unmeasured run counts against
    assert null_p_value(float("nan"), [0.0]) == 1.0


def test_pbo_two_trials_that_swap_places():
    """Trials A, B over 2 blocks of 2 bars (per-bar Sharpe = mean / std, ddof 1).

    Block 1: A = [.02, .01] (Sharpe 2.12), B = [0, .01] (0.71). Block 2: A = [-.01, 0] (-0.71),
    B = [.01, .03] (1.41). In-sample block 1 picks A, which is last of 2 in block 2: relative rank
    1 / 3, logit ln(1/2). In-sample block 2 picks B, last in block 1: logit ln(1/2) again. PBO = 2/2.
    """
    returns = np.array([[0.02, 0.0], [0.01, 0.01], [-0.01, 0.01], [0.0, 0.03]])
    result = pbo_cscv(returns, n_blocks=2)
    assert result["n_combinations"] == 2
    assert result["logits"] == pytest.approx([math.log(0.5), math.log(0.5)])
    assert result["pbo"] == 1.0
    # A best in both blocks: the pick is first out of sample, relative rank 2/3, logit ln 2, PBO 0
    steady = np.array([[0.02, 0.0], [0.01, 0.01], [0.03, 0.01], [0.01, 0.0]])
    result = pbo_cscv(steady, n_blocks=2)
    assert result["logits"] == pytest.approx([math.log(2.0), math.log(2.0)])
    assert result["pbo"] == 0.0


def test_pbo_three_trials_median_pick_counts_as_overfit():
    """Trials A, B, C over 2 blocks (Sharpe values in brackets).

    Block 1: A [.03, .01] (1.41), B [.02, 0] (0.71), C [0, -.02] (-0.71).
    Block 2: A [.01, 0] (0.71), B [0, -.01] (-0.71), C [.03, .01] (1.41).
    In-sample block 1 picks A; out of sample A ranks 2 of 3: relative rank 2/4, logit 0 (no better
    than the median: counted). In-sample block 2 picks C; in block 1 C ranks 1: 1/4, logit ln(1/3).
    PBO = 2/2.
    """
    returns = np.array([[0.03, 0.02, 0.0], [0.01, 0.0, -0.02], [0.01, 0.0, 0.03], [0.0, -0.01, 0.01]])
    result = pbo_cscv(returns, n_blocks=2)
    assert result["logits"] == pytest.approx([0.0, math.log(1 / 3)])
    assert result["pbo"] == 1.0


def test_pbo_combinations_and_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.01, size=(800, 20))
    result = pbo_cscv(noise, n_blocks=8)
    assert result["n_combinations"] == 70 and result["block_bars"] == 100
    assert 0.3 < result["pbo"] < 0.8  # picking the best of pure noise is a coin flip or worse
    skill = noise + np.linspace(0.0, 0.004, 20)  # trial k earns k * 0.0002 per bar more
    assert pbo_cscv(skill, n_blocks=8)["pbo"] < 0.05
    with pytest.raises(ValueError, match="even number"):
        pbo_cscv(noise, n_blocks=3)
    with pytest.raises(ValueError, match="at least 2 trials"):
        pbo_cscv(noise[:, :1])


def test_seed_summary_iqm_and_interval():
    """IQM of total returns .1, .2, .3, .4 trims one from each end: (.2 + .3) / 2 = .25."""
    summary = seed_summary([[0.1], [0.2], [0.3], [0.4]], metric="total_return")
    assert summary["iqm"] == pytest.approx(0.25)
    assert 0.1 <= summary["ci_low"] <= 0.25 <= summary["ci_high"] <= 0.4
    assert summary["n_seeds"] == 4 and summary["scores"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    one = seed_summary([[0.01, -0.02, 0.03]], metric="sharpe", periods_per_year=365)
    expected = metrics.sharpe_ratio([0.01, -0.02, 0.03], 365)
    assert one["ci_low"] == one["iqm"] == one["ci_high"] == pytest.approx(expected)


def test_break_even_multiple():
    assert break_even_multiple([0, 1, 2], [0.2, 0.1, -0.1]) == pytest.approx(1.5)
    assert break_even_multiple([0, 1], [-0.1, -0.2]) == 0.0
    assert break_even_multiple([0, 1], [0.3, 0.2]) is None
    assert holding_periods([0, 1, 1, -1, -1, -1, 0, 2]) == [2, 3, 1]


def test_deflated_sharpe_and_pbo_from_an_optuna_study():
    """Five tried configurations (one pruned) of an in-memory study; the DSR uses all five tries and
    the variance of the four completed trials' per-bar Sharpe ratios, the PBO their return series."""
    rng = np.random.default_rng(3)
    series = [rng.normal(0.001 * k, 0.01, size=400) for k in range(4)]
    study = optuna.create_study(direction="maximize", study_name="tuning")
    for k, returns in enumerate(series):
        attrs = {"validation_returns": returns.tolist(), "metric": "sharpe", "periods_per_year": 8760.0}
        study.add_trial(optuna.trial.create_trial(value=float(k), user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    agent = rng.normal(0.002, 0.01, size=300)
    result = selection_bias(study, agent, 8760.0)
    sharpes = [per_bar_sharpe(s) for s in series]
    expected = metrics.deflated_sharpe_ratio(agent, 5, float(np.var(sharpes, ddof=1)))
    assert result["n_trials"] == 5 and result["n_complete"] == 4
    assert result["deflated_sharpe"] == pytest.approx(expected)
    assert result["pbo"]["pbo"] == pytest.approx(pbo_cscv(np.column_stack(series))["pbo"])
    # Trials without return series: values as annualised Sharpe ratios, no PBO, and the report says so
    bare = optuna.create_study(direction="maximize")
    for value in (0.5, 1.0, 2.0):
        bare.add_trial(optuna.trial.create_trial(value=value, user_attrs={"metric": "sharpe"}))
    result = selection_bias(bare, agent, 8760.0)
    per_bar = np.array([0.5, 1.0, 2.0]) / math.sqrt(8760.0)
    assert result["deflated_sharpe"] == pytest.approx(
        metrics.deflated_sharpe_ratio(agent, 3, float(np.var(per_bar, ddof=1)))
    )
    assert result["pbo"] is None and any("no PBO" in note for note in result["notes"])


def test_a_study_of_another_algorithm_or_env_gives_no_selection_figures():
    rng = np.random.default_rng(4)
    study = optuna.create_study(direction="maximize", study_name="ppo-tuning")
    for k in range(3):
        attrs = {
            "validation_returns": rng.normal(0.0, 0.01, size=200).tolist(),
            "metric": "sharpe",
            "algo": "ppo",
            "env_id": "CryptoTrading-v0",
        }
        study.add_trial(optuna.trial.create_trial(value=float(k), user_attrs=attrs))
    agent = rng.normal(0.002, 0.01, size=300)
    same = selection_bias(study, agent, 8760.0, algo="ppo", env_id="CryptoTrading-v0")
    assert same["deflated_sharpe"] is not None and not same.get("mismatch")
    other = selection_bias(study, agent, 8760.0, algo="sac_fast", env_id="CryptoTrading-v0")
    assert other["mismatch"] and other["deflated_sharpe"] is None and other["pbo"] is None
    assert "another algorithm ['ppo'] (the model: sac_fast)" in other["notes"][0]
    elsewhere = selection_bias(study, agent, 8760.0, algo="ppo", env_id="CryptoSpot-v0")
    assert elsewhere["mismatch"] and "env ['CryptoTrading-v0']" in elsewhere["notes"][0]


def test_null_markets_keep_volatility_and_lose_direction():
    kwargs = market(momentum=0.7)
    frame = run_frame(kwargs)
    for null in (sign_randomised(frame, 0), block_bootstrap(frame, 0, 24)):
        assert (null["high"] >= null[["open", "close"]].max(axis=1) - 1e-9).all()
        assert (null["low"] <= null[["open", "close"]].min(axis=1) + 1e-9).all()
        moves = np.diff(np.log(null["close"].to_numpy()))
        original = np.diff(np.log(frame["close"].to_numpy()))
        assert np.std(moves) == pytest.approx(np.std(original), rel=0.15)
    flipped = np.diff(np.log(sign_randomised(frame, 0)["close"].to_numpy()))
    original = np.diff(np.log(frame["close"].to_numpy()))
    autocorrelation = lambda x: np.corrcoef(x[:-1], x[1:])[0, 1]  # noqa: E731
    assert autocorrelation(original) > 0.1 > abs(autocorrelation(flipped))


# ------------------------------------------------------------------ review fixes: honest numbers and clear errors
def test_a_seed_that_never_trades_scores_sharpe_zero_and_stays_in_the_iqm():
    """Two flat seeds and one that trades: the flat ones count as Sharpe 0 (as the agent and the null
    runs are counted), so the IQM is over three seeds, not over the one that traded."""
    traded = np.random.default_rng(0).normal(-0.0005, 0.01, size=200)
    summary = seed_summary([np.zeros(200), np.zeros(200), traded], metric="sharpe", periods_per_year=8760)
    own = metrics.sharpe_ratio(traded, 8760)
    assert summary["scores"] == pytest.approx([0.0, 0.0, own])
    assert summary["n_seeds"] == 3
    assert summary["iqm"] == pytest.approx(float(np.mean([0.0, 0.0, own])))  # trim_mean of 3 keeps all 3
    assert summary["ci_low"] <= summary["iqm"] <= summary["ci_high"]
    assert backtest_record_sharpe_of_flat() == summary["scores"][0]


def backtest_record_sharpe_of_flat() -> float:
    """The Sharpe ratio the null and agent parts give a flat backtest."""

    class Flat:
        returns = np.zeros(50)
        periods_per_year = 8760.0
        trades = 0
        fees_paid = 0.0

    return backtest_record(Flat())["sharpe"]


def test_power_is_recovered_only_when_more_than_half_the_runs_clear_the_bar():
    null = [0.0, -0.5, 0.2]
    bar = float(np.quantile(null, 0.95))
    one_of_two = power_part([{"sharpe": 5.0}, {"sharpe": 0.0}], null, alpha=0.05)
    assert not one_of_two["recovered"] and one_of_two["beating_bar"] == 1
    assert one_of_two["median_sharpe"] <= bar
    assert power_part([{"sharpe": 5.0}, {"sharpe": 4.0}], null, alpha=0.05)["recovered"]
    assert power_part([{"sharpe": 5.0}, {"sharpe": 0.0}, {"sharpe": 4.0}], null, alpha=0.05)["recovered"]
    unmeasured = power_part([{"sharpe": 5.0}, {"sharpe": None}, {"sharpe": None}], null, alpha=0.05)
    assert not unmeasured["recovered"]  # runs that could not be measured do not vouch for the configuration
    verdict, reasons = decide(
        {
            "null": {"n_runs": 3, "p_value": 1.0, "observed_sharpe": 0.0, "smallest_p_value": 0.25},
            "power": one_of_two,
        }
    )
    assert verdict == "untestable" and "1 of 2 runs" in reasons[0]


def test_a_session_env_is_untestable_and_its_perturbation_check_is_not_reported_as_passed():
    leak = leak_check("CryptoFuturesSession-v0", {})
    assert [check["passed"] for check in leak["checks"]] == [None, None]  # neither check could run here
    assert all(check["detail"].startswith("not run") for check in leak["checks"])
    assert not leak["leak"] and any("did not run" in warning for warning in leak["warnings"])


def test_features_that_cannot_be_checked_make_the_audit_untestable():
    leak = {"leak": False, "error": True, "checks": [], "reasons": ["the run's features cannot be checked: x"]}
    null = {"n_runs": 19, "p_value": 0.05, "observed_sharpe": 3.0, "smallest_p_value": 0.05, "null_median": 0.0}
    verdict, reasons = decide({"leak": leak, "null": null})
    assert verdict == "untestable" and reasons == leak["reasons"]


def test_a_null_test_left_out_is_named_as_such():
    verdict, reasons = decide({"costs": {"findings": []}})
    assert verdict == "untestable" and reasons[0].startswith("the null test did not run")


def test_churn_of_an_agent_that_loses_before_costs_reads_plainly():
    from sb3_crypto.audit.costs import churn_findings

    gross = {"total_return": -0.064, "fills": 2654}
    net = {"total_return": -0.716, "fills": 2654, "turnover": 801.9, "turnover_per_bar": 0.267}
    net.update(mean_holding_bars=2.2, fees_share_of_capital=0.468)
    found = churn_findings(gross, net, 0.0, {"fee": 0.001, "slippage": 0.0005})
    assert found["fee_churn"]
    assert "loses only 6.4% before costs but 71.6% after them" in found["text"][0]


def test_a_wrong_study_or_storage_is_one_clear_error_that_creates_nothing(tmp_path):
    from sb3_crypto.audit.jobs import StorageError, open_study
    from sb3_crypto.audit.selection import load_study

    missing = tmp_path / "typo.log"
    with pytest.raises(StorageError, match=r"--storage .*typo\.log: no such file"):
        load_study("s", str(missing))
    assert not missing.exists()  # not created by looking for it
    with pytest.raises(StorageError, match=r"--study-storage nowhere://x: cannot open this Optuna storage"):
        load_study("s", "nowhere://x", "--study-storage")
    url = f"sqlite:///{tmp_path / 'tuning.db'}"
    optuna.create_study(study_name="sac-tuning", storage=url)
    with pytest.raises(StorageError, match=r"--study 'sac-tunin': no such study in .*\(the studies there: sac-tuning"):
        load_study("sac-tunin", url)
    with pytest.raises(StorageError, match="--storage nowhere://x"):
        open_study("nowhere://x")


def test_an_edge_names_the_selection_and_seed_checks_it_passed():
    null = {"n_runs": 19, "p_value": 0.05, "observed_sharpe": 3.0, "smallest_p_value": 0.05, "null_median": 0.0}
    selection = {"deflated_sharpe": 0.97, "n_trials": 12, "pbo": {"pbo": 0.25}}
    seeds = {"sharpe": {"n_seeds": 5, "iqm": 2.4, "ci_low": 1.1, "ci_high": 3.0}}
    verdict, reasons = decide({"null": null, "costs": {"pnl_after_costs": 0.2}, "selection": selection, "seeds": seeds})
    assert verdict == "edge"
    assert "selection: deflated Sharpe ratio 0.97 >= 0.95 over 12 trials" in reasons
    assert "selection: PBO 0.25 <= 0.5" in reasons
    assert "seeds: IQM Sharpe 2.40 over 5 seeds, 95 % CI [1.10, 3.00] above 0" in reasons


def test_the_perturbation_check_catches_an_observation_that_reads_the_next_bar(monkeypatch):
    """A leak the feature pipeline cannot see (between the features and the agent): the observation
    of bar t carries bar t + 1's close. Only the perturbation check can find it, and it does."""
    from sb3_crypto.envs.trading import CryptoTradingEnv

    honest = CryptoTradingEnv.observation_at

    def peeking(self, t, account=None):
        return honest(self, t, account) + np.float32(self.market.frame["close"].iloc[t + 1])

    monkeypatch.setattr(CryptoTradingEnv, "observation_at", peeking)
    leak = leak_check(ENV, market(momentum=0.0))
    assert leak["leak"]
    assert [c["passed"] for c in leak["checks"]] == [True, False]  # the features are clean
    assert "reads the future" in leak["reasons"][0]
    verdict, reasons = decide({"leak": leak, "null": {"n_runs": 19, "p_value": 0.05}})
    assert verdict == "leak_found" and reasons == leak["reasons"]


def test_close_only_data_is_leak_checked_and_nulled_as_close_only(tmp_path):
    """A run on a file of closes only (one feature channel): the perturbation check and the null
    markets keep it close-only (they used to rebuild it with open/high/low and five channels)."""
    import gymnasium as gym

    closes = run_frame(market(momentum=0.0))["close"].iloc[:1500]
    path = tmp_path / "closes.csv"
    closes.rename_axis("timestamp").to_frame().to_csv(path)
    kwargs = {"data": str(path), "window_size": WINDOW, "episode_length": 64}
    leak = leak_check(ENV, kwargs)
    assert [c["passed"] for c in leak["checks"]] == [True, True]
    own = gym.make(ENV, **kwargs).unwrapped
    assert own.market.channels == ("close_return",)
    for kind in ("sign", "bootstrap"):
        recipe = market_recipe(kind, 1, kwargs, run_frame(kwargs))
        null = gym.make(ENV, **market_env_kwargs(recipe, kwargs, tmp_path / kind)).unwrapped
        assert null.market.channels == own.market.channels
        assert null.observation_space == own.observation_space
