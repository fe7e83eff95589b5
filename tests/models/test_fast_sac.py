"""FastSAC is SB3's SAC: one gradient step (and several) from the same parameters on the same
batch gives SB3's losses, parameters, targets, entropy coefficient and optimizer states; acting gives
SB3's actions; saved files load in SB3's ``SAC``; the parts of the fast step each hold on their own.

Tolerances. The fast step computes the same operations in another order (products through oneDNN
or batched, hand-written gradients, the fused Adam kernel, compiled heads in float64), so values
agree to float32 rounding, not bit for bit: losses and Adam moments to a relative 1e-4 (moments
relative to their largest element), parameters to ``1 % of the learning rate``. The last is looser
than float32 because Adam's first step moves each weight by ``lr * g / (|g| + eps)``: for an
element whose gradient is ~1e-8 (Adam's eps), that fraction of ``lr`` depends on the gradient's
last bits (measured: up to 3.6e-6 with lr 7.3e-4).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

import sb3_crypto  # noqa: F401
from sb3_crypto.algorithms import ALGORITHMS, algorithm_for_policy, policy_family
from sb3_crypto.algorithms.model_io import infer_algo, load_model
from sb3_crypto.sac import FastSAC, FastSACPolicy, PackedReplayBuffer

LR = 7.3e-4
ROOT = Path(__file__).resolve().parents[2]

#: The fast step's variants: the CPU default (oneDNN products, compiled heads), torch's products
#: and torch-operation heads (the code path used off the CPU, per critic), and the batched critics.
VARIANTS = {
    "cpu-default": {},
    "torch-ops": {"onednn": False, "fused_heads": False},
    "batched": {"batched": True, "fused_heads": False},
}


#: A five-wide action (four assets and cash): the heads' loops over several action dimensions and
#: the narrow products (gSDE noise and variance, the critics' action gradient) run.
WIDE_ACTION_ENV = (
    "CryptoPortfolio-v0",
    {"synthetic_kwargs": {"n_assets": 4, "n_bars": 800}, "window_size": 4, "episode_length": 64},
)


def make_pair(
    use_sde: bool, options: dict | None = None, env: tuple[str, dict] | None = None, **kwargs
) -> tuple[SAC, FastSAC]:
    """SB3's SAC and FastSAC with the same seed (so the same initial parameters) and sac.yml's
    settings; both buffers filled with the same 400 random-action transitions (no training yet,
    unless ``learning_starts`` says otherwise). ``env``: ``(env id, kwargs)`` instead of the
    trading env."""
    env_id, env_kwargs = env or ("CryptoTrading-v0", {"window_size": 16, "episode_length": 128})
    settings = {
        "learning_rate": LR,
        "buffer_size": 2000,
        "learning_starts": 10_000,
        "batch_size": 256,
        "tau": 0.01,
        "gamma": 0.95,
        "train_freq": 4,
        "gradient_steps": 4,
        "use_sde": use_sde,
        "sde_sample_freq": 64,
        "policy_kwargs": {"log_std_init": -2, "net_arch": [128, 128]},
        "seed": 0,
        **kwargs,
    }
    models = []
    for cls in (SAC, FastSAC):
        models.append(cls("MlpPolicy", gym.make(env_id, **env_kwargs), **settings))
    sb3, fast = models
    if options is not None:
        fast.fast_options = options
    for model in models:
        th.manual_seed(1)  # (the generators are global: each model starts from the same states)
        np.random.seed(1)  # noqa: NPY002
        model.learn(400)
    if settings["learning_starts"] >= 400:
        assert np.array_equal(sb3.replay_buffer.observations, fast.replay_buffer.observations)
        for a, b in zip(sb3.policy.state_dict().values(), fast.policy.state_dict().values()):
            assert th.equal(a, b)
    return sb3, fast


def train_both(sb3: SAC, fast: FastSAC, gradient_steps: int, seed: int = 5, batch_size: int = 256) -> None:
    for model in (sb3, fast):
        th.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002 (SB3 samples batches with the global generator)
        model.train(gradient_steps, batch_size)


def assert_same_state(sb3: SAC, fast: FastSAC, param_atol: float) -> None:
    # actor, both critics and both targets (the policy's state_dict holds all of them)
    for (name, a), b in zip(sb3.policy.state_dict().items(), fast.policy.state_dict().values()):
        assert th.allclose(a, b, rtol=1e-5, atol=param_atol), (name, (a - b).abs().max().item())
    optimizers = [("actor", sb3.actor.optimizer, fast.actor.optimizer)]
    optimizers.append(("critic", sb3.critic.optimizer, fast.critic.optimizer))
    assert (sb3.ent_coef_optimizer is None) == (fast.ent_coef_optimizer is None)
    if sb3.ent_coef_optimizer is not None:  # a learned coefficient (not a fixed ent_coef)
        assert th.allclose(sb3.log_ent_coef, fast.log_ent_coef, rtol=1e-5, atol=1e-7)
        optimizers.append(("ent_coef", sb3.ent_coef_optimizer, fast.ent_coef_optimizer))
    for name, a, b in optimizers:
        states_a, states_b = a.state_dict()["state"], b.state_dict()["state"]
        assert states_a.keys() == states_b.keys(), name
        for key in states_a:
            assert float(states_a[key]["step"]) == float(states_b[key]["step"])
            for moment in ("exp_avg", "exp_avg_sq"):
                x, y = states_a[key][moment], states_b[key][moment]
                scale = float(x.abs().max())
                assert th.allclose(x, y, rtol=1e-4, atol=1e-4 * scale + 1e-12), (name, key, moment)


def assert_same_losses(sb3: SAC, fast: FastSAC) -> None:
    for key in ("train/critic_loss", "train/actor_loss", "train/ent_coef", "train/ent_coef_loss"):
        a, b = sb3.logger.name_to_value[key], fast.logger.name_to_value[key]
        assert b == pytest.approx(a, rel=1e-4, abs=1e-7), key


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("use_sde", [False, True], ids=["gaussian", "gsde"])
def test_one_gradient_step_equals_sb3(use_sde: bool, variant: str) -> None:
    sb3, fast = make_pair(use_sde, VARIANTS[variant])
    train_both(sb3, fast, 1)
    assert fast._fast_state is not None, "the fast step did not run"
    assert_same_losses(sb3, fast)
    assert_same_state(sb3, fast, param_atol=0.01 * LR)
    if use_sde:  # the exploration matrices the step drew, left for acting as SB3 leaves them
        dist_a, dist_b = sb3.actor.action_dist, fast.actor.action_dist
        assert th.allclose(dist_a.exploration_mat, dist_b.exploration_mat, rtol=1e-6, atol=1e-9)
        assert th.allclose(dist_a.exploration_matrices, dist_b.exploration_matrices, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("variant", ["cpu-default", "torch-ops"])
@pytest.mark.parametrize("use_sde", [False, True], ids=["gaussian", "gsde"])
def test_one_gradient_step_equals_sb3_with_a_wide_action(use_sde: bool, variant: str) -> None:
    sb3, fast = make_pair(use_sde, VARIANTS[variant], env=WIDE_ACTION_ENV)
    assert fast.action_space.shape == (5,)
    train_both(sb3, fast, 1)
    assert fast._fast_state is not None, "the fast step did not run"
    assert_same_losses(sb3, fast)
    assert_same_state(sb3, fast, param_atol=0.01 * LR)


@pytest.mark.parametrize("use_sde", [False, True], ids=["gaussian", "gsde"])
def test_several_steps_stay_with_sb3(use_sde: bool) -> None:
    """Twelve gradient steps in three train calls (the target update, the step counters and the
    learning-rate bookkeeping across calls); the rounding differences do not grow beyond 2 % of lr."""
    sb3, fast = make_pair(use_sde, ent_coef="auto_0.5", target_update_interval=2)
    for seed in range(3):
        train_both(sb3, fast, 4, seed=seed)
        assert_same_losses(sb3, fast)
    assert_same_state(sb3, fast, param_atol=0.02 * LR)


def test_fixed_entropy_coefficient_and_other_shapes() -> None:
    """A fixed ent_coef, three critics, a one-layer trunk and no mean clip: still SB3's step."""
    kwargs = {"ent_coef": 0.2, "policy_kwargs": {"net_arch": [64], "n_critics": 3, "clip_mean": 0.0}}
    for use_sde in (False, True):
        sb3, fast = make_pair(use_sde, **kwargs)
        train_both(sb3, fast, 2)
        assert fast._fast_state is not None
        for (name, a), b in zip(sb3.policy.state_dict().items(), fast.policy.state_dict().values()):
            assert th.allclose(a, b, rtol=1e-5, atol=0.01 * LR), name
        assert_same_losses(sb3, fast)


def test_acting_gives_sb3_actions() -> None:
    for use_sde in (False, True):
        sb3, fast = make_pair(use_sde)
        if use_sde:  # reset_noise while collecting (FastActor's graph-free draw): the same matrices
            th.manual_seed(4)
            sb3.actor.reset_noise(3)
            th.manual_seed(4)
            fast.actor.__dict__["acting_noise"] = True
            fast.actor.reset_noise(3)
            fast.actor.__dict__["acting_noise"] = False
            assert th.equal(sb3.actor.action_dist.exploration_mat, fast.actor.action_dist.exploration_mat)
            assert th.equal(sb3.actor.action_dist.exploration_matrices, fast.actor.action_dist.exploration_matrices)
        obs = np.random.default_rng(1).standard_normal((7, 84)).astype(np.float32)
        for deterministic in (True, False):
            for n in (1, 7):
                th.manual_seed(3)
                a = sb3.predict(obs[:n], deterministic=deterministic)[0]
                th.manual_seed(3)
                b = fast.predict(obs[:n], deterministic=deterministic)[0]
                np.testing.assert_array_equal(a, b)


def test_learning_runs_identically_long_enough_to_matter() -> None:
    """learn() end to end with gSDE (collecting, training, the matrices drawn in both) for 800
    training steps: both take the same actions (to rounding) and so walk the same episodes."""
    sb3, fast = make_pair(True, learning_starts=200)
    for model in (sb3, fast):
        th.manual_seed(7)  # (the torch generator is global: each model starts from the same state)
        np.random.seed(7)  # noqa: NPY002
        model.learn(600, reset_num_timesteps=False)
    actions_a = sb3.replay_buffer.actions[:1000, 0, 0]
    actions_b = fast.replay_buffer.actions[:1000, 0, 0]
    # Rounding differences grow as training feeds on itself (RL amplifies them): within 1e-3 over
    # the first 200 training steps, the same behaviour (correlated actions) after.
    assert np.allclose(actions_a[:400], actions_b[:400], atol=1e-3)
    assert np.corrcoef(actions_a, actions_b)[0, 1] > 0.99


def test_saved_fast_model_loads_in_sb3_and_is_recognised(tmp_path: Path) -> None:
    _, fast = make_pair(True, learning_starts=300)
    fast.learn(100, reset_num_timesteps=False)
    path = tmp_path / "model.zip"
    fast.save(path)
    assert infer_algo(path) == "sac_fast"
    assert algorithm_for_policy(FastSACPolicy) == "sac_fast" and policy_family(FastSACPolicy) == "sac"
    assert ALGORITHMS["sac_fast"] is FastSAC
    plain = SAC.load(path)
    again = load_model(path)
    assert type(again) is FastSAC
    obs = np.random.default_rng(0).standard_normal((5, 84)).astype(np.float32)
    for model in (plain, again):
        np.testing.assert_array_equal(
            model.predict(obs, deterministic=True)[0], fast.predict(obs, deterministic=True)[0]
        )
    # a reloaded FastSAC trains on (optimizer states and stacked critics rebuilt)
    again.set_env(gym.make("CryptoTrading-v0", window_size=16, episode_length=128))
    again.learn(50, reset_num_timesteps=False)
    assert again._fast_state is not None


def test_packed_buffer_samples_what_sb3_samples(tmp_path: Path) -> None:
    space = gym.spaces.Box(-1, 1, (6,), np.float32)
    actions = gym.spaces.Box(-1, 1, (2,), np.float32)
    packed = PackedReplayBuffer(50, space, actions, device="cpu", n_envs=2)
    plain = ReplayBuffer(50, space, actions, device="cpu", n_envs=2)
    rng = np.random.default_rng(0)
    for i in range(70):  # wraps around
        args = (
            rng.standard_normal((2, 6)).astype(np.float32),
            rng.standard_normal((2, 6)).astype(np.float32),
            rng.standard_normal((2, 2)).astype(np.float32),
            rng.standard_normal(2).astype(np.float32),
            np.array([i % 7 == 0, i % 5 == 0]),
            [{"TimeLimit.truncated": i % 10 == 0}, {}],
        )
        packed.add(*args)
        plain.add(*args)
    np.random.seed(3)  # noqa: NPY002
    expected = plain.sample(32)
    np.random.seed(3)  # noqa: NPY002
    batch, rewards, dones = packed.sample_packed(32)
    assert th.equal(batch[0, :, :6], expected.observations) and th.equal(batch[0, :, 6:], expected.actions)
    assert th.equal(batch[1, :, :6], expected.next_observations)
    assert th.equal(rewards, expected.rewards) and th.equal(dones, expected.dones)
    np.random.seed(3)  # noqa: NPY002
    via_sample = packed.sample(32)  # SB3's sample() on the packed arrays
    assert th.equal(via_sample.observations, expected.observations)
    # pickled (save_replay_buffer) as plain arrays, laid out again on the next packed batch
    copy = pickle.loads(pickle.dumps(packed))
    assert copy._blocks is None
    np.random.seed(3)  # noqa: NPY002
    again, _, _ = copy.sample_packed(32)
    assert th.equal(again, batch)


class _LearnedExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__(observation_space, 32)
        self.linear = th.nn.Linear(int(np.prod(observation_space.shape)), 32)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return th.relu(self.linear(obs.flatten(1)))


def test_unsupported_policies_and_hooks_train_through_sb3() -> None:
    """A features extractor with parameters, or a gradient hook on a parameter, sends training
    through SB3's own train (autograd), which then runs and learns as SAC does."""
    env = gym.make("CryptoTrading-v0", window_size=16, episode_length=128)
    model = FastSAC(
        "MlpPolicy",
        env,
        learning_starts=100,
        batch_size=32,
        policy_kwargs={"features_extractor_class": _LearnedExtractor},
    )
    before = model.actor.features_extractor.linear.weight.detach().clone()
    model.learn(200)
    assert model._fast_state is None
    assert not th.equal(before, model.actor.features_extractor.linear.weight)
    hooked = FastSAC("MlpPolicy", env, learning_starts=100, batch_size=32)
    calls = []
    hooked.actor.mu.weight.register_hook(lambda grad: calls.append(1))
    hooked.learn(200)
    assert calls and hooked._fast_state is None


def test_fast_state_follows_loads_and_replaced_parameters() -> None:
    """Parameters loaded with ``load_state_dict`` are copied into the stacked critics' views; a
    parameter whose tensor is replaced (``.data =``, as ``policy.to(device)`` does) makes the step
    build its stacks again. Training stays SB3's either way."""
    sb3, fast = make_pair(False)
    train_both(sb3, fast, 1)
    state = fast._fast_state
    assert state is not None
    fast.policy.load_state_dict(sb3.policy.state_dict())  # (equal values: only the mechanics change)
    assert state.critic.tied()
    fast.policy.critic.qf0[0].weight.data = fast.policy.critic.qf0[0].weight.data.clone()
    fast.policy.critic_target.qf1[2].bias.data = fast.policy.critic_target.qf1[2].bias.data.clone()
    assert not state.critic.tied() and not state.target.tied()
    train_both(sb3, fast, 2, seed=6)
    assert fast._fast_state is not None and fast._fast_state is not state
    assert_same_state(sb3, fast, param_atol=0.01 * LR)


def test_sac_fast_yaml_is_sac_yaml() -> None:
    sac = yaml.safe_load((ROOT / "hyperparams" / "sac.yml").read_text())
    fast = yaml.safe_load((ROOT / "hyperparams" / "sac_fast.yml").read_text())
    assert sac == fast


@pytest.mark.cuda
@pytest.mark.parametrize("use_sde", [False, True], ids=["gaussian", "gsde"])
def test_cuda_step_equals_sb3_on_the_device_without_host_syncs(use_sde: bool) -> None:
    """On a GPU: the replay buffer mirrored on the device, batched critics; one step equals SB3's SAC
    on the same device (same generator, same draws), and the step makes no host synchronisation
    (PyTorch's sync debug mode raises on one). (Losses reach the logger one train call late there.)"""
    sb3, fast = make_pair(use_sde, device="cuda")
    train_both(sb3, fast, 1)
    state = fast._fast_state
    assert state is not None and state.critic.batched and not state.fused_heads
    assert_same_state(sb3, fast, param_atol=0.01 * LR)
    without_host_syncs(lambda stats: fast._fast_step(state, 256, stats, update_target=True, first=True))


def without_host_syncs(step) -> None:
    """Run ``step(stats)`` (one fast gradient step) with PyTorch's CUDA sync debug mode raising on
    any host synchronisation."""
    stats = th.empty((1, 4), device="cuda")
    th.cuda.synchronize()
    th.cuda.set_sync_debug_mode("error")
    try:
        with th.no_grad():
            step(stats[0])
    finally:
        th.cuda.set_sync_debug_mode("default")


def run_heads(actor, heads: tuple, latent: th.Tensor, draws: th.Tensor) -> list[tuple]:
    """``(actions, log_probs, grad_latent, head parameter gradients)`` of each ``(forward, backward,
    fused)`` head on ``latent`` (96 rows) with ``draws`` (the rsample noise or gSDE's exploration
    matrix), backward through the first 48 rows with fixed action gradients and 0.01 per
    log-probability."""
    from sb3_crypto.sac.matmul import Matmul
    from sb3_crypto.sac.networks import ActorWeights

    grad_actions = th.linspace(-1, 1, 48 * 5).view(48, 5)
    results = []
    with th.no_grad():  # (as in the training step)
        for forward, backward, fused in heads:
            weights = ActorWeights(actor, Matmul(onednn=False))
            for grad in weights.grads:
                grad.zero_()
            actions, log_probs, cache = forward(weights, latent, draws)
            rows = cache.first(48)
            if fused:
                grad_latent = backward(weights, rows, grad_actions, 0.01, False)
            else:
                grad_latent = backward(weights, rows, grad_actions, th.tensor(0.01))
            results.append((actions, log_probs, grad_latent, [g.clone() for g in weights.grads]))
    return results


def assert_same_heads(results: list[tuple], gradients: bool = True) -> None:
    (a_t, lp_t, gl_t, grads_t), (a_f, lp_f, gl_f, grads_f) = results
    assert th.allclose(a_t, a_f, rtol=0, atol=1e-6)
    assert th.allclose(lp_t, lp_f, rtol=1e-5, atol=1e-3)
    if gradients:
        assert th.allclose(gl_t, gl_f, rtol=1e-4, atol=1e-5 * float(gl_t.abs().max()))
        for g_t, g_f in zip(grads_t, grads_f):
            assert th.allclose(g_t, g_f, rtol=1e-4, atol=1e-5 * float(g_t.abs().max()) + 1e-12)


@pytest.mark.parametrize("clip", [True, False], ids=["clip-mean", "no-clip"])
def test_compiled_gsde_head_is_the_torch_head_on_saturated_actions(clip: bool) -> None:
    """The compiled gSDE head (torch's element-wise operations, compiled row sums and gradients)
    against the torch-operation head that follows SB3's operations, on a five-wide action with rows
    whose latents are scaled up until the squashed actions saturate (the inverted action is clamped
    at 1 - eps and the squashing correction is near its largest): same actions, log-probabilities
    and gradients of the mean layer, ``log_std`` and the latent."""
    from sb3_crypto.sac.networks import gsde, gsde_backward, gsde_fused, gsde_fused_backward

    kwargs = {"policy_kwargs": {"log_std_init": 0.5, "net_arch": [32], **({} if clip else {"clip_mean": 0.0})}}
    fast = FastSAC("MlpPolicy", gym.make(WIDE_ACTION_ENV[0], **WIDE_ACTION_ENV[1]), use_sde=True, seed=0, **kwargs)
    generator = th.Generator().manual_seed(0)
    latent = th.rand(96, 32, generator=generator)
    latent[::3] *= 40.0  # saturated rows
    exploration = th.randn(32, 5, generator=generator)
    heads = ((gsde, gsde_backward, False), (gsde_fused, gsde_fused_backward, True))
    results = run_heads(fast.actor, heads, latent, exploration)
    assert (results[0][0].abs() > 0.99999).any(), "no saturated action: the test would not reach the clamp"
    assert_same_heads(results)


def test_compiled_squashed_gaussian_head_is_the_torch_head_at_the_clamps() -> None:
    """The compiled squashed-Gaussian head (``log(std)`` as the clamped log-std, one logarithm of
    the corrections' product per row) against the torch-operation head on a five-wide action, with
    the log-std layer's output beyond SB3's upper clamp (2) and means of 8-10 whose actions saturate
    (``1 - a^2`` near the correction's epsilon): same actions, log-probabilities and gradients.
    Beyond the lower clamp (-20: std 2e-9) SB3's float32 ``mean + noise * std`` is the mean itself,
    and the kernel rounds as SB3 does: the same log-probabilities (the gradient of the mean there
    adds and subtracts ``diff / var`` terms of ~1e9 in SB3's float32, which is noise, so gradients
    are compared with the lower clamp not reached)."""
    from sb3_crypto.sac.networks import (
        squashed_gaussian,
        squashed_gaussian_backward,
        squashed_gaussian_fused,
        squashed_gaussian_fused_backward,
    )

    env = gym.make(WIDE_ACTION_ENV[0], **WIDE_ACTION_ENV[1])
    fast = FastSAC("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [32]})
    generator = th.Generator().manual_seed(0)
    latent = th.rand(96, 32, generator=generator)
    noise = th.randn(96, 5, generator=generator)
    heads = (
        (squashed_gaussian, squashed_gaussian_backward, False),
        (squashed_gaussian_fused, squashed_gaussian_fused_backward, True),
    )
    for low in (-30.0, -6.0):
        with th.no_grad():
            fast.actor.log_std.bias[:2] = th.tensor([low, 5.0])
            fast.actor.mu.bias[2:] = th.tensor([8.0, -9.0, 10.0])  # saturated actions
        results = run_heads(fast.actor, heads, latent, noise)
        assert (results[0][0].abs() > 0.99999).any(), "no saturated action: the test would not reach the limit"
        assert_same_heads(results, gradients=low > -20)
