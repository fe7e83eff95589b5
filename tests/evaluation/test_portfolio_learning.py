"""Learning: PPO, SAC and FastSAC with EIIE's per-asset heads, trained as ``hyperparams/ppo.yml``,
``sac.yml`` and ``sac_fast.yml`` say, learn the portfolio env's planted cross-sectional signal
(FastSAC through its own training step for these networks).

The synthetic panel of the config carries a short-term reversal (last bar's relative losers gain on
the next bar), which sums to zero across assets: an equal-weight portfolio does not earn it. After a
short run the deterministic policy, walking the untouched test split once with the env's fees and
slippage, must beat equal-weight buy-and-hold and the uniform constant rebalanced portfolio, both
run through the same env (same costs), by a wide margin.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from rl_zoo3.utils import get_class_by_name
from stable_baselines3 import PPO, SAC

import sb3_crypto  # noqa: F401
from sb3_crypto.evaluation.portfolio import (
    WeightsPolicy,
    equal_weight_hold,
    portfolio_summary,
    run_portfolio_policy,
    uniform_crp,
)
from sb3_crypto.policies import AssetwiseActorCriticPolicy, AssetwiseSACPolicy, EiieExtractor, PortfolioExtractor
from sb3_crypto.sac import FastSAC

HYPERPARAMS = Path(__file__).resolve().parents[2] / "hyperparams"
ALGOS = {
    "ppo": (PPO, AssetwiseActorCriticPolicy),
    "sac": (SAC, AssetwiseSACPolicy),
    "sac_fast": (FastSAC, AssetwiseSACPolicy),
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_eiie_agent_beats_equal_weight_and_crp_after_costs_out_of_sample(algo: str) -> None:
    params = dict(yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())["CryptoPortfolio-v0"])
    env_kwargs = params.pop("env_kwargs")
    n_timesteps = int(params.pop("n_timesteps"))
    policy = get_class_by_name(params.pop("policy"))  # RL Zoo's resolution of a dotted policy name
    params["policy_kwargs"] = eval(params["policy_kwargs"])  # RL Zoo's own convention for this key
    assert env_kwargs["synthetic_kwargs"]["signal"] == "reversal"
    cls, policy_class = ALGOS[algo]
    model = cls(policy, gym.make("CryptoPortfolio-v0", **env_kwargs), seed=0, verbose=0, **params)
    assert isinstance(model.policy, policy_class)
    assert all(isinstance(m, EiieExtractor) for m in model.policy.modules() if isinstance(m, PortfolioExtractor))
    model.learn(n_timesteps)
    if cls is FastSAC:
        assert model._fast_state is not None, "FastSAC trained through SB3's step, not its own"

    def make() -> gym.Env:
        return gym.make("CryptoPortfolio-v0", **{**env_kwargs, "split": "test", "episode_length": None})

    agent = portfolio_summary(run_portfolio_policy(model, make()))
    baselines = {}
    for name, rule in (("equal_weight_hold", equal_weight_hold()), ("uniform_crp", uniform_crp())):
        env = make()
        baselines[name] = portfolio_summary(run_portfolio_policy(WeightsPolicy(env, rule), env, name=name))
    best = max(baselines.values(), key=lambda s: s["total_return"])
    # after costs: it trades (and pays) every bar, and still ends far ahead
    assert agent["fees_paid"] > 0 and agent["turnover"] > 0.2
    assert agent["total_return"] > best["total_return"] + 0.5  # by more than 50 percentage points
    assert agent["sharpe"] > max(s["sharpe"] for s in baselines.values()) + 1.0
    assert agent["effective_assets"] < 3.5  # it picks assets rather than spreading evenly (4 assets)
