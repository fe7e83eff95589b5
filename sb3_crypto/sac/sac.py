"""Fast SAC: SB3's ``SAC`` (same algorithm, same hyper-parameters, same saved files) with a training
step that builds no autograd graph.

``FastSAC`` subclasses SB3's ``SAC`` and overrides ``train``. For the policies it knows (flat
``Box`` observations, ReLU MLP actor and critics, the squashed Gaussian or gSDE head; this is SB3's
``MlpPolicy``) one gradient step is:

1. one batch gathered into kept tensors from the packed replay buffer (:class:`PackedReplayBuffer`,
   the same indices SB3 would draw);
2. one actor pass over observations and next observations together, with the same random draws as
   SB3 (``rsample`` noise, or gSDE's exploration matrices);
3. the entropy coefficient's gradient written directly; the TD target from the target critics (all
   critics as one batched network, :class:`CriticStack`);
4. the critics' forward and hand-written backward into kept ``.grad`` tensors, then their Adam step;
5. the actor loss through the updated critics, backward to the action only (SB3's autograd also
   computes critic weight gradients here that ``zero_grad`` later discards), then by hand through
   the actor's head and trunk; the actor's and entropy coefficient's Adam steps;
6. the target update as two ``torch._foreach`` operations over the stacked tensors.

Adam runs through the fused kernel over tensor lists kept between steps
(:class:`~sb3_crypto.common.optim._AdamSteps`, as in Rainbow). Losses for the logger are kept on
the device and read once per ``train`` call.

A policy with other networks can give them as tensors with hand-written backward passes: a
``fast_networks()`` method returning an object with ``actor`` (``forward(obs, noise)`` ->
``(actions, log_probs, cache)``, ``backward(cache, rows, grad_actions, grad_log_prob)``),
``critic`` and ``target`` (``forward(obs, actions)`` -> ``(q (batch, n_critics), cache)``;
``backward(grad_q, cache)`` and ``action_gradient(grad_q, cache)`` on the critic), ``polyak(tau)``,
``valid(policy)`` and ``bind_gradients()``. :meth:`FastSAC._network_step` runs the same SAC step
through them (``sb3_crypto.policies.AssetwiseSACPolicy`` does this for the per-asset portfolio
networks; ``ValueError`` from ``fast_networks()`` means they do not apply). Anything else (another
features extractor, ``use_expln``, gradient hooks on a parameter, dict observations) runs SB3's
``train``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import MaybeCallback, RolloutReturn, TrainFreq
from stable_baselines3.common.vec_env import VecEnv

from sb3_crypto.common.optim import _AdamSteps
from sb3_crypto.sac.buffers import PackedReplayBuffer
from sb3_crypto.sac.matmul import Matmul
from sb3_crypto.sac.networks import (
    ActorWeights,
    CriticStack,
    gsde,
    gsde_backward,
    gsde_fused,
    gsde_fused_backward,
    polyak,
    squashed_gaussian,
    squashed_gaussian_backward,
    squashed_gaussian_fused,
    squashed_gaussian_fused_backward,
)
from sb3_crypto.sac.policies import FastSACPolicy


class _StepState:
    """What every fast training step keeps between steps: the Adam lists, the entropy coefficient's
    kept gradient, the sizes of a batch row."""

    def __init__(self, model: FastSAC) -> None:
        self.obs_dim = int(np.prod(model.observation_space.shape))
        self.action_dim = int(np.prod(model.action_space.shape))
        self.device = model.device
        self.adam: dict[str, _AdamSteps] = {}
        self.exploration: tuple[th.Tensor, th.Tensor, th.Tensor] | None = None
        self.ent_grad: th.Tensor | None = None
        log_ent_coef = model.log_ent_coef
        if model.ent_coef_optimizer is not None and log_ent_coef is not None:
            with th.no_grad():
                if log_ent_coef.grad is None:
                    log_ent_coef.grad = th.zeros_like(log_ent_coef)
            self.ent_grad = log_ent_coef.grad

    def optimizer_step(self, name: str, optimizer: th.optim.Optimizer, check: bool) -> None:
        """``optimizer.step()``, through kept tensor lists when it is a plain fused Adam (their
        validity checked when ``check``: the first step of each ``train`` call)."""
        steps = self.adam.get(name)
        if steps is None or steps.optimizer is not optimizer:
            steps = self.adam[name] = _AdamSteps(optimizer)
            check = True
        steps.step(check=check)

    def bind_gradients(self, model: FastSAC) -> None:
        """Point the parameters' ``.grad`` at the kept tensors again (``zero_grad()`` drops them)."""
        if (
            self.ent_grad is not None
            and model.log_ent_coef is not None
            and model.log_ent_coef.grad is not self.ent_grad
        ):
            model.log_ent_coef.grad = self.ent_grad


class _NetworkState(_StepState):
    """The fast step's state for a policy that gives its networks as tensors (``fast_networks()``,
    e.g. the per-asset portfolio policy)."""

    def __init__(self, model: FastSAC) -> None:
        self.nets = model.policy.fast_networks()  # type: ignore[attr-defined]
        super().__init__(model)

    def valid(self, model: FastSAC) -> bool:
        return model.device == self.device and self.nets.valid(model.policy)

    def bind_gradients(self, model: FastSAC) -> None:
        self.nets.bind_gradients()
        super().bind_gradients(model)


class _FastState(_StepState):
    """What the fast training step keeps between steps, built from the policy once and rebuilt when
    anything it holds changed (modules replaced, parameters moved, optimizers replaced)."""

    def __init__(self, model: FastSAC) -> None:
        super().__init__(model)
        policy = model.policy
        self.policy = policy
        self.actor_module = policy.actor
        self.critic_module = policy.critic
        self.target_module = policy.critic_target
        cpu = model.device.type == "cpu"
        options = model.fast_options
        self.matmul = Matmul(onednn=cpu and options.get("onednn", True))
        batched = options.get("batched", not cpu)
        #: compiled action heads (CPU float32 tensors)
        self.fused_heads = cpu and options.get("fused_heads", True)
        self.actor = ActorWeights(policy.actor, self.matmul)
        self.critic = CriticStack(policy.critic, gradients=True, matmul=self.matmul, batched=batched)
        self.target = CriticStack(policy.critic_target, gradients=False, matmul=self.matmul, batched=batched)

    def valid(self, model: FastSAC) -> bool:
        policy = model.policy
        return (
            policy is self.policy
            and policy.actor is self.actor_module
            and policy.critic is self.critic_module
            and policy.critic_target is self.target_module
            and model.device == self.device
            and self.critic.tied()
            and self.target.tied()
        )

    def bind_gradients(self, model: FastSAC) -> None:
        self.critic.bind_gradients()
        self.actor.bind_gradients()
        super().bind_gradients(model)


class FastSAC(SAC):
    """SB3's SAC with a faster training step (see the module doc); same parameters as ``SAC``.

    :param fast: use the fast training step where it applies (``False``: SB3's ``train``, e.g. to
        compare).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": FastSACPolicy}
    policy: FastSACPolicy

    #: Switches of the fast step's parts, for tests and the benchmark: ``onednn`` (CPU products
    #: through oneDNN), ``batched`` (critics as batched products; default: off the CPU),
    #: ``fused_heads`` (compiled action heads on the CPU).
    fast_options: ClassVar[dict[str, Any]] = {}

    def __init__(
        self, policy: str | type[FastSACPolicy], env: Any, *args: Any, fast: bool = True, **kwargs: Any
    ) -> None:
        self.fast = fast
        super().__init__(policy, env, *args, **kwargs)

    def _setup_model(self) -> None:
        if self.replay_buffer_class is None and isinstance(self.observation_space, spaces.Box) and self.n_steps == 1:
            self.replay_buffer_class = PackedReplayBuffer
        super()._setup_model()
        if self._networks_policy() and "fused" not in (self.policy.optimizer_kwargs or {}):
            # A policy of its own (not FastSACPolicy, which defaults to it): the fused Adam kernel
            # for its default Adam too (the same update; `optimizer_kwargs=dict(fused=False)` keeps
            # the loop).
            for module in (self.policy.actor, self.policy.critic):
                module.optimizer = self._fused(module.optimizer)
        if self.ent_coef_optimizer is not None and self._fused_adam(self.policy.actor.optimizer):
            # SB3's entropy-coefficient Adam (default options), as the fused kernel like the others.
            self.ent_coef_optimizer = th.optim.Adam([self.log_ent_coef], lr=self.lr_schedule(1), fused=True)
        self._fast_state: _StepState | None = None
        self._pending_stats: tuple[th.Tensor, Any] | None = None

    @staticmethod
    def _fused(optimizer: th.optim.Optimizer) -> th.optim.Optimizer:
        """A plain ``Adam`` (one group, no state yet) as the fused kernel with the same options."""
        if type(optimizer) is not th.optim.Adam or len(optimizer.param_groups) != 1 or optimizer.state:
            return optimizer
        group = optimizer.param_groups[0]
        if group.get("fused") or group.get("foreach") or group.get("differentiable") or group.get("capturable"):
            return optimizer
        options = {k: group[k] for k in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize")}
        return th.optim.Adam(group["params"], fused=True, **options)

    @staticmethod
    def _fused_adam(optimizer: th.optim.Optimizer) -> bool:
        return type(optimizer) is th.optim.Adam and bool(optimizer.param_groups[0].get("fused"))

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_fast_state", "fast_options", "_pending_stats"]

    # ------------------------------------------------------------------ when the fast step applies
    def _fast_supported(self) -> bool:
        if not self.fast or not isinstance(self.observation_space, spaces.Box):
            return False
        if is_image_space(self.observation_space, check_channels=False, normalized_image=False) and (
            self.policy.normalize_images
        ):
            return False
        policy = self.policy
        extractors = (policy.actor.features_extractor, policy.critic.features_extractor)
        if not self._networks_policy() and any(type(e) is not FlattenExtractor for e in extractors):
            return False
        if self.batch_norm_stats:
            return False
        # Gradient hooks on a parameter run only through autograd.
        for param in policy.parameters():
            if getattr(param, "_backward_hooks", None) or getattr(param, "_post_accumulate_grad_hooks", None):
                return False
        return True

    def _fast(self) -> _StepState | None:
        state = self._fast_state
        if state is not None and state.valid(self):
            state.bind_gradients(self)
            return state
        self._fast_state = None
        if not self._fast_supported():
            return None
        try:
            if self._networks_policy():
                self._fast_state = _NetworkState(self)
            else:
                self._fast_state = _FastState(self)
        except ValueError:
            return None
        return self._fast_state

    def _networks_policy(self) -> bool:
        """Whether the policy gives its own networks as tensors (``fast_networks()``)."""
        return callable(getattr(self.policy, "fast_networks", None))

    # ------------------------------------------------------------------ acting
    def collect_rollouts(
        self,
        env: VecEnv,
        callback: Any,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: Any = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        actor = self.policy.actor
        actor.__dict__["acting_noise"] = True  # exploration matrices drawn here only act (no graph)
        try:
            return super().collect_rollouts(
                env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval
            )
        finally:
            actor.__dict__["acting_noise"] = False

    # ------------------------------------------------------------------ training
    def _batch(self, batch_size: int) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor | float]:
        """``(packed, rewards, dones, discounts)``: ``packed[0]`` rows ``[obs | action]``, ``packed[1]``
        rows ``[next_obs | spare]`` (see :meth:`PackedReplayBuffer.sample_packed`)."""
        buffer = self.replay_buffer
        if isinstance(buffer, PackedReplayBuffer) and buffer.packable and self._vec_normalize_env is None:
            packed, rewards, dones = buffer.sample_packed(batch_size)
            return packed, rewards, dones, self.gamma
        data = buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
        obs = data.observations.float().flatten(1)
        packed = obs.new_empty((2, obs.shape[0], obs.shape[1] + data.actions.shape[1]))
        packed[0, :, : obs.shape[1]] = obs
        packed[0, :, obs.shape[1] :] = data.actions
        packed[1, :, : obs.shape[1]] = data.next_observations.float().flatten(1)
        discounts = data.discounts if data.discounts is not None else self.gamma
        return packed, data.rewards, data.dones, discounts

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        state = self._fast()
        if state is None:
            super().train(gradient_steps, batch_size)
            return
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)
        stats = th.empty((gradient_steps, 4), device=self.device)
        step = self._network_step if isinstance(state, _NetworkState) else self._fast_step
        with th.no_grad():
            for gradient_step in range(gradient_steps):
                step(
                    state,  # type: ignore[arg-type]
                    batch_size,
                    stats[gradient_step],
                    gradient_step % self.target_update_interval == 0,
                    first=gradient_step == 0,
                )
            if state.exploration is not None:
                # The matrices the last step drew (with the std before its update), as SB3's
                # reset_noise leaves them; they act until the next rollout draws new ones.
                matrix, exploration_batch, std = state.exploration
                dist = self.actor.action_dist
                dist.exploration_mat = matrix  # type: ignore[union-attr]
                dist.exploration_matrices = exploration_batch * std  # type: ignore[union-attr]
                state.exploration = None
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self._log_stats(stats.mean(dim=0))

    def _log_stats(self, means: th.Tensor) -> None:
        """Record the step losses. On the CPU at once; on a GPU the means are copied to pinned host
        memory without waiting, and the previous ``train`` call's are recorded (one call late, so
        training never waits for the device to report its losses)."""
        if means.device.type == "cuda":
            pending, self._pending_stats = self._pending_stats, None
            host = th.empty(4, pin_memory=True)
            host.copy_(means, non_blocking=True)
            event = th.cuda.Event()
            event.record()
            self._pending_stats = (host, event)
            if pending is None:
                return
            event_done = pending[1]
            event_done.synchronize()  # long finished: recorded one train call ago
            means = pending[0]
        critic_loss, actor_loss, ent_coef, ent_coef_loss = means.tolist()
        self.logger.record("train/ent_coef", ent_coef)
        self.logger.record("train/actor_loss", actor_loss)
        self.logger.record("train/critic_loss", critic_loss)
        if self.ent_coef_optimizer is not None:
            self.logger.record("train/ent_coef_loss", ent_coef_loss)

    def _fast_step(
        self, state: _FastState, batch_size: int, stats: th.Tensor, update_target: bool, first: bool = True
    ) -> None:
        """One SAC gradient step (SB3's ``train`` loop body) without autograd."""
        actor, critic = state.actor, state.critic
        obs_dim, action_dim = state.obs_dim, state.action_dim
        packed, rewards, dones, discounts = self._batch(batch_size)
        rows = packed.shape[1]
        # SB3 draws gSDE's matrices (reset_noise) before the actor pass, the rsample noise in it.
        if actor.use_sde:
            log_std = actor.log_std
            exploration = th.empty(log_std.shape[0], action_dim, device=log_std.device).normal_()
            exploration_batch = th.empty(1, log_std.shape[0], action_dim, device=log_std.device).normal_()
        else:
            noise = th.empty(2, rows, action_dim, device=packed.device)
            noise[0].normal_()
            noise[1].normal_()
        # Actor on observations and next observations at once.
        # (contiguous: the actor's first weight gradient takes it as a dense oneDNN operand)
        observations = packed.view(2 * rows, -1)[:, :obs_dim].contiguous()
        trunk = actor.trunk_forward(observations)
        latent = trunk[-1]
        fused = state.fused_heads
        if actor.use_sde:
            actions, log_probs, head = (gsde_fused if fused else gsde)(actor, latent, exploration)
        else:
            noise_rows = noise.view(2 * rows, action_dim)
            actions, log_probs, head = (squashed_gaussian_fused if fused else squashed_gaussian)(
                actor, latent, noise_rows
            )
        actions_pi, next_actions = actions[:rows], actions[rows:]
        log_prob, next_log_prob = log_probs[:rows].view(-1, 1), log_probs[rows:].view(-1, 1)

        ent_coef, ent_coef_loss = self._entropy_gradient(state, log_prob)

        # TD target from the target critics.
        packed[1, :, obs_dim:] = next_actions
        next_q, _ = state.target.forward(packed[1])
        target_q = self._td_target(next_q, ent_coef, next_log_prob, rewards, dones, discounts)

        # Critics: 0.5 * sum of MSE; d/dQ_i = (Q_i - target) / batch.
        current_q, hidden = critic.forward(packed[0], dense=True)
        error = current_q - target_q
        critic_loss = 0.5 * error.square().mean(dim=0).sum()
        critic.backward(error * (1.0 / rows), hidden, packed[0])
        state.optimizer_step("critic", self.critic.optimizer, first)

        # Actor: mean(ent_coef * log_prob - min_i Q_i(s, pi(s))) through the updated critics.
        packed[0, :, obs_dim:] = actions_pi
        q_pi, hidden_pi = critic.forward(packed[0])
        min_q_pi, chosen = q_pi.min(dim=1, keepdim=True)
        actor_loss = (ent_coef * log_prob - min_q_pi).mean()
        grad_q = th.zeros_like(q_pi).scatter_(1, chosen, -1.0 / rows)
        grad_actions = critic.input_gradient(grad_q, hidden_pi, obs_dim)
        grad_log_prob = ent_coef * (1.0 / rows)
        if fused:
            gl, mask = float(grad_log_prob), bool(actor.trunk)  # (a CPU value: no device sync)
            backward = gsde_fused_backward if actor.use_sde else squashed_gaussian_fused_backward
            grad_latent = backward(actor, head.first(rows), grad_actions, gl, mask)
        elif actor.use_sde:
            grad_latent = gsde_backward(actor, head.first(rows), grad_actions, grad_log_prob)
        else:
            grad_latent = squashed_gaussian_backward(actor, head.first(rows), grad_actions, grad_log_prob)
        actor.trunk_backward(grad_latent, trunk, rows, masked=fused)
        state.optimizer_step("actor", self.actor.optimizer, first)
        if state.ent_grad is not None:
            state.optimizer_step("ent_coef", self.ent_coef_optimizer, first)  # type: ignore[arg-type]

        if update_target:
            polyak(state.target, critic, self.tau)
        if actor.use_sde:
            _, std, matrix, _ = head.shared
            state.exploration = (matrix, exploration_batch, std)
        stats.copy_(th.stack((critic_loss, actor_loss, ent_coef.reshape(()), ent_coef_loss.reshape(()))))

    def _entropy_gradient(self, state: _StepState, log_prob: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``(ent_coef, ent_coef_loss)``; with a learned coefficient, its loss's gradient
        ``-mean(log_prob + target_entropy)`` written into the kept ``.grad``."""
        if state.ent_grad is not None:
            log_ent_coef = self.log_ent_coef
            ent_coef = th.exp(log_ent_coef)
            shifted = log_prob + self.target_entropy
            th.mean(shifted, dim=0, out=state.ent_grad).neg_()
            return ent_coef, -(log_ent_coef * shifted).mean()
        ent_coef = self.ent_coef_tensor
        return ent_coef, ent_coef.new_zeros(())

    @staticmethod
    def _td_target(
        next_q: th.Tensor,
        ent_coef: th.Tensor,
        next_log_prob: th.Tensor,
        rewards: th.Tensor,
        dones: th.Tensor,
        discounts: th.Tensor | float,
    ) -> th.Tensor:
        """SB3's target: ``r + (1 - done) * gamma * (min_i Q'_i(s', a') - ent_coef * log_prob(a'))``."""
        next_q = next_q.amin(dim=1, keepdim=True) - ent_coef * next_log_prob
        return rewards + (1 - dones) * discounts * next_q

    def _network_step(
        self, state: _NetworkState, batch_size: int, stats: th.Tensor, update_target: bool, first: bool = True
    ) -> None:
        """One SAC gradient step for a policy that gives its networks as tensors (the per-asset
        portfolio policy): the same algorithm as :meth:`_fast_step`, through ``fast_networks()``'s
        forward and backward passes."""
        nets = state.nets
        obs_dim, action_dim = state.obs_dim, state.action_dim
        packed, rewards, dones, discounts = self._batch(batch_size)
        rows = packed.shape[1]
        noise = th.empty(2, rows, action_dim, device=packed.device)
        noise[0].normal_()  # SB3's rsample draws: observations', then next observations'
        noise[1].normal_()
        observations = packed.view(2 * rows, -1)[:, :obs_dim]
        actions, log_probs, actor_cache = nets.actor.forward(observations, noise.view(2 * rows, action_dim))
        actions_pi, next_actions = actions[:rows], actions[rows:]
        log_prob, next_log_prob = log_probs[:rows].view(-1, 1), log_probs[rows:].view(-1, 1)
        ent_coef, ent_coef_loss = self._entropy_gradient(state, log_prob)

        next_q, _ = nets.target.forward(observations[rows:], next_actions)
        target_q = self._td_target(next_q, ent_coef, next_log_prob, rewards, dones, discounts)

        current_q, cache = nets.critic.forward(observations[:rows], packed[0, :, obs_dim:])
        error = current_q - target_q
        critic_loss = 0.5 * error.square().mean(dim=0).sum()
        nets.critic.backward(error * (1.0 / rows), cache)
        state.optimizer_step("critic", self.critic.optimizer, first)

        q_pi, cache_pi = nets.critic.forward(observations[:rows], actions_pi)
        min_q_pi, chosen = q_pi.min(dim=1, keepdim=True)
        actor_loss = (ent_coef * log_prob - min_q_pi).mean()
        grad_q = th.zeros_like(q_pi).scatter_(1, chosen, -1.0 / rows)
        grad_actions = nets.critic.action_gradient(grad_q, cache_pi)
        nets.actor.backward(actor_cache, rows, grad_actions, ent_coef * (1.0 / rows))
        state.optimizer_step("actor", self.actor.optimizer, first)
        if state.ent_grad is not None:
            state.optimizer_step("ent_coef", self.ent_coef_optimizer, first)  # type: ignore[arg-type]
        if update_target:
            nets.polyak(self.tau)
        stats.copy_(th.stack((critic_loss, actor_loss, ent_coef.reshape(()), ent_coef_loss.reshape(()))))

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "FastSAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> FastSAC:
        """Train for ``total_timesteps`` environment steps (see SB3's ``learn``)."""
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
