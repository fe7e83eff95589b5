"""The deterministic policy of each algorithm family as a plain ``nn.Module`` (what is exported to ONNX).

==========================  =======================================  =====================================
algorithm                   inputs                                   outputs
==========================  =======================================  =====================================
DQN, Rainbow, D3QN          ``obs``                                  ``action``, ``q_values``
                                                                     (+ ``distribution`` with C51)
QR-DQN                      ``obs``                                  ``action``, ``q_values``, ``quantiles``
SAC, TQC, TD3               ``obs``                                  ``action`` (in the env's bounds)
PPO, A2C                    ``obs``                                  ``action``, ``value``
MaskablePPO                 ``obs``, ``action_masks`` (bool)         ``action``, ``value``
RecurrentPPO                ``obs``, ``state_h``, ``state_c``,       ``action``, ``next_state_h``,
                            ``episode_start``                        ``next_state_c``
==========================  =======================================  =====================================

Every input and output has a dynamic batch dimension (for RecurrentPPO the state is
``(lstm_layers, batch, hidden)`` as in SB3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel
from torch import nn

from sb3_crypto.algorithms import policy_family

#: Policy family (:data:`sb3_crypto.algorithms.POLICY_FAMILIES`) -> export module kind.
EXPORT_KINDS = {
    "rainbow": "q_values",
    "dqn": "q_values",
    "qrdqn": "quantiles",
    "sac": "deterministic",
    "tqc": "deterministic",
    "td3": "deterministic",
    "recurrent": "recurrent",
    "maskable": "masked_actor_critic",
    "actor_critic": "actor_critic",
}


class _QValues(nn.Module):
    """DQN / Rainbow / D3QN: Q-values, the greedy action and (C51) the return distribution."""

    def __init__(self, q_net: nn.Module) -> None:
        super().__init__()
        self.q_net = q_net
        self.categorical = bool(getattr(q_net, "categorical", False))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, ...]:
        if not self.categorical:
            q_values = self.q_net(obs)
            return q_values.argmax(dim=1), q_values
        distribution = th.softmax(self.q_net.logits(obs), dim=2)
        q_values = (distribution * self.q_net.support).sum(dim=2)
        return q_values.argmax(dim=1), q_values, distribution


class _Quantiles(nn.Module):
    """QR-DQN: quantiles ``(batch, n_quantiles, n_actions)``, their mean and its argmax."""

    def __init__(self, quantile_net: nn.Module) -> None:
        super().__init__()
        self.quantile_net = quantile_net

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        quantiles = self.quantile_net(obs)
        q_values = quantiles.mean(dim=1)
        return q_values.argmax(dim=1), q_values, quantiles


class _ActionScaling(nn.Module):
    """Maps policy outputs to the env's action bounds as SB3's ``predict`` does."""

    def __init__(self, action_space: spaces.Box, squashed: bool) -> None:
        super().__init__()
        self.squashed = squashed
        self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32))
        self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32))

    def forward(self, action: th.Tensor) -> th.Tensor:
        if self.squashed:  # unscale_action: [-1, 1] -> [low, high]
            return self.low + 0.5 * (action + 1.0) * (self.high - self.low)
        return th.clamp(action, self.low, self.high)


class _Deterministic(nn.Module):
    """SAC / TD3: the deterministic action in the env's bounds."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.actor = policy.actor
        self.scaling = _ActionScaling(policy.action_space, squashed=bool(policy.squash_output))
        self.has_dist_params = hasattr(self.actor, "get_action_dist_params")

    def forward(self, obs: th.Tensor) -> th.Tensor:
        if self.has_dist_params:  # SAC (with or without gSDE): the mode is tanh(mean)
            mean, _, _ = self.actor.get_action_dist_params(obs)
            action = th.tanh(mean)
        else:  # TD3
            action = self.actor(obs)
        return self.scaling(action)


def _discrete_or_box(policy: nn.Module, latent_pi: th.Tensor, mask: th.Tensor | None = None) -> th.Tensor:
    """The mode of the action distribution from the actor's latent."""
    out = policy.action_net(latent_pi)
    if isinstance(policy.action_space, spaces.Discrete):
        if mask is not None:  # MaskableCategorical: invalid logits -> -1e8
            out = th.where(mask, out, th.full_like(out, -1e8))
        return out.argmax(dim=1)
    if isinstance(policy.action_space, spaces.Box):
        return out
    raise TypeError(f"export supports Discrete and Box action spaces, not {policy.action_space}")


class _ActorCritic(nn.Module):
    """PPO / A2C / MaskablePPO: deterministic action and state value."""

    def __init__(self, policy: nn.Module, masked: bool) -> None:
        super().__init__()
        self.policy = policy
        self.masked = masked
        box = isinstance(policy.action_space, spaces.Box)
        self.scaling = _ActionScaling(policy.action_space, bool(policy.squash_output)) if box else None

    def forward(self, obs: th.Tensor, action_masks: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        policy = self.policy
        features = policy.extract_features(obs)
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(features)
        else:
            latent_pi = policy.mlp_extractor.forward_actor(features[0])
            latent_vf = policy.mlp_extractor.forward_critic(features[1])
        action = _discrete_or_box(policy, latent_pi, action_masks if self.masked else None)
        if self.scaling is not None:
            action = self.scaling(action)
        return action, policy.value_net(latent_vf)


class _Recurrent(nn.Module):
    """RecurrentPPO: one step of the actor LSTM; the state is reset where ``episode_start`` is 1."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy
        box = isinstance(policy.action_space, spaces.Box)
        self.scaling = _ActionScaling(policy.action_space, bool(policy.squash_output)) if box else None

    def forward(
        self, obs: th.Tensor, state_h: th.Tensor, state_c: th.Tensor, episode_start: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        policy = self.policy
        features = BaseModel.extract_features(policy, obs, policy.pi_features_extractor)
        keep = (1.0 - episode_start).view(1, -1, 1)
        out, (state_h, state_c) = policy.lstm_actor(features.unsqueeze(0), (keep * state_h, keep * state_c))
        latent_pi = policy.mlp_extractor.forward_actor(out[0])
        action = _discrete_or_box(policy, latent_pi)
        if self.scaling is not None:
            action = self.scaling(action)
        return action, state_h, state_c


@dataclass
class ExportSignature:
    """Names of an exported graph's inputs and outputs and the family it belongs to."""

    kind: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def export_module(model: Any) -> tuple[nn.Module, ExportSignature]:
    """The deterministic policy of ``model`` as an ``nn.Module`` (eval mode, noise off) and its signature."""
    policy = model.policy
    if not isinstance(model.observation_space, spaces.Box):
        raise TypeError(f"export supports Box observation spaces (every sb3_crypto env), not {model.observation_space}")
    policy.set_training_mode(False)
    kind = EXPORT_KINDS.get(policy_family(policy) or "")
    if kind == "q_values":
        q_net = policy.q_net
        if hasattr(q_net, "set_noise"):
            q_net.set_noise(False)  # deterministic prediction uses the mean weights
        module: nn.Module = _QValues(q_net)
        outputs = ("action", "q_values", "distribution") if module.categorical else ("action", "q_values")
        signature = ExportSignature("q_values", ("obs",), outputs)
    elif kind == "quantiles":
        module = _Quantiles(policy.quantile_net)
        signature = ExportSignature("quantiles", ("obs",), ("action", "q_values", "quantiles"))
    elif kind == "deterministic":
        module = _Deterministic(policy)
        signature = ExportSignature("deterministic", ("obs",), ("action",))
    elif kind == "recurrent":
        module = _Recurrent(policy)
        signature = ExportSignature(
            "recurrent", ("obs", "state_h", "state_c", "episode_start"), ("action", "next_state_h", "next_state_c")
        )
    elif kind == "masked_actor_critic":
        module = _ActorCritic(policy, masked=True)
        signature = ExportSignature("masked_actor_critic", ("obs", "action_masks"), ("action", "value"))
    elif kind == "actor_critic":
        module = _ActorCritic(policy, masked=False)
        signature = ExportSignature("actor_critic", ("obs",), ("action", "value"))
    else:
        raise TypeError(f"no ONNX export for policy {type(policy).__name__}")
    return module.eval(), signature


def example_inputs(model: Any, signature: ExportSignature, batch: int = 2) -> tuple[th.Tensor, ...]:
    """Zero inputs of the right shapes and dtypes for ``batch`` observations."""
    obs = th.zeros((batch, *model.observation_space.shape), dtype=th.float32)
    if signature.kind == "recurrent":
        layers, _, hidden = model.policy.lstm_hidden_state_shape
        state = th.zeros((layers, batch, hidden), dtype=th.float32)
        return obs, state, state.clone(), th.zeros(batch, dtype=th.float32)
    if signature.kind == "masked_actor_critic":
        return obs, th.ones((batch, int(model.action_space.n)), dtype=th.bool)
    return (obs,)


def run_module(
    module: nn.Module, signature: ExportSignature, inputs: dict[str, np.ndarray], device: th.device | str = "cpu"
) -> dict[str, np.ndarray]:
    """An export module's named outputs for named numpy inputs, computed by PyTorch."""
    tensors = [th.as_tensor(inputs[name], device=device) for name in signature.inputs]
    with th.no_grad():
        result = module(*tensors)
    result = result if isinstance(result, tuple) else (result,)
    return {name: value.cpu().numpy() for name, value in zip(signature.outputs, result)}


def torch_outputs(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The export module's outputs computed by PyTorch (the reference of the parity check)."""
    module, signature = export_module(model)
    return run_module(module, signature, inputs, model.device)
