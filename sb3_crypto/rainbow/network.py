"""The Rainbow Q-network: features extractor, MLP trunk of linear or noisy layers, (dueling) head,
Q-values or C51 return distributions; and :func:`noise_off`, the mean weights inside a block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn
from torch.nn import functional as F

from sb3_crypto.rainbow.fused_loss import (
    FusedCategoricalLoss,
    _categorical_backward,
    _categorical_forward,
    _gradient_slot,
)
from sb3_crypto.rainbow.layers import LayerWeights, NoisyLinear, resample_noise

__all__ = ["LayerWeights", "RainbowQNetwork", "noise_off"]


class RainbowQNetwork(BasePolicy):
    """Features extractor -> MLP trunk -> (dueling) heads -> Q-values or return distributions.

    :param net_arch: hidden sizes of the trunk (S0: ``[512, 256, 128]``).
    :param dueling: value and advantage streams, ``Q = V + A - mean(A)`` (on logits for C51), computed by
        one output layer whose first ``n_atoms`` outputs are the value (with noisy nets both streams
        share the layer's input noise).
    :param noisy: every linear layer after the extractor is a :class:`NoisyLinear`.
    :param n_atoms: atoms of the return distribution; 1 means plain Q-values.
    :param v_min, v_max: support of the distribution.
    :param dropout: dropout after each trunk layer (S0: 0.1); off in deterministic use via ``eval()``.
    """

    action_space: spaces.Discrete

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        dueling: bool = True,
        noisy: bool = True,
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        noisy_sigma0: float = 0.5,
        dropout: float = 0.0,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.net_arch = [64, 64] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.features_dim = features_dim
        self.dueling = dueling
        self.noisy = noisy
        self.n_atoms = int(n_atoms)
        self.v_min, self.v_max = float(v_min), float(v_max)
        self.noisy_sigma0 = noisy_sigma0
        self.dropout = dropout
        n_actions = int(action_space.n)
        self.n_actions = n_actions

        def linear(i: int, o: int) -> nn.Module:
            return NoisyLinear(i, o, noisy_sigma0) if noisy else nn.Linear(i, o)

        layers: list[nn.Module] = []
        size = features_dim
        for width in self.net_arch:
            layers += [linear(size, width), activation_fn()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            size = width
        self.trunk = nn.Sequential(*layers)
        # One output layer for both dueling streams (value atoms first, then the advantages): the
        # same function as two layers, with half the layer calls, noise draws and optimizer tensors.
        self.head = linear(size, (n_actions + int(dueling)) * self.n_atoms)
        self.register_buffer("support", th.linspace(self.v_min, self.v_max, self.n_atoms))
        self._noisy = [m for m in self.modules() if isinstance(m, NoisyLinear)]  # cached: toggled every step
        self._linear = [m for m in (*self.trunk, self.head) if isinstance(m, (nn.Linear, NoisyLinear))]
        # A ReLU trunk of linear layers can run as plain matrix products (see ``layer_weights``).
        self._relu_mlp = activation_fn is nn.ReLU and dropout == 0
        # A 1-D Box through FlattenExtractor: a float32 batch is its own features (skips two ops and
        # a module call per pass).
        self._identity_features = (
            type(features_extractor) is FlattenExtractor
            and isinstance(observation_space, spaces.Box)
            and len(observation_space.shape) == 1
        )

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Networks saved by sb3_crypto 0.1 had separate ``value`` and ``advantage`` output layers:
        # stack them into the single head (value rows first), parameter by parameter.
        for name in ("weight", "bias", "weight_mu", "weight_sigma", "bias_mu", "bias_sigma", "eps_out"):
            old = f"{prefix}advantage.{name}"
            if old in state_dict:
                parts = [state_dict.pop(f"{prefix}value.{name}")] if f"{prefix}value.{name}" in state_dict else []
                state_dict[f"{prefix}head.{name}"] = th.cat([*parts, state_dict.pop(old)])
        for stream in ("value", "advantage"):
            if f"{prefix}{stream}.eps_in" in state_dict:  # one shared input noise now: keep the advantage's
                state_dict[f"{prefix}head.eps_in"] = state_dict.pop(f"{prefix}{stream}.eps_in")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def categorical(self) -> bool:
        """Whether the network outputs return distributions (C51)."""
        return self.n_atoms > 1

    def _noise_buffer(self) -> th.Tensor | None:
        """The flat tensor whose slices are the noisy layers' ``eps_in`` / ``eps_out`` (``None`` without
        noisy layers). Re-linked, keeping the current values, whenever a layer's buffers were
        replaced (``.to()``, or a layer drawing its own noise)."""
        if not self._noisy:
            return None
        links = self.__dict__.get("_noise_links")
        if links is None or any(
            layer._buffers["eps_in"] is not eps_in or layer._buffers["eps_out"] is not eps_out
            for layer, eps_in, eps_out in links[1]
        ):
            flat = th.cat([th.cat((layer.eps_in, layer.eps_out)) for layer in self._noisy])
            views, start = [], 0
            for layer in self._noisy:
                middle, end = start + layer.in_features, start + layer.in_features + layer.out_features
                layer._buffers["eps_in"], layer._buffers["eps_out"] = flat[start:middle], flat[middle:end]
                views.append((layer, layer._buffers["eps_in"], layer._buffers["eps_out"]))
                start = end
            links = self.__dict__["_noise_links"] = (flat, views)
        return links[0]

    @property
    def supports_fused_loss(self) -> bool:
        """Whether :meth:`categorical_loss` applies: C51 outputs and a trunk of linear (or noisy)
        layers with ReLU and no dropout (the condition for ``weights`` arguments too). The features
        extractor may be anything (its gradient flows through autograd as usual)."""
        return self.categorical and self._relu_mlp

    def layer_weights(self) -> LayerWeights:
        """Each linear layer's ``(weight, bias)`` as used now, without autograd history: noisy layers
        with their current noise, or their means when the noise is off. Formed once, they serve
        every pass that shares the noise (the double-DQN selector and the training pass)."""
        with th.no_grad():
            return [
                m.effective_parameters() if isinstance(m, NoisyLinear) else (m.weight, m.bias) for m in self._linear
            ]

    def _features(self, obs: PyTorchObs) -> th.Tensor:
        """``extract_features`` (the observation itself for a float32 batch from a 1-D Box)."""
        if self._identity_features and isinstance(obs, th.Tensor) and obs.dtype == th.float32 and obs.dim() == 2:
            return obs
        return self.extract_features(obs, self.features_extractor)

    def _outputs(self, obs: PyTorchObs, weights: LayerWeights | None) -> th.Tensor:
        """Head outputs ``(batch, (n_actions + dueling) * n_atoms)``; with ``weights`` the layers run
        as plain matrix products (ReLU trunk, see :attr:`supports_fused_loss`)."""
        features = self._features(obs)
        if weights is None:
            if not self._relu_mlp:
                return self.head(self.trunk(features))
            # The layers' own forward, without a module call each (module hooks are not run).
            for layer in self._linear[:-1]:
                features = layer.forward(features).relu_()
            return self._linear[-1].forward(features)
        for weight, bias in weights[:-1]:
            features = F.linear(features, weight, bias).relu_()
        return F.linear(features, *weights[-1])

    def _combine(self, out: th.Tensor) -> th.Tensor:
        """Head outputs to per-action outputs ``(batch, n_actions, n_atoms)`` (dueling: ``V + A - mean A``)."""
        if not self.dueling:
            return out.view(-1, self.n_actions, self.n_atoms)
        value = out[:, : self.n_atoms].view(-1, 1, self.n_atoms)
        advantage = out[:, self.n_atoms :].view(-1, self.n_actions, self.n_atoms)
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def logits(self, obs: PyTorchObs, weights: LayerWeights | None = None) -> th.Tensor:
        """Per-action outputs, shape ``(batch, n_actions, n_atoms)``; ``weights`` from :meth:`layer_weights`
        (no gradient then)."""
        return self._combine(self._outputs(obs, weights))

    def log_distribution(self, obs: PyTorchObs) -> th.Tensor:
        """Log-probabilities over the support, ``(batch, n_actions, n_atoms)`` (categorical only)."""
        return F.log_softmax(self.logits(obs), dim=2)

    def q_values(self, obs: PyTorchObs, weights: LayerWeights | None = None) -> th.Tensor:
        """Q-values ``(batch, n_actions)``: expectations over the support when categorical."""
        if not self.categorical:  # the hot path of D3QN / DQN: no atom dimension to build and drop
            out = self._outputs(obs, weights)
            if not self.dueling:
                return out
            advantage = out[:, 1:]
            return out[:, :1] + advantage - advantage.mean(dim=1, keepdim=True)
        return (F.softmax(self.logits(obs, weights), dim=2) * self.support).sum(dim=2)

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        """Q-values ``(batch, n_actions)``: expectations over the support when categorical."""
        return self.q_values(obs)

    def categorical_loss(
        self,
        obs: PyTorchObs,
        actions: th.Tensor,
        target: th.Tensor,
        sample_weights: th.Tensor,
        weights: LayerWeights | None = None,
        write_gradients: bool = False,
    ) -> tuple[th.Tensor, th.Tensor]:
        """The C51 loss ``mean(sample_weights * -sum(target * log p(actions)))`` over the batch, and
        each sample's cross-entropy (no gradient; the new priorities).

        The same values and gradients as autograd through :meth:`logits`, computed by
        :class:`FusedCategoricalLoss` (needs :attr:`supports_fused_loss`).

        :param actions: ``(batch,)`` action indices.
        :param target: ``(batch, n_atoms)`` target distributions (no gradient).
        :param sample_weights: ``(batch,)`` importance weights (no gradient).
        :param weights: this network's :meth:`layer_weights` if already formed for the current noise.
        :param write_gradients: compute the gradients now, without an autograd graph: each trained
            parameter's ``.grad`` is overwritten (what ``zero_grad()`` then ``loss.backward()``
            would leave), the sigmas of layers whose noise is off get ``None``, and a features
            extractor with parameters gets its gradients through autograd. The returned loss has
            no graph then.
        """
        noise = [
            (m.eps_weight, m.eps_out) if isinstance(m, NoisyLinear) and m.noise_enabled else None for m in self._linear
        ]
        params: list[list[th.Tensor]] = []
        for layer, eps in zip(self._linear, noise):
            if not isinstance(layer, NoisyLinear):
                params.append([layer.weight, layer.bias])
            elif eps is not None:
                params.append([layer.weight_mu, layer.weight_sigma, layer.bias_mu, layer.bias_sigma])
            else:
                params.append([layer.weight_mu, layer.bias_mu])
        layout = (self.dueling, self.n_actions, self.n_atoms)
        weights = weights or self.layer_weights()
        features = self._features(obs)
        if not write_gradients:
            spec = (layout, weights, noise)
            return FusedCategoricalLoss.apply(
                features, actions, target, sample_weights, spec, *(t for p in params for t in p)
            )
        with th.no_grad():
            loss, losses, inputs, log_probs, index = _categorical_forward(
                features.detach(), actions, target, sample_weights, layout, weights
            )
            for layer, eps in zip(self._linear, noise):
                if isinstance(layer, NoisyLinear) and eps is None:
                    layer.weight_sigma.grad = layer.bias_sigma.grad = None
            slots = [[_gradient_slot(p) for p in layer_params] for layer_params in params]
            grad_features, _ = _categorical_backward(
                1.0,
                (inputs, log_probs, target, sample_weights, index),
                layout,
                [weight for weight, _ in weights],
                noise,
                features.requires_grad,
                out=slots,
            )
        if grad_features is not None:
            for p in self.features_extractor.parameters():
                p.grad = None
            features.backward(grad_features)
        return loss, losses

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        # Batches: the layers as plain matrix products (no module dispatch). Single observations:
        # the modules, whose noisy layers then skip forming the noisy weights.
        small = isinstance(observation, th.Tensor) and observation.shape[0] <= NoisyLinear.factorised_max_batch
        weights = self.layer_weights() if self._relu_mlp and not (small and self._noisy) else None
        return self.q_values(observation, weights).argmax(dim=1).reshape(-1)

    def set_training_mode(self, mode: bool) -> None:
        """``train(mode)`` over a cached flat list of the network's modules.

        SB3 switches modes twice per environment step (eval to act, train to learn);
        ``nn.Module.train`` walks the module tree and sets the flag through ``Module.__setattr__``
        each time, which measured ~0.1 ms per step on the Rainbow trunk. Modules that override
        ``train`` keep the recursive call.
        """
        modules = self.__dict__.get("_mode_modules")
        if modules is None:
            modules = list(self.modules())
            if any(type(m).train is not nn.Module.train for m in modules):
                self.train(mode)
                return
            self.__dict__["_mode_modules"] = modules
        for module in modules:
            module.__dict__["training"] = mode

    def noisy_layers(self) -> list[NoisyLinear]:
        """The network's noisy layers (empty without noisy nets)."""
        return list(self._noisy)

    def set_noise(self, enabled: bool, resample: bool = False) -> None:
        """Use noisy weights or their means; optionally draw new noise."""
        for layer in self._noisy:
            # A plain attribute, set without Module.__setattr__'s checks (twice per training step).
            layer.__dict__["noise_enabled"] = enabled
        if resample and enabled:
            self.reset_noise()

    def reset_noise(self) -> None:
        """New noise for every noisy layer, drawn in one call for the whole network."""
        resample_noise(self)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            features_dim=self.features_dim,
            activation_fn=self.activation_fn,
            features_extractor=self.features_extractor,
            dueling=self.dueling,
            noisy=self.noisy,
            n_atoms=self.n_atoms,
            v_min=self.v_min,
            v_max=self.v_max,
            noisy_sigma0=self.noisy_sigma0,
            dropout=self.dropout,
        )
        return data


@contextmanager
def noise_off(q_net: Any) -> Iterator[None]:
    """Mean weights (no parameter noise) inside the block for a network with ``set_noise``; a no-op
    for any other network. Noise is switched on again on exit (also on error)."""
    if not hasattr(q_net, "set_noise"):
        yield
        return
    q_net.set_noise(False)
    try:
        yield
    finally:
        q_net.set_noise(True)
