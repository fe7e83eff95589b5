"""Portfolio baselines run through the env (same costs), OLMAR without look-ahead, the portfolio
metrics, and the backtest command on a saved portfolio model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from stable_baselines3 import PPO

import sb3_crypto  # noqa: F401
from sb3_crypto import metrics
from sb3_crypto.backtest import main as backtest_main
from sb3_crypto.evaluation.backtest import BACKTESTS, OUTPUT_FILES
from sb3_crypto.evaluation.portfolio import (
    PORTFOLIO_RESULT_FILES,
    WeightsPolicy,
    best_asset_hindsight,
    equal_weight_hold,
    olmar,
    olps_rule,
    olps_weights,
    portfolio_baselines,
    portfolio_summary,
    run_portfolio_policy,
    uniform_crp,
)
from sb3_crypto.files import OutputExistsError
from sb3_crypto.policies import EiieAssetwiseActorCriticPolicy

KWARGS = {
    "synthetic_kwargs": {"n_assets": 3, "n_bars": 400, "seed": 2},
    "window_size": 6,
    "split": "test",
    "episode_length": None,
}


def make(**changes: object) -> gym.Env:
    return gym.make("CryptoPortfolio-v0", **{**KWARGS, **changes})


def run(rule_factory, **changes: object):
    env = make(**changes)
    return run_portfolio_policy(WeightsPolicy(env, rule_factory()), env, name="x"), env.unwrapped


def test_uniform_crp_by_hand_without_costs_and_the_env_charges_its_costs() -> None:
    """Zero costs: each bar the book is set to equal weights at the next open and marked at its close.
    (The action range cannot say "no cash" exactly: the softmax leaves cash exp(-2 * logit_scale) of
    the assets' weight, which the hand computation keeps too.) With the env's fee and slippage the
    same rule pays exactly the env's costs."""
    free, env = run(uniform_crp, fee=0.0, slippage=0.0, dead_band=0.0)
    market = env.market
    share = 1.0 / (env.n_assets + math.exp(-2 * env.logit_scale))  # of each asset; cash keeps the rest
    equity = [env.ledger.initial_cash]
    units = np.zeros(env.n_assets)
    cash = equity[0]
    for t in range(env.first_bar, env.last_bar + 1):
        opened = cash + units @ market.open[t + 1]
        units = opened * share / market.open[t + 1]
        cash = opened * (1.0 - env.n_assets * share)
        equity.append(cash + units @ market.close[t + 1])
    np.testing.assert_allclose(free.equity, equity, rtol=1e-9)
    assert free.fees_paid == 0.0

    costly, env = run(uniform_crp, fee=0.002, slippage=0.001, dead_band=0.0)
    fills = env.ledger.fills
    assert costly.trades == len(fills) > env.n_assets  # rebalanced on later bars too
    assert costly.fees_paid == pytest.approx(sum(f.units * f.price * 0.002 for f in fills), rel=1e-12)
    assert all(f.price == pytest.approx(market.open[f.bar][f.asset] * (1 + 0.001 * f.side)) for f in fills)
    assert costly.equity[-1] < free.equity[-1]


def test_equal_weight_hold_buys_once_then_holds() -> None:
    result, env = run(equal_weight_hold)
    fills = env.ledger.fills
    assert len(fills) == env.n_assets and {f.bar for f in fills} == {env.first_bar + 1}
    spent = [f.units * f.price for f in fills]
    np.testing.assert_allclose(spent, np.mean(spent), rtol=1e-9)  # equal values at the first open
    assert result.extra["weights"][1, 0] < 0.01  # all invested, the costs came out of the cash
    assert (result.extra["turnover"][1:] == 0).all()
    # held: from the first close on, equity moves with the marks of the units bought
    units = np.asarray(env.ledger.positions)
    marks = env.market.mark[env.first_bar + 1 : env.last_bar + 2]
    np.testing.assert_allclose(result.equity[1:], env.ledger.cash + marks @ units, rtol=1e-12)


def test_best_asset_is_chosen_with_hindsight_and_held() -> None:
    env = make()
    rule, asset = best_asset_hindsight(env)
    base = env.unwrapped
    mark = base.market.mark
    growth = mark[base.last_bar + 1] / mark[base.first_bar]
    assert asset == base.assets[int(np.argmax(growth))]
    result = run_portfolio_policy(WeightsPolicy(env, rule), env, name="best_asset_hindsight")
    assert result.trades == 1 and base.ledger.fills[0].asset == int(np.argmax(growth))
    assert result.extra["weights"][-1, 1 + int(np.argmax(growth))] > 0.99


def test_olps_weights_use_no_future_prices() -> None:
    rng = np.random.default_rng(0)
    closes = pd.DataFrame(np.exp(np.cumsum(rng.normal(0, 0.03, (150, 4)), axis=0)))
    closes.iloc[:40, 2] = np.nan  # listed late
    weights = olps_weights(olmar(), closes)
    assert weights.shape == (150, 4) and np.isfinite(weights).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    for cut in (60, 100):
        future = closes.copy()
        future.iloc[cut + 1 :] *= rng.uniform(0.5, 2.0, (150 - cut - 1, 4))
        changed = olps_weights(olmar(), future)
        np.testing.assert_array_equal(changed[: cut + 1], weights[: cut + 1])
        assert not np.array_equal(changed[cut + 1 :], weights[cut + 1 :])


def test_olmar_baseline_trades_its_weights_through_the_env() -> None:
    env = make(dead_band=0.0, fee=0.0, slippage=0.0)
    base = env.unwrapped
    rule = olps_rule(env, olmar())
    result = run_portfolio_policy(WeightsPolicy(env, rule), env, name="olmar")
    closes = pd.DataFrame(base.market.close[base.first_bar : base.last_bar + 1])
    expected = olps_weights(olmar(), closes)
    # the env holds the library's weights of the decision bar, traded at the next open and drifted to
    # its close (up to the softmax's floor: a weight of 0 is exp(-2 * logit_scale) ~ 5e-5 of the largest)
    held = result.extra["weights"][1:, 1:]
    opens, closes_next = base.market.open[base.first_bar + 1 :], base.market.close[base.first_bar + 1 :]
    drifted = expected * closes_next[: len(expected)] / opens[: len(expected)]
    drifted /= drifted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(held, drifted, atol=(base.n_assets + 1) * math.exp(-2 * base.logit_scale))


def test_portfolio_metrics_by_hand() -> None:
    concentration = metrics.portfolio_concentration([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert concentration["hhi"] == pytest.approx((0.5 + 1.0) / 2)
    assert concentration["effective_assets"] == pytest.approx((2.0 + 1.0) / 2)
    assert concentration["max_weight"] == pytest.approx(0.5)
    assert concentration["invested"] == pytest.approx(2 / 3)
    assert metrics.turnover([100.0, 0.0, 50.0], [100.0, 200.0, 25.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="bars x assets"):
        metrics.portfolio_concentration([0.5, 0.5])


def test_asset_pnl_contributions_add_up_to_the_pnl() -> None:
    for result in portfolio_baselines(make):
        pnl = result.extra["asset_pnl"]
        assert pnl.sum() == pytest.approx(result.equity[-1] - result.equity[0], rel=1e-9)
        summary = portfolio_summary(result)
        assert 1.0 <= summary["effective_assets"] <= 3.0 and 0.0 <= summary["deflated_sharpe"] <= 1.0


def test_backtest_command_on_a_portfolio_model(tmp_path: Path) -> None:
    assert "portfolio" in BACKTESTS and OUTPUT_FILES["portfolio"] == PORTFOLIO_RESULT_FILES
    train_kwargs = {key: value for key, value in KWARGS.items() if key not in ("split", "episode_length")}
    env = gym.make("CryptoPortfolio-v0", **train_kwargs, episode_length=16)
    model = PPO(EiieAssetwiseActorCriticPolicy, env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(32)
    run = tmp_path / "logs" / "ppo" / "CryptoPortfolio-v0_1"
    (run / "CryptoPortfolio-v0").mkdir(parents=True)
    (run / "CryptoPortfolio-v0" / "config.yml").write_text(
        "env_kwargs:\n  synthetic_kwargs: {n_assets: 3, n_bars: 400, seed: 2}\n  window_size: 6\n  episode_length: 16\n"
    )
    model.save(run / "CryptoPortfolio-v0.zip")
    out = tmp_path / "report"
    lines: list[str] = []
    results = backtest_main(["--model", str(run / "CryptoPortfolio-v0.zip"), "--out", str(out)])
    names = [r.name for r in results]
    assert names == ["agent", "equal_weight_hold", "uniform_crp", "best_asset_hindsight", "olmar"]
    assert sorted(p.name for p in out.iterdir()) == sorted(PORTFOLIO_RESULT_FILES)
    report = json.loads((out / "metrics.json").read_text())
    agent = report["results"]["agent"]
    for key in ("sharpe", "turnover", "annual_turnover", "hhi", "effective_assets", "deflated_sharpe", "alpha"):
        assert key in agent
    assert set(report["asset_pnl"]["agent"]) == {"A00", "A01", "A02"}
    assert report["hindsight_asset"] in {"A00", "A01", "A02"}
    assert "hindsight" in report["baselines"]["best_asset_hindsight"]
    assert set(report["production_readiness"]["criteria"]) >= {"sharpe", "max_drawdown"}
    weights = pd.read_csv(out / "weights.csv", index_col=0)
    assert list(weights.columns) == ["cash", "A00", "A01", "A02"]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-9)
    equity = pd.read_csv(out / "equity.csv", index_col=0)
    assert list(equity.columns) == names and len(equity) == len(weights) == len(results[0].equity)
    trades = pd.read_csv(out / "trades.csv")
    assert list(trades.columns[:3]) == ["time", "asset", "side"] and len(trades) == results[0].trades
    for figure in ("equity.png", "weights.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(OutputExistsError):
        from sb3_crypto.evaluation.backtest import backtest

        backtest(model, "CryptoPortfolio-v0", train_kwargs, out=out, echo=lines.append)


def test_a_ruined_pass_is_extended_flat_to_the_end_of_the_split() -> None:
    env = make(allow_short=True, max_gross_leverage=10.0)
    base = env.unwrapped
    riser = int(np.argmax(base.market.mark[base.last_bar + 1] / base.market.mark[base.first_bar]))

    def short_the_riser(env, t, current):  # ten times short the split's best asset: ruin
        weights = np.zeros(env.n_assets + 1)
        weights[0], weights[1 + riser] = 11.0, -10.0
        return weights

    result = run_portfolio_policy(WeightsPolicy(env, short_the_riser), env, name="ruin")
    other = make()
    normal = run_portfolio_policy(WeightsPolicy(other, uniform_crp()), other)
    ended = result.extra["ended"]["bar"]
    assert base.first_bar < ended < base.last_bar + 1
    assert len(result.equity) == len(normal.equity) and result.timestamps == normal.timestamps
    stop = ended - base.first_bar
    assert result.equity[stop] <= 0 and (result.equity[stop:] == result.equity[stop]).all()
    assert (result.extra["turnover"][stop:] == 0).all() and (result.extra["weights"][stop + 1 :] == 0).all()


#: Asset names that HTML would read as markup if the page did not escape them.
ODD_ASSETS = ("<script>alert(1)</script>", "A&B", 'C"D')

#: The portfolio page's figure and table titles, in order (figures: equity, drawdown, weights,
#: turnover, concentration, PnL contribution, monthly returns).
PAGE_TITLES = [
    "Equity against the baselines (start = 1)",
    "Drawdown from the running peak",
    "agent's weights over time (long side, cash first)",
    "Annual turnover per strategy",
    "Effective number of assets per strategy (mean of 1 / HHI)",
    "Turnover and concentration",
    "PnL contribution per asset",
    "PnL contribution per asset (quote)",
    "agent, by calendar month",
    "Production readiness of the agent",
]


def fixed_weights(obs: np.ndarray) -> np.ndarray:
    """A policy that always asks for the same target weights (cash, then three assets)."""
    return np.array([0.0, 1.0, 0.5, -0.5], dtype=np.float32)


def test_portfolio_page_shows_every_figure_and_escapes_the_asset_names(tmp_path: Path, monkeypatch) -> None:
    import html
    import re
    import sys

    from sb3_crypto.data.synthetic import synthetic_panel
    from sb3_crypto.evaluation.backtest import backtest
    from sb3_crypto.evaluation.portfolio import write_portfolio_results
    from sb3_crypto.evaluation.reports import HTML_SKIPPED, REPORT_HTML

    data = dict(zip(ODD_ASSETS, synthetic_panel(n_assets=3, n_bars=300, seed=2).values()))
    # Without plotly the backtest writes every other file and says which extra to install. (OLMAR's
    # library, universal-portfolios, imports plotly itself: it is loaded before plotly is hidden.)
    olmar()
    lines: list[str] = []
    with monkeypatch.context() as blocked:
        for name in ("plotly", "plotly.io", "plotly.graph_objects"):
            blocked.setitem(sys.modules, name, None)  # import plotly... raises ImportError
        settings = {"data": data, "window_size": 6}
        results = backtest(fixed_weights, "CryptoPortfolio-v0", settings, out=tmp_path / "a", echo=lines.append)
    assert lines[-1] == HTML_SKIPPED
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(set(PORTFOLIO_RESULT_FILES) - {REPORT_HTML})

    out = tmp_path / "b"
    write_portfolio_results(results, out, {"env": "CryptoPortfolio-v0", "split": "test"})
    assert sorted(p.name for p in out.iterdir()) == sorted(PORTFOLIO_RESULT_FILES)
    page = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert page.count('class="plotly-graph-div"') == 7
    assert [html.unescape(title) for title in re.findall(r"<h3>(.*?)</h3>", page)] == PAGE_TITLES
    assert "agent: " in page and "against equal-weight buy-and-hold&#x27;s" in page
    for heading in ("Equity", "Weights", "Turnover and concentration", "PnL contribution per asset", "Metrics"):
        assert f"<h2>{heading}</h2>" in page
    # The names are shown escaped in the tables, never as markup: the page's only scripts are
    # plotly.js and one per figure (plotly writes "<" inside its JSON as \u003c).
    assert page.count("<script") == 1 + 7
    assert "alert(1)</script>" not in page
    for name in ODD_ASSETS:
        assert page.count(f'<th class="text">{html.escape(name, quote=True)}</th>') == 1  # a row of the PnL table
    assert "\\u003cscript\\u003ealert(1)" in page  # the figures' asset names, as JSON
    # The page is one of the results: a folder that holds only a report.html is refused, not overwritten.
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / REPORT_HTML).write_text("an earlier report")
    with pytest.raises(OutputExistsError, match=r"report\.html"):
        write_portfolio_results(results, tmp_path / "c", {"env": "CryptoPortfolio-v0"})
    assert (tmp_path / "c" / REPORT_HTML).read_text() == "an earlier report"


def test_portfolio_figures_stack_the_weights_and_group_the_pnl_by_asset() -> None:
    from sb3_crypto.evaluation import figures

    result, _ = run(uniform_crp)
    names = ["cash", *result.extra["assets"]]
    fig = figures.weights_figure(result.timestamps, result.extra["weights"], names)
    assert [trace.name for trace in fig.data] == names and {trace.stackgroup for trace in fig.data} == {"weights"}
    np.testing.assert_allclose(np.sum([trace.y for trace in fig.data], axis=0), 1.0, atol=1e-9)  # cash included
    with pytest.raises(ValueError, match="do not match 3 names"):
        figures.weights_figure(result.timestamps, result.extra["weights"], names[:3])
    pnl = {"agent": {"A00": 1.0, "A01": -2.0}, "olmar": {"A00": 3.0, "A01": 0.5}}
    fig = figures.grouped_bar_figure(pnl, yaxis="PnL")
    assert fig.layout.barmode == "group" and [trace.name for trace in fig.data] == ["agent", "olmar"]
    assert list(fig.data[0].x) == ["A00", "A01"] and list(fig.data[1].y) == [3.0, 0.5]


def test_equity_figures_take_a_log_scale_when_one_curve_flattens_the_others() -> None:
    from sb3_crypto.evaluation import figures
    from sb3_crypto.evaluation.rollout import BacktestResult

    flat = np.linspace(100.0, 120.0, 50)
    assert not figures.log_scale_fits([flat, np.linspace(100.0, 500.0, 50)])  # 5-fold: linear reads well
    assert figures.log_scale_fits([flat, np.linspace(100.0, 3000.0, 50)])  # 30-fold
    assert figures.log_scale_fits([flat, np.linspace(100.0, 8.0, 50)])  # lost 92 %: 15-fold below the top
    ruined = np.linspace(100.0, 3000.0, 50)
    ruined[-1] = 0.0
    assert not figures.log_scale_fits([flat, ruined])  # a log axis cannot show 0

    times = list(pd.date_range("2024-01-01", periods=50, freq="D", tz="UTC"))
    strong = [BacktestResult(n, e, times, 0.0, 0, 365.0) for n, e in (("agent", 30 * flat), ("hold", flat))]
    strong[0].equity = np.linspace(100.0, 3000.0, 50)
    fig = figures.equity_figure(strong)
    assert fig.layout.yaxis.type == "log" and fig.layout.updatemenus[0].active == 1
    assert [button.args[0]["yaxis.type"] for button in fig.layout.updatemenus[0].buttons] == ["linear", "log"]
    assert figures.equity_figure(strong, log=False).layout.yaxis.type == "linear"
    weak = [BacktestResult(n, flat, times, 0.0, 0, 365.0) for n in ("agent", "hold")]
    assert figures.equity_figure(weak).layout.yaxis.type == "linear"
