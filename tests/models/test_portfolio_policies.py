"""Portfolio extractors (EIIE, per-asset MLP, attention across assets) and the per-asset policy head:
equivariance to the order of the assets, the layout checks, and the dotted-name policies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.utils import ConstantSchedule

from sb3_crypto.envs.base import LayoutBox, ObservationLayout, PortfolioLayout
from sb3_crypto.policies import (
    POLICIES,
    PORTFOLIO_EXTRACTORS,
    AssetwiseActorCriticPolicy,
    AssetwiseSACPolicy,
    EiieExtractor,
    PortfolioExtractor,
    WindowConvExtractor,
)

N_ASSETS, WINDOW, CHANNELS = 4, 9, 3


def portfolio_space(extra: tuple[str, ...] = ()) -> LayoutBox:
    assets = tuple(f"A{k}" for k in range(N_ASSETS))
    layout = PortfolioLayout(WINDOW, ("c0", "c1", "c2"), ("cash", *assets), extra, assets=assets)
    return LayoutBox(10.0, layout)


def observations(space: LayoutBox, batch: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(batch, space.shape[0])).astype(np.float32)
    weights = rng.dirichlet(np.ones(N_ASSETS + 1), size=batch).astype(np.float32)
    start = space.layout.window_dim
    obs[:, start : start + N_ASSETS + 1] = weights
    return obs


def permute_assets(space: LayoutBox, obs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The same observations with the assets in ``order`` (windows and weights; cash stays first)."""
    windows, rest = space.layout.split(obs)
    rest = rest.copy()
    rest[:, 1 : N_ASSETS + 1] = rest[:, 1 : N_ASSETS + 1][:, order]
    return np.concatenate((windows[:, order].reshape(len(obs), -1), rest), axis=1)


ORDER = np.array([2, 0, 3, 1])


@pytest.mark.parametrize("name", sorted(PORTFOLIO_EXTRACTORS))
@pytest.mark.parametrize("extra", [(), ("drawdown", "time")], ids=["no-extra", "extra"])
def test_extractor_is_equivariant_to_the_asset_order(name: str, extra: tuple[str, ...]) -> None:
    th.manual_seed(0)
    space = portfolio_space(extra)
    extractor = PORTFOLIO_EXTRACTORS[name](space, token_dim=16).eval()
    obs = observations(space)
    with th.no_grad():
        tokens = extractor.tokens(th.as_tensor(obs))
        permuted = extractor.tokens(th.as_tensor(permute_assets(space, obs, ORDER)))
        flat = extractor(th.as_tensor(obs))
    assert tokens.shape == (5, N_ASSETS + 1, 16)
    assert flat.shape == (5, extractor.features_dim) == (5, (N_ASSETS + 1) * 16)
    # the cash token stays, the assets' tokens move with their assets
    th.testing.assert_close(permuted[:, 0], tokens[:, 0], rtol=1e-5, atol=1e-5)
    th.testing.assert_close(permuted[:, 1:], tokens[:, 1:][:, ORDER], rtol=1e-5, atol=1e-5)
    # and each asset's token depends on its own window: changing asset 2's window changes its token
    changed = obs.copy()
    changed[:, 2 * WINDOW * CHANNELS : 3 * WINDOW * CHANNELS] += 1.0
    with th.no_grad():
        moved = extractor.tokens(th.as_tensor(changed))
    assert not th.allclose(moved[:, 3], tokens[:, 3])


def test_eiie_token_uses_the_current_weight_and_the_cash_bias() -> None:
    th.manual_seed(0)
    space = portfolio_space()
    extractor = EiieExtractor(space, token_dim=8)
    obs = observations(space)
    changed = obs.copy()
    changed[:, space.layout.window_dim + 1] += 0.5  # the first asset's weight
    with th.no_grad():
        before, after = extractor.tokens(th.as_tensor(obs)), extractor.tokens(th.as_tensor(changed))
    assert not th.allclose(before[:, 1], after[:, 1])
    th.testing.assert_close(before[:, 2:], after[:, 2:])
    assert extractor.cash_bias.requires_grad and extractor.cash_bias.shape == (extractor.encoded_dim,)


def test_assetwise_policy_permutes_actions_and_keeps_the_value() -> None:
    th.manual_seed(0)
    space = portfolio_space()
    action_space = gym.spaces.Box(-5.0, 5.0, (N_ASSETS + 1,), np.float32)
    policy = AssetwiseActorCriticPolicy(space, action_space, ConstantSchedule(3e-4), net_arch=dict(pi=[16], vf=[16]))
    policy.action_net.score.weight.data.normal_()  # the orthogonal init makes the scores tiny
    obs = observations(space)
    with th.no_grad():
        dist = policy.get_distribution(th.as_tensor(obs)).distribution
        values = policy.predict_values(th.as_tensor(obs))
        permuted_obs = th.as_tensor(permute_assets(space, obs, ORDER))
        permuted = policy.get_distribution(permuted_obs).distribution
        permuted_values = policy.predict_values(permuted_obs)
    assert dist.mean.shape == (5, N_ASSETS + 1)
    assert dist.mean[:, 1:].std() > 1e-3  # the scores differ between assets
    index = np.concatenate(([0], 1 + ORDER))
    th.testing.assert_close(permuted.mean, dist.mean[:, index], rtol=1e-5, atol=1e-6)
    th.testing.assert_close(permuted.stddev, dist.stddev[:, index])
    th.testing.assert_close(permuted_values, values, rtol=1e-5, atol=1e-6)
    assert policy.log_std.shape == (1,)


def test_assetwise_sac_policy_permutes_actions_and_keeps_q() -> None:
    th.manual_seed(0)
    space = portfolio_space()
    action_space = gym.spaces.Box(-1.0, 1.0, (N_ASSETS + 1,), np.float32)
    policy = AssetwiseSACPolicy(space, action_space, ConstantSchedule(3e-4), net_arch=[16])
    obs = th.as_tensor(observations(space))
    permuted_obs = th.as_tensor(permute_assets(space, observations(space), ORDER))
    index = np.concatenate(([0], 1 + ORDER))
    actions = th.rand(5, N_ASSETS + 1) * 2 - 1
    with th.no_grad():
        mean, log_std, _ = policy.actor.get_action_dist_params(obs)
        permuted_mean, permuted_log_std, _ = policy.actor.get_action_dist_params(permuted_obs)
        q_values = policy.critic(obs, actions)
        permuted_q = policy.critic(permuted_obs, actions[:, index])
        other_q = policy.critic(obs, actions[:, index])
    assert mean.shape == (5, N_ASSETS + 1) and mean[:, 1:].std() > 1e-4
    th.testing.assert_close(permuted_mean, mean[:, index], rtol=1e-5, atol=1e-6)
    th.testing.assert_close(permuted_log_std, log_std[:, index], rtol=1e-5, atol=1e-6)
    assert len(q_values) == 2
    for q, permuted in zip(q_values, permuted_q, strict=True):
        th.testing.assert_close(permuted, q, rtol=1e-5, atol=1e-6)
    assert not th.allclose(other_q[0], q_values[0])  # Q does read which asset gets which action


def test_assetwise_policy_refuses_what_it_cannot_score() -> None:
    space = portfolio_space()
    wrong = gym.spaces.Box(-1.0, 1.0, (N_ASSETS,), np.float32)
    with pytest.raises(ValueError, match=r"Box of 5 logits \(cash and 4 assets\)"):
        AssetwiseActorCriticPolicy(space, wrong, ConstantSchedule(3e-4))
    right = gym.spaces.Box(-1.0, 1.0, (N_ASSETS + 1,), np.float32)
    with pytest.raises(ValueError, match="must be a PortfolioExtractor"):
        AssetwiseActorCriticPolicy(space, right, ConstantSchedule(3e-4), features_extractor_class=FlattenExtractor)
    with pytest.raises(ValueError, match="use_sde is not supported"):
        AssetwiseActorCriticPolicy(space, right, ConstantSchedule(3e-4), use_sde=True)
    with pytest.raises(ValueError, match=r"Box of 5 logits \(cash and 4 assets\)"):
        AssetwiseSACPolicy(space, gym.spaces.Box(-1.0, 1.0, (N_ASSETS,), np.float32), ConstantSchedule(3e-4))
    with pytest.raises(ValueError, match="use_sde is not supported"):
        AssetwiseSACPolicy(space, right, ConstantSchedule(3e-4), use_sde=True)


def test_single_asset_and_portfolio_extractors_refuse_each_other() -> None:
    with pytest.raises(ValueError, match=r"4 assets' windows \(a portfolio env\).*EiieExtractor"):
        WindowConvExtractor(portfolio_space())
    single = LayoutBox(10.0, ObservationLayout(8, ("a", "b"), ("position",)))
    with pytest.raises(ValueError, match=r"single-asset window.*WindowMlpExtractor"):
        EiieExtractor(single)
    plain = gym.spaces.Box(-1, 1, (N_ASSETS * WINDOW * CHANNELS + N_ASSETS + 1,), np.float32)
    with pytest.raises(ValueError, match="no portfolio layout; pass n_assets, window_size and n_channels"):
        EiieExtractor(plain)
    extractor = EiieExtractor(plain, n_assets=N_ASSETS, window_size=WINDOW, n_channels=CHANNELS)
    assert extractor.extra_dim == 0
    with pytest.raises(ValueError, match="cannot hold 4 windows of 9x3 and 5 weights"):
        EiieExtractor(gym.spaces.Box(-1, 1, (20,), np.float32), n_assets=N_ASSETS, window_size=WINDOW, n_channels=3)


def test_dotted_name_policies_default_to_their_extractor() -> None:
    space = portfolio_space()
    action_space = gym.spaces.Box(-5.0, 5.0, (N_ASSETS + 1,), np.float32)
    for prefix, extractor in PORTFOLIO_EXTRACTORS.items():
        policy = POLICIES[f"{prefix}AssetwiseActorCriticPolicy"](space, action_space, ConstantSchedule(1e-3))
        assert type(policy.features_extractor) is extractor
        for suffix in ("SACPolicy", "AssetwiseSACPolicy"):
            policy = POLICIES[f"{prefix}{suffix}"](space, action_space, ConstantSchedule(1e-3))
            assert type(policy.actor.features_extractor) is extractor


@pytest.mark.parametrize("prefix", sorted(PORTFOLIO_EXTRACTORS))
@pytest.mark.parametrize("suffix", ["AssetwiseActorCriticPolicy", "AssetwiseSACPolicy", "SACPolicy"])
def test_every_portfolio_policy_trains_saves_and_loads(tmp_path, prefix: str, suffix: str) -> None:
    from stable_baselines3 import PPO, SAC

    import sb3_crypto  # noqa: F401  (registers the env ids)

    env = gym.make(
        "CryptoPortfolio-v0", synthetic_kwargs={"n_assets": 3, "n_bars": 300}, window_size=6, episode_length=32
    )
    algo, kwargs = (PPO, {"n_steps": 32, "batch_size": 32, "n_epochs": 1}) if "Critic" in suffix else (SAC, {})
    kwargs["policy_kwargs"] = {"features_extractor_kwargs": {"token_dim": 8}}
    if algo is SAC:
        kwargs["learning_starts"] = 16
    model = algo(POLICIES[prefix + suffix], env, seed=0, **kwargs)
    model.learn(48)
    assert {type(m) for m in model.policy.modules() if isinstance(m, PortfolioExtractor)} == {
        PORTFOLIO_EXTRACTORS[prefix]
    }
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model")
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
