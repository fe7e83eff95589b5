"""FastSAC with the per-asset portfolio policy (``AssetwiseSACPolicy``: EIIE's shared convolution or
the per-asset MLP, per-token heads, critics averaged over the tokens) is SB3's SAC: one gradient
step and several from the same parameters on the same batch give SB3's losses, parameters, targets
and optimizer states; acting gives SB3's actions. Tolerances as in ``test_fast_sac.py``."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import test_fast_sac
import torch as th
from stable_baselines3 import SAC
from test_fast_sac import assert_same_losses, assert_same_state

import sb3_crypto  # noqa: F401
from sb3_crypto.envs.base import LayoutBox
from sb3_crypto.policies import (
    AssetAttentionExtractor,
    AssetMlpExtractor,
    AssetwiseSACPolicy,
    EiieAssetwiseSACPolicy,
)
from sb3_crypto.policies.assetwise_fast import AssetwiseNetworks
from sb3_crypto.sac import FastSAC

LR = 1e-3
ENV_KWARGS = {"synthetic_kwargs": {"n_assets": 4, "n_bars": 800}, "window_size": 5, "episode_length": 64}


class ExtraValues(gym.ObservationWrapper):
    """The portfolio observation with two extra values after the weights (the extractor joins them
    to every token)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        layout = dataclasses.replace(env.observation_space.layout, extra=("step_sin", "step_cos"))
        self.observation_space = LayoutBox(10.0, layout)
        self._step = 0

    def reset(self, **kwargs):
        self._step = 0
        return super().reset(**kwargs)

    def step(self, action):
        self._step += 1
        return super().step(action)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        extra = np.array([np.sin(self._step / 7), np.cos(self._step / 5)], dtype=np.float32)
        return np.concatenate((observation, extra)).astype(np.float32)


#: Policy variants: the shipped EIIE entry's networks, EIIE without a token MLP and with three
#: critics, the per-asset MLP extractor with two hidden layers, and extra values in the observation.
VARIANTS = {
    "eiie": ({"net_arch": [32], "features_extractor_kwargs": {"token_dim": 16, "maps": (4, 8)}}, False),
    "eiie-bare-3-critics": (
        {"net_arch": [], "n_critics": 3, "features_extractor_kwargs": {"token_dim": 8, "maps": (3, 5), "kernel": 2}},
        False,
    ),
    "asset-mlp": (
        {
            "net_arch": [16, 16],
            "features_extractor_class": AssetMlpExtractor,
            "features_extractor_kwargs": {"token_dim": 8, "hidden": (12, 6)},
        },
        False,
    ),
    "eiie-extra": ({"net_arch": [16], "features_extractor_kwargs": {"token_dim": 8, "maps": (4, 6)}}, True),
    # a first convolution spanning the window (one position), a deep token MLP with one critic, and
    # the per-asset "MLP" without hidden layers (the window itself is the code) with extra values
    "eiie-full-kernel": (
        {"net_arch": [8], "features_extractor_kwargs": {"token_dim": 8, "maps": (3, 4), "kernel": 5}},
        False,
    ),
    "eiie-deep-1-critic": (
        {"net_arch": [16, 8, 8], "n_critics": 1, "features_extractor_kwargs": {"token_dim": 8, "maps": (2, 3)}},
        False,
    ),
    "asset-window-extra": (
        {
            "net_arch": [8],
            "features_extractor_class": AssetMlpExtractor,
            "features_extractor_kwargs": {"token_dim": 6, "hidden": ()},
        },
        True,
    ),
}


def make_env(extra: bool) -> gym.Env:
    env = gym.make("CryptoPortfolio-v0", **ENV_KWARGS)
    return ExtraValues(env) if extra else env


def make_pair(variant: str, **kwargs) -> tuple[SAC, FastSAC]:
    """SB3's SAC and FastSAC with the per-asset policy, the same seed and initial parameters, both
    buffers filled with the same 400 random-action transitions."""
    policy_kwargs, extra = VARIANTS[variant]
    settings = {
        "learning_rate": LR,
        "buffer_size": 2000,
        "learning_starts": 10_000,
        "batch_size": 64,
        "gamma": 0.5,
        "train_freq": 1,
        "gradient_steps": 1,
        "policy_kwargs": policy_kwargs,
        "seed": 0,
        **kwargs,
    }
    models = [cls(EiieAssetwiseSACPolicy, make_env(extra), **settings) for cls in (SAC, FastSAC)]
    for model in models:
        th.manual_seed(1)
        np.random.seed(1)  # noqa: NPY002
        model.learn(400)
    sb3, fast = models
    for a, b in zip(sb3.policy.state_dict().values(), fast.policy.state_dict().values()):
        assert th.equal(a, b)
    return sb3, fast


def train_both(sb3: SAC, fast: FastSAC, gradient_steps: int, seed: int = 5) -> None:
    test_fast_sac.train_both(sb3, fast, gradient_steps, seed, batch_size=64)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_gradient_step_equals_sb3(variant: str) -> None:
    sb3, fast = make_pair(variant)
    train_both(sb3, fast, 1)
    assert fast._fast_state is not None and hasattr(fast._fast_state, "nets"), "the network step did not run"
    assert_same_losses(sb3, fast)
    assert_same_state(sb3, fast, param_atol=0.01 * LR)


def test_several_steps_stay_with_sb3() -> None:
    sb3, fast = make_pair("eiie", tau=0.05)
    train_both(sb3, fast, 6)
    assert fast._fast_state is not None
    assert_same_losses(sb3, fast)
    assert_same_state(sb3, fast, param_atol=0.02 * LR)


def test_fixed_entropy_coefficient_and_a_delayed_target() -> None:
    sb3, fast = make_pair("asset-mlp", ent_coef=0.05, target_update_interval=2)
    train_both(sb3, fast, 3)
    assert fast._fast_state is not None
    assert_same_losses(sb3, fast)
    assert_same_state(sb3, fast, param_atol=0.01 * LR)


@pytest.mark.parametrize("variant", ["eiie", "asset-mlp", "eiie-extra"])
def test_acting_gives_sb3_actions(variant: str) -> None:
    """The actor's graph-free acting pass gives the module tree's actions and makes the same random
    draws (stochastic actions from the same generator state)."""
    _, fast = make_pair(variant)
    actor = fast.actor
    obs = th.as_tensor(fast.replay_buffer.observations[:50, 0])
    with th.no_grad():
        assert actor._acting_net() is not None
        for deterministic in (True, False):
            th.manual_seed(3)
            ours = actor(obs, deterministic)
            th.manual_seed(3)
            theirs = super(type(actor), actor).forward(obs, deterministic)
            assert th.allclose(ours, theirs, rtol=1e-6, atol=1e-6), deterministic
    assert th.is_grad_enabled()
    graph = actor(obs[:4])  # with autograd on, SB3's pass builds the graph
    assert graph.requires_grad


def test_learning_with_the_fast_step_follows_sb3() -> None:
    """Training from the same start with train_freq 1 (acting and training interleaved): FastSAC's
    actions stay SB3's for hundreds of steps (the float32 rounding differences do not compound)."""
    policy_kwargs, _ = VARIANTS["eiie"]
    actions = []
    for cls in (SAC, FastSAC):
        model = cls(
            EiieAssetwiseSACPolicy,
            make_env(False),
            learning_rate=LR,
            learning_starts=64,
            batch_size=64,
            gamma=0.5,
            policy_kwargs=policy_kwargs,
            seed=0,
        )
        model.learn(300)
        assert cls is SAC or model._fast_state is not None
        actions.append(model.replay_buffer.actions[:300, 0].copy())
    assert np.allclose(actions[0][:250], actions[1][:250], atol=1e-3)


def test_attention_extractor_trains_through_sb3() -> None:
    """Tokens that see each other (attention) have no fast path: FastSAC runs SB3's train, which
    learns."""
    model = FastSAC(
        AssetwiseSACPolicy,
        make_env(False),
        learning_starts=64,
        batch_size=32,
        policy_kwargs={
            "features_extractor_class": AssetAttentionExtractor,
            "features_extractor_kwargs": {"token_dim": 8},
        },
    )
    assert model.policy.actor.features_extractor.fast_spec() is None
    before = model.critic.features_extractor.attention.layers[0].linear1.weight.detach().clone()
    model.learn(120)
    assert model._fast_state is None
    assert not th.equal(before, model.critic.features_extractor.attention.layers[0].linear1.weight)


def test_shared_extractor_is_refused_by_the_networks() -> None:
    model = FastSAC(EiieAssetwiseSACPolicy, make_env(False), policy_kwargs={"share_features_extractor": True})
    with pytest.raises(ValueError, match="separate actor and critic extractors"):
        AssetwiseNetworks(model.policy)
    model.learning_starts = 32
    model.learn(64)
    assert model._fast_state is None  # SB3's train ran


def test_networks_follow_loads_and_saved_models_load_in_sb3(tmp_path: Path) -> None:
    """A FastSAC model saved after fast steps loads in SB3's SAC with the same parameters; loading
    parameters into a trained FastSAC and training on keeps it equal to SB3 trained the same way."""
    sb3, fast = make_pair("eiie")
    train_both(sb3, fast, 2)
    fast.save(tmp_path / "fast.zip")
    loaded = SAC.load(tmp_path / "fast.zip", env=make_env(False))
    for a, b in zip(fast.policy.state_dict().values(), loaded.policy.state_dict().values()):
        assert th.equal(a, b)
    # (copies: an optimizer's load_state_dict keeps the given state tensors, which would then be
    # shared by both models' optimizers)
    fast.policy.load_state_dict(sb3.policy.state_dict())
    fast.actor.optimizer.load_state_dict(copy.deepcopy(sb3.actor.optimizer.state_dict()))
    fast.critic.optimizer.load_state_dict(copy.deepcopy(sb3.critic.optimizer.state_dict()))
    fast.log_ent_coef.data.copy_(sb3.log_ent_coef.data)
    fast.ent_coef_optimizer.load_state_dict(copy.deepcopy(sb3.ent_coef_optimizer.state_dict()))
    train_both(sb3, fast, 1, seed=9)
    assert fast._fast_state is not None
    assert_same_state(sb3, fast, param_atol=0.01 * LR)


@pytest.mark.cuda
def test_cuda_step_equals_sb3_on_the_device_without_host_syncs() -> None:
    """On a GPU: the per-asset networks' step equals SB3's SAC on the same device and makes no host
    synchronisation (PyTorch's sync debug mode raises on one)."""
    sb3, fast = make_pair("eiie", device="cuda")
    train_both(sb3, fast, 1)
    state = fast._fast_state
    assert state is not None and hasattr(state, "nets")
    assert_same_state(sb3, fast, param_atol=0.01 * LR)
    test_fast_sac.without_host_syncs(lambda stats: fast._network_step(state, 64, stats, update_target=True, first=True))


def test_replaced_parameters_are_followed_by_acting_and_training() -> None:
    """A parameter replaced by a new object (``load_state_dict(assign=True)``, a user's surgery):
    acting and the training step use the new one, not a kept copy of the old."""
    sb3, fast = make_pair("eiie")
    train_both(sb3, fast, 1)
    obs = th.as_tensor(fast.replay_buffer.observations[:8, 0])
    with th.no_grad():
        before = fast.actor(obs, deterministic=True)
    fast.policy.load_state_dict({k: v.clone() * 0.5 for k, v in fast.policy.state_dict().items()}, assign=True)
    with th.no_grad():
        after = fast.actor(obs, deterministic=True)
        reference = super(type(fast.actor), fast.actor).forward(obs, deterministic=True)
    assert not th.allclose(before, after)
    assert th.allclose(after, reference, rtol=1e-6, atol=1e-6)
    fast.actor.optimizer = th.optim.Adam(fast.actor.parameters(), lr=LR, fused=True)
    fast.critic.optimizer = th.optim.Adam(fast.critic.parameters(), lr=LR, fused=True)
    weight = fast.actor.mu.score.weight
    snapshot = weight.detach().clone()
    fast.train(1, 64)
    assert fast._fast_state is not None and fast._fast_state.nets.actor.mean.weight is weight
    assert not th.equal(snapshot, weight.detach())
