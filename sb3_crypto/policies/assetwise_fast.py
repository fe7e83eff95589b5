"""The per-asset SAC policy (:class:`~sb3_crypto.policies.portfolio.AssetwiseSACPolicy`) as plain
tensors with hand-written backward passes, for :class:`~sb3_crypto.sac.FastSAC`'s training step.

The policy's networks are small products applied row by row, so their autograd graph (module calls,
``Conv1d`` kernels, ``cat`` / ``mean`` nodes) costs several times their arithmetic. Here each piece
is the product it stands for, on ``(rows, width)`` tensors:

* the extractor (:class:`ExtractorNet`): EIIE's first convolution as one product over the windows'
  patches (``unfold``: ``(batch * assets * positions, channels * kernel)``), its second, whose
  kernel spans the remaining positions, as one product over each asset's flattened first-layer
  output; or :class:`~sb3_crypto.policies.portfolio.AssetMlpExtractor`'s MLP over each flattened
  window; then the cash bias, the weights and the extra values joined per token and the shared
  token layer;
* the actor (:class:`ActorNet`): the shared token MLP, the per-token mean and log-std scores, SB3's
  squashed Gaussian (the element-wise part of :mod:`sb3_crypto.sac.networks`);
* the critics (:class:`CriticNet`): each critic's shared MLP over ``(token, action)`` rows, the
  mean over the tokens and the output layer; the critics share their extractor's tokens, as SB3's
  ``ContinuousCritic`` does.

The same operations as the modules' (products summed in another order: values agree to float32
rounding); ``tests/models/test_fast_sac_assetwise.py`` holds one gradient step to SB3's ``SAC``.
Attention extractors (:meth:`PortfolioExtractor.interact`), other activations, gSDE and a features
extractor shared between actor and critic are not covered: FastSAC then runs SB3's ``train``.
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn

from sb3_crypto.sac.networks import (
    relu_backward,
    squashed_gaussian_grads,
    squashed_gaussian_head,
)


def _grad(param: nn.Parameter) -> th.Tensor:
    """``param.grad``, created (zeros) when missing, to be written in place."""
    if param.grad is None or param.grad.shape != param.shape:
        with th.no_grad():
            param.grad = th.zeros_like(param)
    return param.grad


class Layer:
    """A linear layer as a ``(out, in)`` matrix. ``positions``: a ``Conv1d`` weight ``(out, maps,
    positions)`` whose kernel spans its input, taken over inputs laid out position-major
    (``(rows, positions * maps)``)."""

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None, positions: bool = False) -> None:
        if bias is None:
            raise ValueError("the fast path needs layers with a bias")
        self.weight, self.bias, self.positions = weight, bias, positions

    def matrix(self) -> th.Tensor:
        weight = self.weight.detach()
        if self.positions:
            return weight.permute(0, 2, 1).reshape(weight.shape[0], -1)
        return weight.view(weight.shape[0], -1)

    def forward(self, x: th.Tensor, matrix: th.Tensor, relu: bool = True) -> th.Tensor:
        out = th.addmm(self.bias.detach(), x, matrix.t())
        return out.relu_() if relu else out

    def write_gradients(self, grad_out: th.Tensor, x: th.Tensor) -> None:
        """The weight's and bias's gradients of ``sum(grad_out * (x @ W.T + b))``."""
        grad = _grad(self.weight)
        if self.positions:
            out, maps, positions = grad.shape
            grad.copy_(th.mm(grad_out.t(), x).view(out, positions, maps).permute(0, 2, 1))
        else:
            th.mm(grad_out.t(), x, out=grad.view(grad.shape[0], -1))
        th.sum(grad_out, dim=0, out=_grad(self.bias))

    def parameters(self) -> list[nn.Parameter]:
        return [self.weight, self.bias]


def _relu_linears(modules: list[nn.Module], owner: str) -> list[Layer]:
    """``Linear, ReLU, Linear, ReLU, ...`` (possibly empty) as layers."""
    layers = []
    for i, module in enumerate(modules):
        if type(module) is not (nn.Linear if i % 2 == 0 else nn.ReLU):
            raise ValueError(f"{owner}: the fast path needs Linear/ReLU pairs, got {type(module).__name__}")
        if isinstance(module, nn.Linear):
            layers.append(Layer(module.weight, module.bias))
    if len(modules) % 2:
        raise ValueError(f"{owner}: the fast path needs a ReLU after every Linear")
    return layers


class ExtractorNet:
    """A :class:`~sb3_crypto.policies.portfolio.PortfolioExtractor` (EIIE's convolutions or the
    per-asset MLP, no interaction between tokens) as tensors: :meth:`forward` gives the tokens
    ``(batch * (n_assets + 1), token_dim)`` and what :meth:`backward` needs."""

    def __init__(self, extractor: Any) -> None:
        spec = extractor.fast_spec()
        if spec is None:
            raise ValueError(f"{type(extractor).__name__} has no fast path")
        kind, modules = spec
        self.extractor = extractor
        self.n_assets, self.window_size = extractor.n_assets, extractor.window_size
        self.n_channels, self.window_dim = extractor.n_channels, extractor.window_dim
        self.n_slots, self.extra_dim = extractor.n_slots, extractor.extra_dim
        self.kernel: int | None = None
        if kind == "conv":
            first, second = modules
            for conv in (first, second):
                if (
                    type(conv) is not nn.Conv1d
                    or conv.stride != (1,)
                    or conv.padding != (0,)
                    or conv.dilation != (1,)
                    or conv.groups != 1
                ):
                    raise ValueError("the fast path needs plain Conv1d layers")
            self.kernel = int(first.kernel_size[0])
            self.positions = self.window_size - self.kernel + 1
            if second.kernel_size[0] != self.positions:
                raise ValueError("the second convolution must span the first one's output")
            self.layers = [Layer(first.weight, first.bias), Layer(second.weight, second.bias, positions=True)]
        elif kind == "mlp":
            self.layers = _relu_linears(list(modules), type(extractor).__name__)
            self.positions = 1
        else:
            raise ValueError(f"unknown extractor kind {kind!r}")
        self.cash_bias = extractor.cash_bias
        mix = list(extractor.mix)
        if len(mix) != 2 or type(mix[0]) is not nn.Linear or type(mix[1]) is not nn.ReLU:
            raise ValueError("the fast path needs the token layer as Linear + ReLU")
        self.mix = Layer(mix[0].weight, mix[0].bias)
        self.encoded_dim = int(extractor.encoded_dim)

    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in (*self.layers, self.mix) for p in layer.parameters()] + [self.cash_bias]

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, tuple]:
        """``(tokens, cache)`` for observations ``(batch, obs_dim)``."""
        batch = obs.shape[0]
        codes_rows = batch * self.n_assets
        windows = obs[:, : self.window_dim].reshape(codes_rows, self.window_size, self.n_channels)
        if self.kernel is not None:
            # (rows, positions, channels, kernel): Conv1d's weight (out, channels, kernel) flattened
            x = windows.unfold(1, self.kernel, 1).reshape(codes_rows * self.positions, -1)
        else:
            x = windows.view(codes_rows, -1)
        inputs, outputs, matrices = [], [], []
        for depth, layer in enumerate(self.layers):
            if depth == 1 and self.kernel is not None:
                x = x.view(codes_rows, -1)  # each asset's positions x maps, position-major
            matrix = layer.matrix()
            inputs.append(x)
            matrices.append(matrix)
            x = layer.forward(x, matrix)
            outputs.append(x)
        encoded = self.encoded_dim
        joined = obs.new_empty(batch, self.n_slots, encoded + 1 + self.extra_dim)
        joined[:, 0, :encoded] = self.cash_bias.detach()
        joined[:, 1:, :encoded] = x.view(batch, self.n_assets, encoded)
        joined[:, :, encoded] = obs[:, self.window_dim : self.window_dim + self.n_slots]
        if self.extra_dim:
            joined[:, :, encoded + 1 :] = obs[:, self.window_dim + self.n_slots :].unsqueeze(1)
        joined = joined.view(batch * self.n_slots, -1)
        mix_matrix = self.mix.matrix()
        tokens = self.mix.forward(joined, mix_matrix)
        return tokens, (inputs, outputs, matrices, joined, mix_matrix, tokens)

    def backward(self, grad_tokens: th.Tensor, cache: tuple, rows: int) -> None:
        """Write the parameters' gradients of ``sum(grad_tokens * tokens)`` over the first ``rows``
        observations (``grad_tokens``: ``(rows * n_slots, token_dim)``)."""
        inputs, outputs, matrices, joined, mix_matrix, tokens = cache
        token_rows = rows * self.n_slots
        grad = relu_backward(grad_tokens, tokens[:token_rows])
        self.mix.write_gradients(grad, joined[:token_rows])
        grad_joined = th.mm(grad, mix_matrix).view(rows, self.n_slots, -1)
        encoded = self.encoded_dim
        th.sum(grad_joined[:, 0, :encoded], dim=0, out=_grad(self.cash_bias))
        grad = grad_joined[:, 1:, :encoded].reshape(rows * self.n_assets, encoded)
        for depth in range(len(self.layers) - 1, -1, -1):
            layer_rows = rows * self.n_assets * (self.positions if depth == 0 and self.kernel is not None else 1)
            grad = relu_backward(grad, outputs[depth][:layer_rows])
            self.layers[depth].write_gradients(grad, inputs[depth][:layer_rows])
            if depth > 0:
                grad = th.mm(grad, matrices[depth])
                if depth == 1 and self.kernel is not None:
                    grad = grad.view(rows * self.n_assets * self.positions, -1)


class ActorNet:
    """:class:`~sb3_crypto.policies.portfolio.AssetwiseActor` as tensors: the extractor, the token
    MLP, the per-token mean and log-std scores and SB3's squashed Gaussian."""

    def __init__(self, actor: Any) -> None:
        if actor.use_sde:
            raise ValueError("the fast path of the per-asset actor has no gSDE")
        self.actor = actor
        self.extractor = ExtractorNet(actor.features_extractor)
        self.trunk = _relu_linears(list(actor.latent_pi.net), "the actor's token MLP")
        self.mean = Layer(actor.mu.score.weight, actor.mu.score.bias)
        self.log_std = Layer(actor.log_std.score.weight, actor.log_std.score.bias)
        self.n_slots = self.extractor.n_slots

    def parameters(self) -> list[nn.Parameter]:
        return self.extractor.parameters() + [
            p for layer in (*self.trunk, self.mean, self.log_std) for p in layer.parameters()
        ]

    def distribution(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, tuple]:
        """``(mean, unclamped log-std, cache)``, each ``(batch, n_assets + 1)``."""
        tokens, extractor_cache = self.extractor.forward(obs)
        outputs, matrices = [tokens], []
        for layer in self.trunk:
            matrices.append(layer.matrix())
            outputs.append(layer.forward(outputs[-1], matrices[-1]))
        latent = outputs[-1]
        batch = obs.shape[0]
        mean = self.mean.forward(latent, self.mean.matrix(), relu=False).view(batch, self.n_slots)
        raw_log_std = self.log_std.forward(latent, self.log_std.matrix(), relu=False).view(batch, self.n_slots)
        return mean, raw_log_std, (extractor_cache, outputs, matrices)

    def act(self, obs: th.Tensor, deterministic: bool) -> th.Tensor:
        """SB3's ``Actor.forward`` without a graph: ``tanh`` of the mean, or of a draw as SB3's
        ``rsample`` makes it (same generator calls)."""
        mean, raw_log_std, _ = self.distribution(obs)
        if deterministic:
            return th.tanh(mean)
        std = th.ones_like(mean) * raw_log_std.clamp_(LOG_STD_MIN, LOG_STD_MAX).exp()
        return th.tanh(mean + th.empty_like(mean).normal_() * std)

    def forward(self, obs: th.Tensor, noise: th.Tensor) -> tuple[th.Tensor, th.Tensor, tuple]:
        """``(actions, log_probs, cache)`` with ``noise`` the standard normal draws of ``rsample``."""
        mean, raw_log_std, cache = self.distribution(obs)
        actions, log_probs, head = squashed_gaussian_head(mean, raw_log_std, noise)
        return actions, log_probs, (*cache, head)

    def backward(self, cache: tuple, rows: int, grad_actions: th.Tensor, grad_log_prob: float) -> None:
        """Write every actor parameter's gradient (first ``rows`` observations) given the gradients
        of the loss with respect to the actions and to each row's log-probability."""
        extractor_cache, outputs, matrices, head = cache
        grad_mean, grad_raw_log_std = squashed_gaussian_grads(
            tuple(t[:rows] for t in head), grad_actions, grad_log_prob
        )
        token_rows = rows * self.n_slots
        latent = outputs[-1][:token_rows]
        grad_mean = grad_mean.reshape(token_rows, 1)
        grad_raw_log_std = grad_raw_log_std.reshape(token_rows, 1)
        self.mean.write_gradients(grad_mean, latent)
        self.log_std.write_gradients(grad_raw_log_std, latent)
        grad = grad_mean * self.mean.matrix() + grad_raw_log_std * self.log_std.matrix()
        for depth in range(len(self.trunk) - 1, -1, -1):
            grad = relu_backward(grad, outputs[depth + 1][:token_rows])
            self.trunk[depth].write_gradients(grad, outputs[depth][:token_rows])
            grad = th.mm(grad, matrices[depth])
        self.extractor.backward(grad, extractor_cache, rows)


class CriticNet:
    """:class:`~sb3_crypto.policies.portfolio.AssetwiseCritic` as tensors: one extractor, then each
    critic's MLP over ``(token, action)`` rows, the mean over the tokens and the output layer."""

    def __init__(self, critic: Any) -> None:
        self.extractor = ExtractorNet(critic.features_extractor)
        self.critics: list[tuple[list[Layer], Layer]] = []
        for q_net in critic.q_networks:
            body = _relu_linears(list(q_net.body), "the critic's token MLP")
            if type(q_net.out) is not nn.Linear:
                raise ValueError("the fast path needs a Linear output layer")
            self.critics.append((body, Layer(q_net.out.weight, q_net.out.bias)))
        self.n_slots = self.extractor.n_slots

    def parameters(self) -> list[nn.Parameter]:
        params = self.extractor.parameters()
        for body, out in self.critics:
            params += [p for layer in (*body, out) for p in layer.parameters()]
        return params

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, tuple]:
        """``(Q-values (batch, n_critics), cache)`` of observations and actions ``(batch, n_slots)``."""
        tokens, extractor_cache = self.extractor.forward(obs)
        batch, token_dim = obs.shape[0], tokens.shape[1]
        joined = tokens.new_empty(tokens.shape[0], token_dim + 1)
        joined[:, :token_dim] = tokens
        joined[:, token_dim] = actions.reshape(-1)
        values, per_critic = [], []
        for body, out in self.critics:
            outputs, matrices = [joined], []
            for layer in body:
                matrices.append(layer.matrix())
                outputs.append(layer.forward(outputs[-1], matrices[-1]))
            pooled = outputs[-1].view(batch, self.n_slots, -1).mean(dim=1)
            out_matrix = out.matrix()
            values.append(out.forward(pooled, out_matrix, relu=False))
            per_critic.append((outputs, matrices, pooled, out_matrix))
        return th.cat(values, dim=1), (extractor_cache, per_critic)

    def _backward(self, grad_q: th.Tensor, cache: tuple, parameters: bool) -> th.Tensor:
        """The gradient of ``sum(grad_q * Q)`` with respect to the joined ``(token, action)`` rows,
        summed over the critics, with the critics' own parameter gradients written when
        ``parameters``; otherwise only its last (action) column is sure to be there."""
        _, per_critic = cache
        batch = grad_q.shape[0]
        total = None
        for i, ((body, out), (outputs, matrices, pooled, out_matrix)) in enumerate(zip(self.critics, per_critic)):
            grad_value = grad_q[:, i : i + 1]
            if parameters:
                out.write_gradients(grad_value, pooled)
            grad_pooled = grad_value * out_matrix  # (batch, width): the outer product
            width = grad_pooled.shape[1]
            grad = (grad_pooled / self.n_slots).unsqueeze(1).expand(batch, self.n_slots, width)
            grad = grad.reshape(batch * self.n_slots, width)
            for depth in range(len(body) - 1, -1, -1):
                grad = relu_backward(grad, outputs[depth + 1])
                if parameters:
                    body[depth].write_gradients(grad, outputs[depth])
                # (for the action's gradient alone, only the first layer's action column)
                grad = th.mm(grad, matrices[depth] if parameters or depth else matrices[0][:, -1:])
            total = grad if total is None else total.add_(grad)
        assert total is not None
        return total

    def backward(self, grad_q: th.Tensor, cache: tuple) -> None:
        """Write every critic parameter's gradient (the extractor's too) of ``sum(grad_q * Q)``."""
        grad_joined = self._backward(grad_q, cache, parameters=True)
        self.extractor.backward(grad_joined[:, :-1], cache[0], grad_q.shape[0])

    def action_gradient(self, grad_q: th.Tensor, cache: tuple) -> th.Tensor:
        """The gradient of ``sum(grad_q * Q)`` with respect to the actions ``(batch, n_slots)``."""
        grad_joined = self._backward(grad_q, cache, parameters=False)
        return grad_joined[:, -1].reshape(grad_q.shape[0], self.n_slots)


class AssetwiseNetworks:
    """What :class:`~sb3_crypto.sac.FastSAC`'s network step needs from a per-asset SAC policy: the
    actor, the critics and the target critics as tensors (see the module doc)."""

    def __init__(self, policy: Any) -> None:
        if getattr(policy, "share_features_extractor", False):
            raise ValueError("the fast path needs separate actor and critic extractors")
        self.policy = policy
        self.modules = (policy.actor, policy.critic, policy.critic_target)
        self.actor = ActorNet(policy.actor)
        self.critic = CriticNet(policy.critic)
        self.target = CriticNet(policy.critic_target)
        self.actor_parameters = self.actor.parameters()
        self.critic_parameters = self.critic.parameters()
        for name, mine, module in (
            ("actor", self.actor_parameters, policy.actor),
            ("critic", self.critic_parameters, policy.critic),
            ("target", self.target.parameters(), policy.critic_target),
        ):
            if sorted(map(id, mine)) != sorted(map(id, module.parameters())):
                raise ValueError(f"the fast path does not cover every parameter of the {name}")
        self.actor_module_parameters = list(policy.actor.parameters())
        # SB3's polyak update pairs the critic's and the target's parameters in module order.
        self.polyak_sources = [p.detach() for p in policy.critic.parameters()]
        self.polyak_targets = [p.detach() for p in policy.critic_target.parameters()]
        for param in (*self.actor_parameters, *self.critic_parameters):
            _grad(param)

    def valid(self, policy: Any) -> bool:
        """Whether the networks still describe ``policy``: the same modules and actor parameters, and
        the polyak lists still the critics' storage (a ``.to(device)`` or an assigned
        ``load_state_dict`` moves it)."""
        if policy is not self.policy or (policy.actor, policy.critic, policy.critic_target) != self.modules:
            return False
        if any(a is not b for a, b in zip(self.actor_module_parameters, policy.actor.parameters(), strict=True)):
            return False
        pairs = zip(
            (*self.polyak_sources, *self.polyak_targets),
            (*policy.critic.parameters(), *policy.critic_target.parameters()),
        )
        return all(kept.data_ptr() == param.data_ptr() and kept.shape == param.shape for kept, param in pairs)

    def bind_gradients(self) -> None:
        """Make sure every parameter has its gradient tensor (``zero_grad()`` sets them to ``None``)."""
        for param in (*self.actor_parameters, *self.critic_parameters):
            if param.grad is None:
                _grad(param)

    def polyak(self, tau: float) -> None:
        """SB3's ``polyak_update`` (``target * (1 - tau)``, then ``+ tau * source``) as two
        ``torch._foreach`` operations."""
        th._foreach_mul_(self.polyak_targets, 1.0 - tau)
        th._foreach_add_(self.polyak_targets, self.polyak_sources, alpha=tau)
