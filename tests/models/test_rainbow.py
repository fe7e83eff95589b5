"""Rainbow DQN: sum tree, prioritized n-step buffer, C51 projection, double targets, noisy nets,
save/load and resume, and learning against plain DQN."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_crypto  # noqa: F401
from sb3_crypto.common.buffers import PrioritizedReplayBuffer, SumTree
from sb3_crypto.evaluation.sessions import evaluate_sessions
from sb3_crypto.rainbow import D3QN, NoisyLinear, RainbowDQN, project_distribution

# ---------------------------------------------------------------------------------------- sum tree


def test_sum_tree_sampling_frequencies_match_priorities() -> None:
    tree = SumTree(10)
    priorities = np.arange(1, 11, dtype=float)
    tree.update(np.arange(10), priorities)
    assert tree.total == pytest.approx(55.0)
    rng = np.random.default_rng(0)
    draws = np.concatenate([tree.sample(64, rng) for _ in range(500)])
    observed = np.bincount(draws, minlength=10)
    expected = priorities / priorities.sum() * len(draws)
    chi_square = ((observed - expected) ** 2 / expected).sum()
    assert chi_square < 27.88  # chi-square critical value, 9 degrees of freedom, p = 0.001


def test_sum_tree_updates_duplicates_and_errors() -> None:
    tree = SumTree(5)  # padded leaves stay empty
    tree.update(np.array([0, 4, 4]), np.array([1.0, 2.0, 3.0]))  # the last duplicate wins
    assert tree.total == pytest.approx(4.0)
    tree.update(np.array([4]), np.array([0.5]))
    assert tree.total == pytest.approx(1.5)
    assert set(tree.find(np.array([0.0, 0.99, 1.0, 1.49]))) == {0, 4}
    with pytest.raises(ValueError, match="finite and non-negative"):
        tree.update(np.array([1]), np.array([-1.0]))
    with pytest.raises(IndexError):
        tree.update(np.array([5]), np.array([1.0]))


@pytest.mark.parametrize("capacity", [3, 1000, 40_000])
def test_wide_tree_matches_a_plain_prefix_sum(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    priorities = rng.random(capacity) * (rng.random(capacity) > 0.3)  # some zeros
    tree.update(np.arange(capacity), priorities)
    tree.update(rng.integers(0, capacity, 50), rng.random(50))
    leaves = tree.leaves[:capacity]
    assert tree.total == pytest.approx(leaves.sum())
    targets = rng.random(500) * tree.total
    expected = np.searchsorted(np.cumsum(leaves), targets, side="right")
    np.testing.assert_array_equal(tree.find(targets), expected)
    assert (leaves[tree.find(targets)] > 0).all()


def test_sum_tree_pickles_with_its_levels_in_step() -> None:
    import pickle

    tree = SumTree(300)
    tree.update(np.arange(300), np.ones(300))
    copy = pickle.loads(pickle.dumps(tree))
    copy.update(np.array([7]), np.array([11.0]))  # must reach the root through the same array
    assert copy.total == pytest.approx(310.0) and copy.levels[0][0] == copy.total
    assert tree.total == pytest.approx(300.0)
    # A tree pickled by the first release (one array per level, no flat store) still loads.
    old_state = {"capacity": 300, "fanout": tree.fanout, "depth": tree.depth, "levels": [x.copy() for x in tree.levels]}
    legacy = SumTree.__new__(SumTree)
    legacy.__setstate__(old_state)
    legacy.update(np.array([0]), np.array([2.0]))
    assert legacy.total == pytest.approx(301.0)
    np.testing.assert_array_equal(legacy.find(np.array([0.5, 1.5, 2.5])), [0, 0, 1])


def test_sum_tree_stratified_batches_cover_every_segment() -> None:
    tree = SumTree(16)
    tree.update(np.arange(16), np.ones(16))
    draws = tree.sample(16, np.random.default_rng(1))
    np.testing.assert_array_equal(draws, np.arange(16))  # one draw per equal slice of the total


# ---------------------------------------------------------------------------------------- buffer

OBS = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
ACT = gym.spaces.Discrete(2)


def fill(buffer: PrioritizedReplayBuffer, steps: list[tuple[float, bool, bool]]) -> None:
    """Add transitions ``(reward, done, truncated)``; observation k is k, next observation k + 0.5."""
    for k, (reward, done, truncated) in enumerate(steps):
        infos = [{"TimeLimit.truncated": truncated}]
        buffer.add(np.array([[k]]), np.array([[k + 0.5]]), np.array([[0]]), np.array([reward]), np.array([done]), infos)


def test_buffer_wraps_at_capacity_and_new_slots_get_max_priority() -> None:
    buffer = PrioritizedReplayBuffer(8, OBS, ACT, device="cpu", alpha=1.0)
    fill(buffer, [(1.0, False, False)] * 5)
    buffer.update_priorities(np.array([0, 1]), np.array([4.0, 0.5]))
    top = 4.0 + buffer.epsilon
    assert buffer.max_priority == pytest.approx(top)
    fill(buffer, [(1.0, False, False)] * 7)  # 12 adds into 8 slots: 5, 6, 7 then 0..3 (wrapped)
    assert buffer.full and buffer.pos == 4
    leaves = buffer.tree[np.arange(8)]
    # Every slot written after the update entered at the maximum; slot 4 kept its initial priority 1.
    np.testing.assert_allclose(leaves, [top] * 4 + [1.0] + [top] * 3)
    assert buffer.tree.total == pytest.approx(7 * top + 1.0)


def test_priority_updates_refuse_diverged_losses_and_bad_slots() -> None:
    buffer = PrioritizedReplayBuffer(8, OBS, ACT, device="cpu", alpha=1.0)
    fill(buffer, [(1.0, False, False)] * 4)
    before = buffer.tree.total
    with pytest.raises(ValueError, match="non-finite TD error or loss"):
        buffer.update_priorities(np.array([0, 1]), np.array([1.0, np.nan]))
    with pytest.raises(IndexError):
        buffer.update_priorities(np.array([0, 8]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="one value per index"):
        buffer.update_priorities(np.array([0, 1, 2]), np.array([1.0, 2.0]))
    assert buffer.tree.total == before  # nothing half-applied
    buffer.update_priorities(np.array([0, 1], dtype=np.int32), th.tensor([2.0, -3.0]))  # any int type, |error|
    np.testing.assert_allclose(buffer.tree[np.arange(2)], np.array([2.0, 3.0]) + buffer.epsilon)


def test_importance_weights_by_hand() -> None:
    buffer = PrioritizedReplayBuffer(4, OBS, ACT, device="cpu", alpha=0.5, beta=0.6, epsilon=1e-9)
    fill(buffer, [(0.0, False, False)] * 4)
    errors = np.array([1.0, 4.0, 9.0, 16.0])
    buffer.update_priorities(np.arange(4), errors)
    samples = buffer.sample(64)
    p = errors**0.5 / (errors**0.5).sum()
    weights = (4 * p) ** -0.6
    expected = weights[samples.indices] / weights[samples.indices].max()
    np.testing.assert_allclose(samples.weights.numpy().reshape(-1), expected, rtol=1e-5)
    assert set(samples.indices) == {0, 1, 2, 3}


def test_n_step_targets_with_truncation_and_termination_by_hand() -> None:
    gamma = 0.9
    buffer = PrioritizedReplayBuffer(16, OBS, ACT, device="cpu", n_steps=3, gamma=gamma, prioritized=False)
    # Episode A: rewards 1, 2, 3 then truncated at step 2. Episode B: rewards 10, 20 then terminated.
    # Episode C: rewards 5, 6, 7, 8 still running (step 8 is the newest transition).
    fill(
        buffer,
        [
            (1, False, False),
            (2, False, False),
            (3, True, True),
            (10, False, False),
            (20, True, False),
            (5, False, False),
            (6, False, False),
            (7, False, False),
            (8, False, False),
        ],
    )
    positions = np.arange(9)
    samples = buffer._n_step_samples(positions, np.zeros(9, dtype=int), positions, np.ones(9), None)
    returns = samples.rewards.numpy().reshape(-1)
    discounts = samples.discounts.numpy().reshape(-1)
    dones = samples.dones.numpy().reshape(-1)
    next_obs = samples.next_observations.numpy().reshape(-1)
    expected = [
        (1 + 0.9 * 2 + 0.81 * 3, gamma**3, 0.0, 2.5),  # truncated: bootstrap from the final observation
        (2 + 0.9 * 3, gamma**2, 0.0, 2.5),
        (3, gamma, 0.0, 2.5),
        (10 + 0.9 * 20, gamma**2, 1.0, 4.5),  # terminated: no bootstrap
        (20, gamma, 1.0, 4.5),
        (5 + 0.9 * 6 + 0.81 * 7, gamma**3, 0.0, 7.5),
        (6 + 0.9 * 7 + 0.81 * 8, gamma**3, 0.0, 8.5),
        (7 + 0.9 * 8, gamma**2, 0.0, 8.5),  # never past the newest transition
        (8, gamma, 0.0, 8.5),
    ]
    for k, (ret, discount, done, nxt) in enumerate(expected):
        assert returns[k] == pytest.approx(ret), k
        assert discounts[k] == pytest.approx(discount), k
        assert dones[k] == done, k
        assert next_obs[k] == nxt, k


def test_one_step_samples_match_the_general_n_step_path() -> None:
    steps = [(1, False, False), (2, True, True), (3, False, False), (4, True, False), (5, False, False)]
    one = PrioritizedReplayBuffer(8, OBS, ACT, device="cpu", n_steps=1, gamma=0.9, prioritized=False)
    fill(one, steps)
    positions = np.arange(5)
    fast = one._n_step_samples(positions, np.zeros(5, dtype=int), positions, np.ones(5), None)
    one.n_steps = 2  # force the general path, then compare its one-step prefix by hand
    np.testing.assert_allclose(fast.rewards.numpy().reshape(-1), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(fast.discounts.numpy().reshape(-1), [0.9] * 5)
    np.testing.assert_array_equal(fast.dones.numpy().reshape(-1), [0, 0, 0, 1, 0])  # truncation bootstraps
    np.testing.assert_array_equal(fast.next_observations.numpy().reshape(-1), [0.5, 1.5, 2.5, 3.5, 4.5])
    general = one._n_step_samples(positions, np.zeros(5, dtype=int), positions, np.ones(5), None)
    for k in (1, 3, 4):  # transitions that end an episode or are the newest: identical to one step
        assert general.rewards[k, 0] == fast.rewards[k, 0] and general.dones[k, 0] == fast.dones[k, 0]


def test_beta_anneals_from_beta0_to_one() -> None:
    model = RainbowDQN("MlpPolicy", "CartPole-v1", beta0=0.4)
    for remaining, beta in ((1.0, 0.4), (0.5, 0.7), (0.0, 1.0)):
        model._current_progress_remaining = remaining
        assert model._current_beta() == pytest.approx(beta)


# ---------------------------------------------------------------------------------------- targets


def test_c51_projection_by_hand() -> None:
    support = th.tensor([-1.0, 0.0, 1.0])
    probs = th.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    rewards = th.tensor([[0.5], [0.5]])
    dones = th.tensor([[0.0], [1.0]])
    discounts = th.tensor([[0.5], [0.5]])
    projected = project_distribution(probs, rewards, dones, discounts, support)
    # Not done: atoms move to 0, 0.5, 1 -> [0, 0.2 + 0.25, 0.25 + 0.3]. Done: all mass at 0.5 -> halves.
    np.testing.assert_allclose(projected.numpy(), [[0.0, 0.45, 0.55], [0.0, 0.5, 0.5]], atol=1e-6)
    clipped = project_distribution(probs[:1], th.tensor([[5.0]]), dones[:1], discounts[:1], support)
    np.testing.assert_allclose(clipped.numpy(), [[0.0, 0.0, 1.0]], atol=1e-6)  # beyond v_max: clipped


def _batch(model: RainbowDQN, n: int = 32):
    model.learn(200)
    return model.replay_buffer.sample(n)


@pytest.mark.parametrize("double", [True, False])
def test_double_target_selects_online_and_values_with_target(double: bool) -> None:
    model = RainbowDQN(
        "MlpPolicy", "CartPole-v1", double=double, noisy=False, categorical=False, n_steps=1, learning_starts=50, seed=0
    )
    data = _batch(model)
    with th.no_grad():  # make the networks disagree: the target's advantages are the online ones negated
        model.q_net_target.load_state_dict(model.q_net.state_dict())
        model.q_net_target.head.weight[1:].neg_()  # row 0 is the value stream
        model.q_net_target.head.bias[1:].neg_()
        online = model.q_net(data.next_observations)
        target = model.q_net_target(data.next_observations)
    chooser = online if double else target
    best = target.gather(1, chooser.argmax(dim=1, keepdim=True))
    expected = data.rewards + (1 - data.dones) * data.discounts * best
    th.testing.assert_close(model.td_target(data), expected)
    if double:
        assert not th.equal(online.argmax(1), target.argmax(1))  # the case really differs


def test_distribution_target_uses_the_online_choice() -> None:
    model = RainbowDQN(
        "MlpPolicy", "CartPole-v1", noisy=False, n_atoms=11, v_min=-5, v_max=5, learning_starts=50, seed=0
    )
    data = _batch(model)
    target = model.distribution_target(data)
    np.testing.assert_allclose(target.sum(dim=1).numpy(), 1.0, rtol=1e-5)
    with th.no_grad():
        action = model.q_net(data.next_observations).argmax(dim=1)
        probs = model.q_net_target.log_distribution(data.next_observations).exp()
        chosen = probs[th.arange(len(action)), action]
    expected = project_distribution(chosen, data.rewards, data.dones, data.discounts, model.q_net.support)
    th.testing.assert_close(target, expected)


class _LearnedExtractor(th.nn.Module):
    """A features extractor with parameters of its own (the fused loss must pass gradients to it)."""

    def __init__(self, observation_space: gym.Space, features_dim: int = 6) -> None:
        super().__init__()
        self.features_dim = features_dim
        self.linear = th.nn.Linear(int(np.prod(observation_space.shape)), features_dim)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return th.tanh(self.linear(obs))


@pytest.mark.parametrize(
    ("noisy", "dueling", "extractor", "noise_on"),
    [
        (True, True, False, True),
        (True, False, False, True),
        (False, True, False, True),
        (False, False, False, True),
        (True, True, True, True),
        (True, True, False, False),
    ],
)
def test_fused_categorical_loss_matches_autograd(noisy: bool, dueling: bool, extractor: bool, noise_on: bool) -> None:
    """The hand-written backward gives autograd's losses and gradients, for every parameter (noisy
    means and sigmas, biases, a learned features extractor), with and without dueling / noise,
    through autograd and written straight into ``.grad`` (where stale gradients are replaced, and
    the sigmas of noise that is off get none, as after ``zero_grad()`` and ``backward()``)."""
    policy_kwargs: dict = {"net_arch": [16, 8]}
    if extractor:
        policy_kwargs["features_extractor_class"] = _LearnedExtractor
    model = RainbowDQN(
        "MlpPolicy", "CartPole-v1", noisy=noisy, dueling=dueling, v_min=0, v_max=20, n_atoms=11,
        learning_starts=50, seed=0, policy_kwargs=policy_kwargs,
    )  # fmt: skip
    assert model._fused_loss
    data = _batch(model)
    q_net = model.q_net
    q_net.set_noise(noise_on)
    actions = data.actions.long().reshape(-1)
    target = model.distribution_target(data)
    th.testing.assert_close(model.distribution_target(data, q_net.layer_weights()), target)
    sample_weights = th.rand(len(actions))

    def losses_and_gradients(mode: str) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        if mode == "direct":  # stale gradients of every parameter, to be overwritten
            for p in q_net.parameters():
                p.grad = th.full_like(p, 7.0)
        else:
            q_net.zero_grad(set_to_none=True)
        if mode == "autograd":
            logits = q_net.logits(data.observations)[th.arange(len(actions)), actions]
            losses = -(target * th.log_softmax(logits, dim=1)).sum(dim=1)
            loss = (sample_weights * losses).mean()
        else:
            loss, losses = q_net.categorical_loss(
                data.observations, actions, target, sample_weights, write_gradients=mode == "direct"
            )
            assert not losses.requires_grad
        if mode == "direct":
            assert not loss.requires_grad  # the gradients are already there
        else:
            loss.backward()
        gradients = {n: p.grad.clone() for n, p in q_net.named_parameters() if p.grad is not None}
        return loss.detach(), losses.detach(), gradients

    expected_loss, expected_losses, expected = losses_and_gradients("autograd")
    for mode in ("fused", "direct"):
        loss, losses, gradients = losses_and_gradients(mode)
        th.testing.assert_close(loss, expected_loss)
        th.testing.assert_close(losses, expected_losses)
        assert gradients.keys() == expected.keys(), mode
        assert any(name.startswith("features_extractor") for name in gradients) == extractor
        assert any(name.endswith("sigma") for name in gradients) == (noisy and noise_on)
        for name, gradient in expected.items():
            th.testing.assert_close(gradients[name], gradient, atol=1e-6, rtol=1e-5, msg=f"{mode}: {name}")


def test_direct_gradients_and_kept_adam_lists_train_as_autograd_and_optimizer_step_do() -> None:
    """Training with gradients written into ``.grad`` and Adam stepped over kept tensor lists ends
    with the same parameters and optimizer state as autograd plus ``optimizer.step()``, also after
    the optimizer's state was replaced by a load in between (the lists are collected again)."""

    def run(fast: bool) -> RainbowDQN:
        model = RainbowDQN(
            "MlpPolicy", "CartPole-v1", learning_starts=64, batch_size=16, v_min=0, v_max=20, n_atoms=11,
            target_update_interval=50, seed=3, policy_kwargs={"net_arch": [16, 16]},
        )  # fmt: skip
        assert model._direct_gradients
        if not fast:
            model._direct_gradients, model._adam_steps = False, None
        model.learn(150)
        if fast:
            assert model._adam_steps.lists is not None  # the kept lists were in use
            lists = model._adam_steps.lists
        optimizer = model.policy.optimizer
        optimizer.load_state_dict(optimizer.state_dict())  # new state tensors: lists must not go stale
        model.set_random_seed(4)
        model.learn(100, reset_num_timesteps=False)
        if fast:
            assert model._adam_steps.lists is not None and model._adam_steps.lists[0] is not lists[0]
        return model

    fast, plain = run(fast=True), run(fast=False)
    for (name, p), q in zip(fast.policy.named_parameters(), plain.policy.parameters()):
        th.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=name)
    fast_state, plain_state = fast.policy.optimizer.state_dict()["state"], plain.policy.optimizer.state_dict()["state"]
    assert fast_state.keys() == plain_state.keys()
    for key, state in plain_state.items():
        for name, value in state.items():
            th.testing.assert_close(fast_state[key][name], value, atol=1e-6, rtol=1e-5, msg=f"{key} {name}")


def test_gradient_hooks_on_parameters_still_run() -> None:
    """A gradient hook sends training back through autograd: here one zeroes the head's mean
    weights' gradient, so Adam leaves them where they were while everything else trains."""
    model = RainbowDQN(
        "MlpPolicy", "CartPole-v1", learning_starts=32, batch_size=16, v_min=0, v_max=20, n_atoms=11, seed=0,
        policy_kwargs={"net_arch": [16]},
    )  # fmt: skip
    head, trunk = model.q_net.head, model.q_net._linear[0]
    head.weight_mu.register_hook(th.zeros_like)
    before_head, before_trunk = head.weight_mu.detach().clone(), trunk.weight_mu.detach().clone()
    model.learn(80)
    assert model._n_updates > 0
    assert th.equal(head.weight_mu, before_head)
    assert not th.equal(trunk.weight_mu, before_trunk)


def test_fused_loss_refuses_a_backward_after_the_noise_changed() -> None:
    """As autograd does for its own graph: noise drawn in place between forward and backward would
    give gradients of noise the loss never used, so the backward raises."""
    model = RainbowDQN("MlpPolicy", "CartPole-v1", learning_starts=50, seed=0, v_min=0, v_max=20)
    data = _batch(model)
    actions = data.actions.long().reshape(-1)
    target = model.distribution_target(data)
    loss, _ = model.q_net.categorical_loss(data.observations, actions, target, data.weights.reshape(-1))
    model.q_net.reset_noise()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_networks_outside_the_fused_path_keep_autograd() -> None:
    """Dropout or another activation: the plain autograd loss (same results, slower)."""
    for policy_kwargs in ({"dropout": 0.1}, {"activation_fn": th.nn.Tanh}):
        model = RainbowDQN("MlpPolicy", "CartPole-v1", learning_starts=20, seed=0, policy_kwargs=policy_kwargs)
        assert not model._fused_loss
        model.learn(60)
        assert model._n_updates > 0


# ---------------------------------------------------------------------------------------- noisy nets


def test_noisy_layer_resampling_and_mean_mode() -> None:
    th.manual_seed(0)
    layer = NoisyLinear(4, 3)
    x = th.ones(1, 4)
    first = layer(x)
    layer.reset_noise()
    assert not th.allclose(first, layer(x))
    layer.noise_enabled = False
    th.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)


def test_noisy_layer_state_dict_restores_the_noise() -> None:
    """The outer product is cached per draw; loading eps_in / eps_out must refresh it."""
    th.manual_seed(0)
    source, target = NoisyLinear(4, 3), NoisyLinear(4, 3)
    target.load_state_dict(source.state_dict())
    x = th.randn(5, 4)
    th.testing.assert_close(target(x), source(x))
    expected = source.weight_mu + source.weight_sigma * th.outer(source.eps_out, source.eps_in)
    th.testing.assert_close(source(x), x @ expected.T + source.bias_mu + source.bias_sigma * source.eps_out)
    assert "eps_weight" not in source.state_dict()  # derived, not saved


def test_noisy_layer_small_batches_use_the_factorised_product() -> None:
    """Acting on a few observations skips forming the noisy weights: same outputs and gradients."""
    th.manual_seed(0)
    layer = NoisyLinear(6, 5)
    for batch in (1, NoisyLinear.factorised_max_batch):
        x = th.randn(batch, 6)
        layer.zero_grad()
        layer(x).square().sum().backward()
        factorised = [p.grad.clone() for p in layer.parameters()]
        weight, bias = layer.effective_parameters()
        expected = th.nn.functional.linear(x, weight, bias)
        th.testing.assert_close(layer(x), expected)
        layer.zero_grad()
        expected.square().sum().backward()
        for got, want in zip(factorised, (p.grad for p in layer.parameters())):
            th.testing.assert_close(got, want)


def test_network_noise_draws_stay_consistent_after_moves_loads_and_layer_draws() -> None:
    """Network draws write the layers' noise in place; after ``.to()``, a state-dict load or a layer
    drawing its own noise, the next network draw must still reach every layer."""
    model = RainbowDQN("MlpPolicy", "CartPole-v1", seed=0)
    q_net = model.q_net

    def draw_and_check() -> None:
        before = [(layer.eps_in.clone(), layer.eps_out.clone()) for layer in q_net.noisy_layers()]
        q_net.reset_noise()
        for layer, (eps_in, eps_out) in zip(q_net.noisy_layers(), before):
            assert not th.equal(layer.eps_in, eps_in) and not th.equal(layer.eps_out, eps_out)
            th.testing.assert_close(layer.eps_weight, th.outer(layer.eps_out, layer.eps_in))

    draw_and_check()
    q_net.to("cpu", dtype=th.float64).to(th.float32)  # buffers replaced by copies
    draw_and_check()
    q_net.noisy_layers()[1].reset_noise()  # a layer's own draw replaces its buffers
    draw_and_check()
    q_net.load_state_dict(model.q_net_target.state_dict())
    th.testing.assert_close(q_net.head.eps_in, model.q_net_target.head.eps_in)
    draw_and_check()


def test_network_noise_is_redrawn_for_every_layer_and_shared_with_the_next_action() -> None:
    model = RainbowDQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0)
    layers = model.q_net.noisy_layers()
    before = [layer.eps_in.clone() for layer in layers]
    model.q_net.reset_noise()
    assert all(not th.equal(b, layer.eps_in) for b, layer in zip(before, layers))
    # A training batch redraws the noise; the next stochastic action uses that draw, the one after
    # draws again (every action explores with noise no earlier action used).
    model.learn(12)
    assert model.policy.fresh_noise
    drawn = layers[0].eps_in.clone()
    model.predict(np.zeros(4, dtype=np.float32), deterministic=False)
    assert th.equal(layers[0].eps_in, drawn) and not model.policy.fresh_noise
    model.predict(np.zeros(4, dtype=np.float32), deterministic=False)
    assert not th.equal(layers[0].eps_in, drawn)


def test_noise_drives_collection_even_in_eval_mode_and_is_off_when_deterministic() -> None:
    model = RainbowDQN("MlpPolicy", "CartPole-v1", learning_starts=10, seed=0, policy_kwargs={"noisy_sigma0": 5.0})
    model.policy.set_training_mode(False)  # what SB3 does while collecting experience
    obs = np.array([0.01, 0.02, 0.03, 0.04], dtype=np.float32)
    stochastic = {int(model.predict(obs, deterministic=False)[0]) for _ in range(50)}
    assert stochastic == {0, 1}  # exploration through noise (epsilon is 0 with noisy nets)
    assert model.exploration_rate == 0.0
    greedy = {int(model.predict(obs, deterministic=True)[0]) for _ in range(20)}
    assert len(greedy) == 1
    with th.no_grad():
        q = model.q_net(th.as_tensor(obs[None]))
        model.q_net.set_noise(False)
        mean_q = model.q_net(th.as_tensor(obs[None]))
        model.q_net.set_noise(True)
    assert int(mean_q.argmax()) == greedy.pop()
    assert not th.allclose(q, mean_q)


# ---------------------------------------------------------------------------------------- persistence


def test_save_load_buffer_round_trip_and_resume(tmp_path: Path) -> None:
    model = RainbowDQN(
        "MlpPolicy", "CartPole-v1", learning_starts=100, buffer_size=2000, target_update_interval=77, seed=0
    )
    model.learn(400)
    model.save(tmp_path / "rainbow")
    model.save_replay_buffer(tmp_path / "buffer")
    loaded = RainbowDQN.load(tmp_path / "rainbow", env=gym.make("CartPole-v1"))
    assert loaded.target_update_interval == 77 and loaded.n_steps == 3 and loaded.noisy and loaded.categorical
    obs = np.zeros(4, dtype=np.float32)
    assert loaded.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]
    for name, tensor in model.policy.state_dict().items():
        th.testing.assert_close(loaded.policy.state_dict()[name], tensor)
    loaded.load_replay_buffer(tmp_path / "buffer")
    np.testing.assert_array_equal(loaded.replay_buffer.tree.leaves, model.replay_buffer.tree.leaves)
    assert loaded.replay_buffer.tree.total == model.replay_buffer.tree.total
    assert loaded.replay_buffer.max_priority == model.replay_buffer.max_priority
    loaded.learn(200, reset_num_timesteps=False)
    assert loaded.num_timesteps == 600
    assert loaded.target_update_interval == 77  # hyper-parameters never change on load


# ---------------------------------------------------------------------------------------- learning


CARTPOLE = {
    "learning_rate": 1e-3,
    "buffer_size": 50_000,
    "learning_starts": 1000,
    "batch_size": 64,
    "train_freq": 1,
    "target_update_interval": 500,
    "policy_kwargs": {"net_arch": [128, 128]},
}
SOLVED, BUDGET, SEEDS = 475.0, 25_000, (0, 1, 2)


def _steps_to_solve(model) -> int:
    """Env steps until the greedy policy's 10-episode mean return reaches 475 (evaluated every 1,000
    steps on a seeded env); ``BUDGET + 1`` when it never does. Deterministic with one torch thread."""
    evaluation = DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1"))])
    evaluation.seed(123)
    stop = StopTrainingOnRewardThreshold(SOLVED, verbose=0)
    callback = EvalCallback(evaluation, callback_on_new_best=stop, eval_freq=1000, n_eval_episodes=10, verbose=0)
    model.learn(BUDGET, callback=callback)
    return model.num_timesteps if callback.best_mean_reward >= SOLVED else BUDGET + 1


@pytest.mark.slow
def test_full_rainbow_solves_cartpole_within_the_budget() -> None:
    """Every component on, the same shared hyper-parameters as the DQN below: every seed reaches the
    v1 "solved" level (475) within the budget, the median seed well within it (measured: 18k, 15k
    and 14k steps; over seeds 0-7: median 18.5k, one seed not within 25k)."""
    steps = [
        _steps_to_solve(RainbowDQN("MlpPolicy", "CartPole-v1", v_min=0, v_max=100, seed=s, **CARTPOLE)) for s in SEEDS
    ]
    assert max(steps) <= BUDGET and np.median(steps) <= 20_000, steps


@pytest.mark.slow
def test_plain_dqn_needs_clearly_more_than_rainbow() -> None:
    """SB3's DQN with the same network and shared hyper-parameters: most seeds do not reach 475 within
    the budget Rainbow solves in (measured: 50k+, 14k and 48k steps to solve)."""
    steps = [
        _steps_to_solve(DQN("MlpPolicy", "CartPole-v1", exploration_fraction=0.2, seed=s, **CARTPOLE)) for s in SEEDS
    ]
    assert np.median(steps) > BUDGET, steps


@pytest.mark.slow
def test_d3qn_per_earns_after_costs_on_planted_sessions() -> None:
    env = gym.make("CryptoFuturesSession-v0")
    model = D3QN(
        "MlpPolicy",
        env,
        learning_starts=500,
        learning_rate=5e-4,
        target_update_interval=500,
        exploration_fraction=0.3,
        seed=0,
    )
    assert model.prioritized and model.dueling and model.double and not model.noisy and not model.categorical
    model.learn(20_000)
    pnl = evaluate_sessions(model)
    assert np.mean(pnl) > 0.0


def test_networks_saved_with_separate_value_and_advantage_layers_still_load() -> None:
    """sb3_crypto 0.1 saved the dueling streams as two layers; they load into the single head."""
    for noisy in (False, True):
        model = RainbowDQN("MlpPolicy", "CartPole-v1", noisy=noisy, seed=0)
        net, n_atoms = model.q_net, model.q_net.n_atoms
        old_layout = {}
        for key, value in net.state_dict().items():
            if not key.startswith("head."):
                old_layout[key] = value
            elif key == "head.eps_in":
                old_layout["value.eps_in"] = old_layout["advantage.eps_in"] = value.clone()
            else:
                name = key.removeprefix("head.")
                old_layout[f"value.{name}"], old_layout[f"advantage.{name}"] = value[:n_atoms], value[n_atoms:]
        other = RainbowDQN("MlpPolicy", "CartPole-v1", noisy=noisy, seed=1)
        other.q_net.load_state_dict(old_layout)
        x = th.randn(5, 4)
        with th.no_grad():
            th.testing.assert_close(other.q_net(x), net(x))


# ---------------------------------------------------------------------------------------- smart loading


def test_smart_loading_names_every_mismatch_and_copies_what_fits(tmp_path: Path) -> None:
    from sb3_crypto.common.transfer import load_weights

    source = RainbowDQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [64, 32]}, seed=0)
    source.save(tmp_path / "source")
    same = RainbowDQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [64, 32]}, seed=1)
    report = load_weights(same, tmp_path / "source")
    assert report.complete
    th.testing.assert_close(
        same.policy.state_dict()["q_net.head.weight_mu"], source.policy.state_dict()["q_net.head.weight_mu"]
    )
    bigger = RainbowDQN("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [64, 48]}, seed=1)
    with pytest.raises(ValueError) as error:
        load_weights(bigger, tmp_path / "source")
    message = str(error.value)
    for layer in ("q_net.trunk.2.weight_mu", "q_net.head.weight_mu"):
        assert layer in message  # every mismatched layer is named, with both shapes
    assert "saved (32, 64) vs model (48, 64)" in message
    before = bigger.policy.state_dict()["q_net.head.weight_mu"].clone()
    report = load_weights(bigger, source, partial=True)
    assert "q_net.trunk.0.weight_mu" in report.copied
    assert any(name == "q_net.head.weight_mu" for name, *_ in report.mismatched)
    th.testing.assert_close(
        bigger.policy.state_dict()["q_net.trunk.0.weight_mu"], source.policy.state_dict()["q_net.trunk.0.weight_mu"]
    )
    th.testing.assert_close(bigger.policy.state_dict()["q_net.head.weight_mu"], before)  # left as it was
