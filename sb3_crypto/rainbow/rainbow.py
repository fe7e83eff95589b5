"""Rainbow-family DQN for Stable-Baselines3, every component switchable.

``RainbowDQN(double=True, dueling=True, noisy=True, categorical=True, prioritized=True, n_steps=3)``
is full Rainbow (Hessel et al., 2018); ``D3QN`` (``noisy=False, categorical=False, n_steps=1``) is
reference system S3's dueling double DQN with prioritized replay; all switches off is plain DQN.

Built on SB3's ``DQN`` (exploration schedule, target updates, saving) with the narrow hooks
overridden: ``_setup_model`` (prioritized n-step buffer, network switches) and ``train`` (double /
categorical targets, importance weights, priority updates).

**C51 support.** ``v_min`` / ``v_max`` bound the *discounted return* the critic can represent, in
reward units (after ``reward_scale`` and any ``VecNormalize``). For trading rewards centre the
support on 0 and make it symmetric: losses are as informative as gains. S1's original used
``[0, 20]``, which clips every negative return to 0 and hides losses from the agent. A rule of
thumb: ``v_max = -v_min ~ 3 * typical |reward| / (1 - gamma)``, or normalise rewards and keep
``[-10, 10]``.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from torch.nn import functional as F

from sb3_crypto.common.buffers import PrioritizedReplayBuffer, PrioritizedReplayBufferSamples
from sb3_crypto.rainbow.layers import LayerWeights, resample_noise
from sb3_crypto.rainbow.optim import _AdamSteps
from sb3_crypto.rainbow.policies import RainbowPolicy


def project_distribution(
    next_probs: th.Tensor,
    rewards: th.Tensor,
    dones: th.Tensor,
    discounts: th.Tensor,
    support: th.Tensor,
    bounds: tuple[float, float] | None = None,
) -> th.Tensor:
    """C51 projection of ``r + discount * (1 - done) * z`` onto the fixed support.

    :param next_probs: ``(batch, n_atoms)`` target probabilities of the chosen next action.
    :param rewards, dones, discounts: ``(batch, 1)`` n-step returns, terminal flags, ``gamma ** n``.
    :param support: ``(n_atoms,)`` atom values ``z``.
    :param bounds: ``(support[0], support[-1])`` as numbers if known (saves reading them back).
    :return: ``(batch, n_atoms)`` projected probabilities (each row sums to 1).
    """
    n_atoms = support.shape[0]
    v_min, v_max = bounds if bounds is not None else (float(support[0]), float(support[-1]))
    delta = (v_max - v_min) / (n_atoms - 1)
    shifted = th.addcmul(rewards, (1.0 - dones) * discounts, support[None, :]).clamp_(v_min, v_max)
    position = shifted.sub_(v_min).div_(delta)  # fractional atom index in [0, n_atoms - 1]
    lower = position.floor()
    upper_share = position.sub_(lower)  # an exact hit gives the atom all the mass (share 0 to the next)
    lower_index = lower.long()
    upper_index = (lower_index + 1).clamp_(max=n_atoms - 1)
    upper_mass = next_probs * upper_share
    projected = th.zeros_like(next_probs)
    projected.scatter_add_(1, lower_index, next_probs - upper_mass)
    projected.scatter_add_(1, upper_index, upper_mass)
    return projected


class RainbowDQN(DQN):
    """DQN with double Q-learning, dueling heads, noisy nets, C51, prioritized replay and n-step returns.

    :param double: choose the next action with the online network, value it with the target network.
    :param dueling: value and advantage heads.
    :param noisy: factorised noisy layers for exploration; epsilon-greedy is then off
        (``exploration_*`` are forced to 0).
    :param categorical: C51 return distributions on ``n_atoms`` atoms over ``[v_min, v_max]``.
    :param prioritized: prioritized replay with exponent ``alpha``; importance-sampling exponent
        annealed linearly from ``beta0`` to 1 over training; priorities are ``|TD error|`` (or the
        distributional loss when categorical) plus ``priority_eps``.
    :param n_steps: n-step returns, computed inside the replay buffer.
    :param use_amp: mixed precision (and pinned, non-blocking host-to-device copies); ``"auto"``
        turns it on when the device is CUDA, it never applies on CPU.
    The other parameters are SB3 ``DQN``'s; ``net_arch``, ``dropout``, ``noisy_sigma0`` and the
    features extractor go in ``policy_kwargs``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": RainbowPolicy}
    policy: RainbowPolicy
    replay_buffer: PrioritizedReplayBuffer

    def __init__(
        self,
        policy: str | type[RainbowPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 1000,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        replay_buffer_class: type[PrioritizedReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        target_update_interval: int = 1000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.05,
        max_grad_norm: float = 10.0,
        double: bool = True,
        dueling: bool = True,
        noisy: bool = True,
        categorical: bool = True,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        prioritized: bool = True,
        alpha: float = 0.5,
        beta0: float = 0.4,
        priority_eps: float = 1e-6,
        n_steps: int = 3,
        use_amp: bool | str = "auto",
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if noisy:
            exploration_initial_eps = exploration_final_eps = 0.0
        if not 0.0 <= beta0 <= 1.0:
            raise ValueError(f"beta0 must be in [0, 1], got {beta0}")
        if categorical and n_atoms < 2:
            raise ValueError(f"categorical needs n_atoms >= 2, got {n_atoms}")
        self.double = double
        self.dueling = dueling
        self.noisy = noisy
        self.categorical = categorical
        self.n_atoms = n_atoms
        self.v_min = v_min
        self.v_max = v_max
        self.prioritized = prioritized
        self.alpha = alpha
        self.beta0 = beta0
        self.priority_eps = priority_eps
        self.use_amp = use_amp
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            n_steps=n_steps,
            target_update_interval=target_update_interval,
            exploration_fraction=exploration_fraction,
            exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps,
            max_grad_norm=max_grad_norm,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        # (SB3's DQN already rejects non-Discrete action spaces when an env is given.)
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ setup
    def _setup_model(self) -> None:
        if self.replay_buffer_class is None:
            self.replay_buffer_class = PrioritizedReplayBuffer
        if not issubclass(self.replay_buffer_class, PrioritizedReplayBuffer):
            raise ValueError("RainbowDQN needs a PrioritizedReplayBuffer (or subclass) as replay_buffer_class")
        self.replay_buffer_kwargs = {
            "alpha": self.alpha,
            "beta": self.beta0,
            "epsilon": self.priority_eps,
            "n_steps": self.n_steps,
            "gamma": self.gamma,
            "prioritized": self.prioritized,
            "seed": self.seed,
            **self.replay_buffer_kwargs,
        }
        self.policy_kwargs = {
            **self.policy_kwargs,
            "dueling": self.dueling,
            "noisy": self.noisy,
            "n_atoms": self.n_atoms if self.categorical else 1,
            "v_min": self.v_min,
            "v_max": self.v_max,
        }
        n_steps, self.n_steps = self.n_steps, 1  # the prioritized buffer does n-step; SB3's own stays off
        try:
            super()._setup_model()
        finally:
            self.n_steps = n_steps
        cuda = self.device.type == "cuda"
        self._amp = cuda if self.use_amp == "auto" else bool(self.use_amp) and cuda
        if self.use_amp is True and not cuda:
            warnings.warn("use_amp=True has no effect on CPU: mixed precision needs CUDA", stacklevel=2)
        self._scaler = th.amp.GradScaler("cuda") if self._amp else None
        # The hand-written C51 backward: ReLU trunks without dropout, outside mixed precision.
        self._fused_loss = self.q_net.supports_fused_loss and self.q_net_target.supports_fused_loss and not self._amp
        # ... whose gradients go straight into the parameters, without an autograd graph (measured:
        # the graph's bookkeeping, zero_grad and fresh gradient tensors were ~10 % of a step).
        self._direct_gradients = self._fused_loss
        # Its gradient tensors persist, so the optimizer's tensor lists can too (see _AdamSteps).
        self._adam_steps: _AdamSteps | None = None
        if cuda:
            th.backends.cudnn.benchmark = True

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_scaler", "_adam_steps"]

    # ------------------------------------------------------------------ training
    def _current_beta(self) -> float:
        """Importance-sampling exponent: ``beta0`` at the start, 1 at the end of training."""
        return self.beta0 + (1.0 - self.beta0) * (1.0 - self._current_progress_remaining)

    def td_target(self, data: PrioritizedReplayBufferSamples) -> th.Tensor:
        """``(batch, 1)`` n-step TD targets; with ``double`` the online net picks the next action and
        the target net values it, otherwise the target net does both."""
        with th.no_grad():
            next_q_target = self.q_net_target(data.next_observations)
            selector = self.q_net(data.next_observations) if self.double else next_q_target
            best = next_q_target.gather(1, selector.argmax(dim=1, keepdim=True))
            return data.rewards + (1.0 - data.dones) * data.discounts * best

    def distribution_target(
        self, data: PrioritizedReplayBufferSamples, online_weights: LayerWeights | None = None
    ) -> th.Tensor:
        """``(batch, n_atoms)`` C51 targets: the next action's target distribution (chosen as in
        :meth:`td_target`), shifted by the n-step return and projected onto the support.

        :param online_weights: the online network's :meth:`~RainbowQNetwork.layer_weights` for the
            current noise, to run both networks as plain matrix products (fused path).
        """
        with th.no_grad():
            fused = online_weights is not None
            target_weights = self.q_net_target.layer_weights() if fused else None
            next_probs = F.softmax(self.q_net_target.logits(data.next_observations, target_weights), dim=2)
            if self.double:
                next_q = self.q_net.q_values(data.next_observations, online_weights)
            else:
                next_q = (next_probs * self.q_net_target.support).sum(dim=2)
            index = next_q.argmax(dim=1)[:, None, None].expand(-1, 1, next_probs.shape[2])
            chosen = next_probs.gather(1, index).squeeze(1)
            bounds = (self.q_net.v_min, self.q_net.v_max)
            return project_distribution(chosen, data.rewards, data.dones, data.discounts, self.q_net.support, bounds)

    def _loss(self, data: PrioritizedReplayBufferSamples, write_gradients: bool = False) -> tuple[th.Tensor, th.Tensor]:
        """The importance-weighted mean loss (Smooth-L1, or cross-entropy to the projected
        distribution) and each sample's new priority.

        :param write_gradients: (fused C51 loss only) the gradients are written into the online
            parameters' ``.grad`` now, with no autograd graph (see ``categorical_loss``).
        """
        # (Measured: the double-DQN selector's own no-grad pass over the next observations is cheaper
        # than one online pass over observations and next observations together, whose backward
        # covers both halves.)
        actions = data.actions.long().reshape(-1)
        sample_weights = data.weights.reshape(-1)
        if self.categorical and self._fused_loss:
            # The online weights (with this batch's noise) are formed once for the selector and the
            # training pass; the loss's backward is hand-written (FusedCategoricalLoss).
            weights = self.q_net.layer_weights()
            target = self.distribution_target(data, weights)
            return self.q_net.categorical_loss(
                data.observations, actions, target, sample_weights, weights, write_gradients=write_gradients
            )
        if self.categorical:
            logits = self.q_net.logits(data.observations)
            target = self.distribution_target(data)
            index = actions[:, None, None].expand(-1, 1, logits.shape[2])
            log_probs = F.log_softmax(logits.gather(1, index).squeeze(1), dim=1)
            losses = -(target * log_probs).sum(dim=1)
            return (sample_weights * losses).mean(), losses.detach()
        target = self.td_target(data)
        current = self.q_net(data.observations).gather(1, actions[:, None])
        losses = F.smooth_l1_loss(current, target, reduction="none").reshape(-1)
        return (sample_weights * losses).mean(), (current - target).detach().abs().reshape(-1)

    def _trained_parameters(self) -> list[th.Tensor]:
        """The optimizer's parameters (the online network's): what gradient clipping needs, without
        walking the module tree of both networks every step as ``policy.parameters()`` does."""
        return [p for group in self.policy.optimizer.param_groups for p in group["params"]]

    def _clip_gradients(self) -> None:
        """``clip_grad_norm_`` over the trained parameters; on the CPU the gradients are rescaled
        only when their norm is over the limit (``clip_grad_norm_`` always multiplies, by 1 when
        under it). The result is the same."""
        parameters = self._trained_parameters()
        if self.device.type != "cpu" or not hasattr(th, "_foreach_norm"):
            th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        # The total norm in three operations (get_total_norm adds a .to() per tensor).
        norm = float(th.linalg.vector_norm(th.stack(th._foreach_norm(grads))))
        coefficient = self.max_grad_norm / (norm + 1e-6)  # clip_grad_norm_'s
        if coefficient < 1.0:
            th._foreach_mul_(grads, coefficient)

    def _gradient_hooks(self) -> bool:
        """Whether a trained parameter has a gradient hook (``register_hook`` or a post-accumulate one)."""
        return any(
            getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None)
            for p in self._trained_parameters()
        )

    def _optimizer_step(self, kept_lists: bool) -> None:
        """``policy.optimizer.step()``; with ``kept_lists`` (direct gradients) through :class:`_AdamSteps`."""
        optimizer = self.policy.optimizer
        if not kept_lists:
            optimizer.step()
            return
        if self._adam_steps is None or self._adam_steps.optimizer is not optimizer:
            self._adam_steps = _AdamSteps(optimizer)
        self._adam_steps.step()

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """Gradient steps on prioritized n-step batches; priorities updated from the new errors."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self.replay_buffer.beta = self._current_beta()
        # Gradient hooks on the trained parameters run only through autograd.
        direct = self._direct_gradients and not self._gradient_hooks()
        losses = []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            if self.noisy:
                self.q_net.set_noise(True)
                self.q_net_target.set_noise(True)
                resample_noise(self.q_net, self.q_net_target)
                self.policy.__dict__["fresh_noise"] = True  # the next action explores with this draw
            with th.autocast(device_type="cuda", enabled=self._amp):
                loss, priorities = self._loss(data, write_gradients=direct)
            if not direct:
                self.policy.optimizer.zero_grad()
            if self._scaler is not None:
                self._scaler.scale(loss).backward()
                self._scaler.unscale_(self.policy.optimizer)
                th.nn.utils.clip_grad_norm_(self._trained_parameters(), self.max_grad_norm)
                self._scaler.step(self.policy.optimizer)
                self._scaler.update()
            else:
                if not direct:
                    loss.backward()
                self._clip_gradients()
                self._optimizer_step(kept_lists=direct)
            self.replay_buffer.update_priorities(data.indices, priorities)
            losses.append(loss.item())
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
        self.logger.record("train/beta", self.replay_buffer.beta)

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "RainbowDQN",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> RainbowDQN:
        """Train for ``total_timesteps`` environment steps (see SB3's ``learn``)."""
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)


class D3QN(RainbowDQN):
    """Reference system S3's agent: dueling double DQN with prioritized replay (no noise, no C51,
    one-step returns, epsilon-greedy). Any switch can still be changed."""

    def __init__(
        self,
        policy: str | type[RainbowPolicy],
        env: GymEnv | str,
        *,
        noisy: bool = False,
        categorical: bool = False,
        n_steps: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(policy, env, noisy=noisy, categorical=categorical, n_steps=n_steps, **kwargs)
