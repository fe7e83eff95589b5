"""SAC's networks as plain tensors, with hand-written backward passes.

* :class:`CriticStack`: the ``n_critics`` Q-networks of an SB3 ``ContinuousCritic`` as one batched
  network. Layer ``l`` of every critic is one ``(n, out, in)`` weight tensor and one ``(n, out)``
  bias tensor; each critic's ``nn.Linear`` parameters (and their ``.grad``) are views into them, so
  the modules, their ``state_dict`` and the optimizer see SB3's layout while a forward pass is one
  ``addmm`` (first layer, shared input) and one ``baddbmm`` per further layer for all critics.
* :class:`ActorWeights`: the actor's ReLU trunk, mean layer and log-std (layer or gSDE parameter).
* :func:`squashed_gaussian` / :func:`gsde` and their ``*_backward``: SB3's squashed Gaussian and
  gSDE action distributions, forward (actions, log-probabilities) and the gradients autograd would
  compute through the same operations (same clamps, masks and the ``atanh`` of the squashed action).

Everything runs without autograd; gradients are written into kept ``.grad`` tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch as th
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor
from torch import nn

from sb3_crypto.sac import kernels
from sb3_crypto.sac.matmul import Matmul, narrow_mm

_threshold_backward = th.ops.aten.threshold_backward.default

#: ``log(sqrt(2 pi))``, as torch's ``Normal.log_prob`` subtracts it.
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def relu_backward(grad: th.Tensor, output: th.Tensor) -> th.Tensor:
    """The gradient through ``output = relu(x)``: ``grad`` where ``output > 0``, else 0 (one kernel,
    the one autograd uses; ``grad * (output > 0)`` measured 8x slower on the CPU)."""
    return _threshold_backward(grad, output, 0.0)


def _linear_layers(modules: list[nn.Module]) -> list[nn.Linear] | None:
    """The ``nn.Linear`` layers of ``Linear, ReLU, ..., Linear[, ReLU]``; ``None`` for anything else."""
    linears: list[nn.Linear] = []
    for i, module in enumerate(modules):
        expected = nn.Linear if i % 2 == 0 else nn.ReLU
        if type(module) is not expected:
            return None
        if isinstance(module, nn.Linear):
            if module.bias is None:
                return None
            linears.append(module)
    return linears


class CriticStack:
    """The critics of a ``ContinuousCritic`` as one network over stacked tensors (see the module doc).

    Q-values come out as ``(batch, n)`` (SB3's ``th.cat(critic(obs, actions), dim=1)``). Two ways
    to run them: ``batched`` (one ``addmm`` for every critic's first layer, one ``baddbmm`` per
    further layer: fewest kernels, for GPUs) or per critic after the shared first layer, each
    product through :class:`~sb3_crypto.sac.matmul.Matmul` (oneDNN on the CPU, which has no
    batched product here).

    :param critic: SB3's critic; its ``qf<i>`` layers become views into the stacked tensors.
    :param gradients: also keep stacked gradient tensors (the trained critic, not the target), each
        parameter's ``.grad`` a view into them.
    :param matmul: the products' backend.
    :param batched: run the critics as one batched network.
    """

    def __init__(self, critic: ContinuousCritic, gradients: bool, matmul: Matmul, batched: bool = False) -> None:
        layers = [_linear_layers(list(q_net)) for q_net in critic.q_networks]
        if (
            not layers
            or any(lin is None or len(lin) != len(layers[0]) for lin in layers)
            or any(type(list(q_net)[-1]) is not nn.Linear for q_net in critic.q_networks)
        ):
            raise ValueError("the fast path needs ReLU MLP critics of one shape")
        self.n = len(layers)
        self.depth = len(layers[0])
        self.matmul = matmul
        self.batched = batched
        self.weights: list[th.Tensor] = []
        self.biases: list[th.Tensor] = []
        self.weight_grads: list[th.Tensor] = []
        self.bias_grads: list[th.Tensor] = []
        #: (parameter, the view its data must be, the view its .grad must be or None)
        self.ties: list[tuple[nn.Parameter, th.Tensor, th.Tensor | None]] = []
        params_of = [
            [getattr(lin[depth], name) for lin in layers]  # type: ignore[index]
            for depth in range(self.depth)
            for name in ("weight", "bias")
        ]
        first = params_of[0][0]
        total = sum(p.numel() for params in params_of for p in params)
        #: every stacked tensor is a view into this one buffer (the target update is two operations)
        self.flat = th.empty(total, dtype=first.dtype, device=first.device)
        flat_grads = th.zeros_like(self.flat) if gradients else None
        offset = 0
        with th.no_grad():
            for depth in range(self.depth):
                for name, kept, kept_grads in (
                    ("weight", self.weights, self.weight_grads),
                    ("bias", self.biases, self.bias_grads),
                ):
                    params = params_of[2 * depth + (name == "bias")]
                    shape = (len(params), *params[0].shape)
                    size = len(params) * params[0].numel()
                    stacked = self.flat[offset : offset + size].view(shape)
                    th.stack([p.detach() for p in params], out=stacked)
                    grads = flat_grads[offset : offset + size].view(shape) if flat_grads is not None else None
                    offset += size
                    kept.append(stacked)
                    if grads is not None:
                        kept_grads.append(grads)
                    for i, param in enumerate(params):
                        param.data = stacked[i]
                        view = param.data
                        grad_view = grads[i] if grads is not None else None
                        if grad_view is not None:
                            param.grad = grad_view
                        self.ties.append((param, view, grad_view))
        self.tensors = [*self.weights, *self.biases]
        self._bias_rows = [b.unsqueeze(1) for b in self.biases]  # (n, 1, out) for baddbmm
        self._first_weight = self.weights[0].view(-1, self.weights[0].shape[2])  # (n * out, in)
        self._first_bias = self.biases[0].view(-1)

    def tied(self) -> bool:
        """Whether every parameter is still its view (a ``.to(device)``, ``load_state_dict(assign=True)``
        or replaced parameter breaks it: then the stack is built again)."""
        return all(
            param.data_ptr() == view.data_ptr() and param.shape == view.shape and param.dtype == view.dtype
            for param, view, _ in self.ties
        )

    def bind_gradients(self) -> None:
        """Point each parameter's ``.grad`` at its view again (``zero_grad()`` sets it to ``None``,
        autograd may replace it)."""
        for param, _, grad_view in self.ties:
            if grad_view is not None and param.grad is not grad_view:
                param.grad = grad_view

    def forward(self, inputs: th.Tensor, dense: bool = False) -> tuple[th.Tensor, list]:
        """Q-values ``(batch, n)`` of ``inputs`` ``(batch, in)`` and the hidden layers' outputs (what
        :meth:`backward` and :meth:`input_gradient` need).

        :param dense: (per-critic mode) every hidden output its own contiguous tensor, as
            :meth:`backward` needs them (oneDNN's weight gradients take dense operands only; see
            ``matmul._fast_layout``); otherwise the first layer is one product for all critics.
        """
        batch, n = inputs.shape[0], self.n
        first = None
        if self.batched or self.depth == 1 or not dense:
            first = self.matmul.linear(inputs, self._first_weight, self._first_bias, relu=self.depth > 1)
            if self.depth == 1:
                return first, []
        if self.batched:
            assert first is not None
            out = first.view(batch, n, -1).transpose(0, 1)
            hidden = [out]
            for depth in range(1, self.depth):
                out = th.baddbmm(self._bias_rows[depth], out, self.weights[depth].transpose(1, 2))
                if depth < self.depth - 1:
                    hidden.append(out.relu_())
            return out.squeeze(2).t(), hidden
        per_critic = []
        values = []
        width = self.weights[0].shape[1]
        for i in range(n):
            if first is None:
                out = self.matmul.linear(inputs, self.weights[0][i], self.biases[0][i], relu=True)
            else:
                out = first[:, i * width : (i + 1) * width]
            outputs = [out]
            for depth in range(1, self.depth):
                last = depth == self.depth - 1
                out = self.matmul.linear(out, self.weights[depth][i], self.biases[depth][i], relu=not last)
                if not last:
                    outputs.append(out)
            per_critic.append(outputs)
            values.append(out)
        return th.cat(values, dim=1), per_critic

    def backward(self, grad_q: th.Tensor, hidden: list, inputs: th.Tensor) -> None:
        """Write the parameter gradients of ``sum(grad_q * Q)`` (``grad_q`` ``(batch, n)``) into the kept
        gradient tensors."""
        if self.batched:
            grad = grad_q.t().unsqueeze(2)
            for depth in range(self.depth - 1, 0, -1):
                layer_input = hidden[depth - 1]
                th.bmm(grad.transpose(1, 2), layer_input, out=self.weight_grads[depth])
                th.sum(grad, dim=1, out=self.bias_grads[depth])
                grad = relu_backward(th.bmm(grad, self.weights[depth]), layer_input)
            th.bmm(grad.transpose(1, 2), inputs.expand(self.n, -1, -1), out=self.weight_grads[0])
            th.sum(grad, dim=1, out=self.bias_grads[0])
            return
        matmul = self.matmul
        for i in range(self.n):
            grad = grad_q[:, i : i + 1]
            outputs = hidden[i] if hidden else []
            for depth in range(self.depth - 1, 0, -1):
                layer_input = outputs[depth - 1]
                matmul.mm(grad.t(), layer_input, out=self.weight_grads[depth][i])
                th.sum(grad, dim=0, out=self.bias_grads[depth][i])
                grad = relu_backward(matmul.mm(grad, self.weights[depth][i]), layer_input)
            matmul.mm(grad.t(), inputs, out=self.weight_grads[0][i])
            th.sum(grad, dim=0, out=self.bias_grads[0][i])

    def input_gradient(self, grad_q: th.Tensor, hidden: list, start: int) -> th.Tensor:
        """The gradient of ``sum(grad_q * Q)`` with respect to the input columns from ``start`` on (the
        action), summed over the critics; no parameter gradients."""
        if self.batched:
            grad = grad_q.t().unsqueeze(2)
            for depth in range(self.depth - 1, 0, -1):
                grad = relu_backward(th.bmm(grad, self.weights[depth]), hidden[depth - 1])
            return th.bmm(grad, self.weights[0][:, :, start:]).sum(dim=0)
        matmul = self.matmul
        total = None
        for i in range(self.n):
            grad = grad_q[:, i : i + 1]
            outputs = hidden[i] if hidden else []
            for depth in range(self.depth - 1, 0, -1):
                grad = relu_backward(matmul.mm(grad, self.weights[depth][i]), outputs[depth - 1])
            part = matmul.mm(grad, self.weights[0][i][:, start:])
            total = part if total is None else total.add_(part)
        assert total is not None
        return total


def polyak(target: CriticStack, source: CriticStack, tau: float) -> None:
    """SB3's ``polyak_update`` (``target * (1 - tau)``, then ``+ tau * source``, the same operations
    element by element) over the flat buffers holding every stacked tensor."""
    target.flat.mul_(1.0 - tau)
    target.flat.add_(source.flat, alpha=tau)


@dataclass
class HeadCache:
    """What a head's backward needs from its forward: the latent and the per-row tensors (the first
    ``rows`` rows: the training half of the batch) and the tensors shared by all rows."""

    latent: th.Tensor
    tensors: tuple[th.Tensor, ...]
    shared: tuple[th.Tensor, ...] = ()

    def first(self, rows: int) -> HeadCache:
        return HeadCache(self.latent[:rows], tuple(t[:rows] for t in self.tensors), self.shared)


class ActorWeights:
    """An SB3 SAC ``Actor`` (flatten features, ReLU trunk) as tensors: the trunk's ``(weight, bias)``
    pairs, the mean layer (and its ``Hardtanh`` clip under gSDE), and the log-std layer or gSDE
    ``log_std`` parameter; with a kept gradient tensor for every parameter."""

    def __init__(self, actor: Actor, matmul: Matmul) -> None:
        self.matmul = matmul
        trunk = _linear_layers(list(actor.latent_pi))
        if trunk is None or (trunk and not isinstance(list(actor.latent_pi)[-1], nn.ReLU)):
            raise ValueError("the fast path needs a ReLU MLP actor")
        self.trunk = [(linear.weight, linear.bias) for linear in trunk]
        mean = actor.mu
        self.clip: tuple[float, float] | None = None
        if isinstance(mean, nn.Sequential):
            if len(mean) != 2 or type(mean[0]) is not nn.Linear or type(mean[1]) is not nn.Hardtanh:
                raise ValueError("unexpected actor mean layer")
            self.clip = (float(mean[1].min_val), float(mean[1].max_val))
            mean = mean[0]
        if type(mean) is not nn.Linear:
            raise ValueError("unexpected actor mean layer")
        self.mean = (mean.weight, mean.bias)
        self.use_sde = bool(actor.use_sde)
        if self.use_sde:
            if actor.use_expln:
                raise ValueError("the fast path does not implement gSDE's expln")
            self.log_std: th.Tensor = actor.log_std  # (latent, action) or (latent, 1)
            self.log_std_layer = None
        else:
            if type(actor.log_std) is not nn.Linear:
                raise ValueError("unexpected actor log-std layer")
            self.log_std_layer = (actor.log_std.weight, actor.log_std.bias)
        self.parameters = list(actor.parameters())
        with th.no_grad():
            for param in self.parameters:
                if param.grad is None or param.grad.shape != param.shape:
                    param.grad = th.zeros_like(param)
        self.grads = [p.grad for p in self.parameters]
        self._grad_of = {id(p): p.grad for p in self.parameters}

    def bind_gradients(self) -> None:
        """Restore the kept ``.grad`` tensors (after a ``zero_grad()`` or an autograd step)."""
        for param, grad in zip(self.parameters, self.grads):
            if param.grad is not grad:
                param.grad = grad

    def grad(self, param: th.Tensor) -> th.Tensor:
        return self._grad_of[id(param)]

    def trunk_forward(self, features: th.Tensor) -> list[th.Tensor]:
        """The trunk's input and every layer's (ReLU) output."""
        outputs = [features]
        for weight, bias in self.trunk:
            outputs.append(self.matmul.linear(outputs[-1], weight, bias, relu=True))
        return outputs

    def trunk_backward(self, grad_latent: th.Tensor, outputs: list[th.Tensor], rows: int, masked: bool = False) -> None:
        """Write the trunk's gradients given the gradient of its last output (first ``rows`` rows;
        ``masked``: already through the last ReLU)."""
        grad = grad_latent
        for depth in range(len(self.trunk) - 1, -1, -1):
            weight, bias = self.trunk[depth]
            if not (masked and depth == len(self.trunk) - 1):
                grad = relu_backward(grad, outputs[depth + 1][:rows])
            layer_input = outputs[depth][:rows]
            self.matmul.mm(grad.t(), layer_input, out=self.grad(weight))
            th.sum(grad, dim=0, out=self.grad(bias))
            if depth > 0:
                grad = self.matmul.mm(grad, weight)


# ---------------------------------------------------------------------- action distributions
def squashed_gaussian(
    weights: ActorWeights, latent: th.Tensor, noise: th.Tensor, epsilon: float = 1e-6
) -> tuple[th.Tensor, th.Tensor, HeadCache]:
    """SB3's ``SquashedDiagGaussianDistribution`` with the log-std layer: ``(actions, log_probs,
    cache)`` for each row of ``latent``, with ``noise`` the standard normal draws of ``rsample``."""
    assert weights.log_std_layer is not None
    mean = th.addmm(weights.mean[1], latent, weights.mean[0].t())
    raw_log_std = th.addmm(weights.log_std_layer[1], latent, weights.log_std_layer[0].t())
    actions, log_probs, tensors = squashed_gaussian_head(mean, raw_log_std, noise, epsilon)
    return actions, log_probs, HeadCache(latent, tensors)


def squashed_gaussian_head(
    mean: th.Tensor, raw_log_std: th.Tensor, noise: th.Tensor, epsilon: float = 1e-6
) -> tuple[th.Tensor, th.Tensor, tuple[th.Tensor, ...]]:
    """The element-wise part of :func:`squashed_gaussian` from the mean and the unclamped log-std:
    ``(actions, log_probs, tensors for squashed_gaussian_grads)``."""
    std = raw_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp_()
    gaussian = mean + noise * std  # Normal.rsample: loc + eps * scale
    actions = th.tanh(gaussian)
    variance = std * std
    diff = gaussian - mean
    log_probs = ((diff * diff).div_(variance * 2)).neg_().sub_(std.log()).sub_(_LOG_SQRT_2PI).sum(dim=1) - th.log(
        1 - actions * actions + epsilon
    ).sum(dim=1)
    return actions, log_probs, (raw_log_std, std, variance, diff, actions, noise)


def squashed_gaussian_backward(
    weights: ActorWeights,
    cache: HeadCache,
    grad_actions: th.Tensor,
    grad_log_probs: th.Tensor,
    epsilon: float = 1e-6,
) -> th.Tensor:
    """Write the mean and log-std layers' gradients; return the gradient of the latent.

    :param grad_actions: ``(rows, action_dim)`` gradient of the loss with respect to the actions.
    :param grad_log_probs: the gradient with respect to every row's log-probability (a scalar tensor).
    """
    assert weights.log_std_layer is not None
    latent = cache.latent
    grad_mean, grad_raw_log_std = squashed_gaussian_grads(cache.tensors, grad_actions, grad_log_probs, epsilon)
    (mean_weight, mean_bias), (std_weight, std_bias) = weights.mean, weights.log_std_layer
    th.mm(grad_mean.t(), latent, out=weights.grad(mean_weight))
    th.sum(grad_mean, dim=0, out=weights.grad(mean_bias))
    th.mm(grad_raw_log_std.t(), latent, out=weights.grad(std_weight))
    th.sum(grad_raw_log_std, dim=0, out=weights.grad(std_bias))
    return th.addmm(grad_mean.mm(mean_weight), grad_raw_log_std, std_weight)


def squashed_gaussian_grads(
    tensors: tuple[th.Tensor, ...], grad_actions: th.Tensor, grad_log_probs: th.Tensor | float, epsilon: float = 1e-6
) -> tuple[th.Tensor, th.Tensor]:
    """The gradients of the mean and of the unclamped log-std, element by element, from
    :func:`squashed_gaussian_head`'s tensors (the rows to train on)."""
    raw_log_std, std, variance, diff, actions, noise = tensors
    one_minus = 1 - actions * actions
    # log(1 - a^2 + eps) term, then tanh's backward
    grad_gaussian = (grad_actions + grad_log_probs * 2 * actions / (one_minus + epsilon)) * one_minus
    # -(x - mean)^2 / (2 var): through x and through the mean
    diff_over_var = diff / variance
    grad_gaussian = grad_gaussian - grad_log_probs * diff_over_var
    grad_mean = grad_gaussian + grad_log_probs * diff_over_var
    # std: through x = mean + eps * std, through var = std^2, and -log(std)
    grad_std = (
        grad_gaussian * noise + grad_log_probs * (diff * diff / (variance * variance)) * std - grad_log_probs / std
    )
    in_range = (raw_log_std >= LOG_STD_MIN) & (raw_log_std <= LOG_STD_MAX)
    grad_raw_log_std = (grad_std * std).mul_(in_range)
    return grad_mean, grad_raw_log_std


def gsde(
    weights: ActorWeights, latent: th.Tensor, exploration: th.Tensor, epsilon: float = 1e-6
) -> tuple[th.Tensor, th.Tensor, HeadCache]:
    """SB3's ``StateDependentNoiseDistribution`` (``learn_features=True``, squashed): ``(actions,
    log_probs, cache)`` for each row of ``latent`` with the exploration matrix's standard normal draw
    ``exploration`` (``(latent_dim, action_dim)``)."""
    mean_raw = th.addmm(weights.mean[1], latent, weights.mean[0].t())
    mean = mean_raw.clamp(*weights.clip) if weights.clip is not None else mean_raw  # Hardtanh's values
    std = weights.log_std.exp()
    if std.shape[1] != mean.shape[1]:  # full_std=False: one std per latent unit
        std = th.ones(std.shape[0], mean.shape[1], device=std.device, dtype=std.dtype) * std
    matrix = exploration * std  # the exploration matrix (rsample of Normal(0, std))
    gaussian = mean + narrow_mm(latent, matrix)  # SB3: mean + get_noise(latent)
    actions = th.tanh(gaussian)
    std_squared = std * std
    variance = narrow_mm(latent * latent, std_squared)
    scale = (variance + epsilon).sqrt_()
    bound = 1.0 - th.finfo(actions.dtype).eps
    clipped = actions.clamp(-bound, bound)
    gaussian_back = (clipped.log1p() - (-clipped).log1p()).mul_(0.5)  # TanhBijector.inverse
    diff = gaussian_back - mean
    scale_squared = scale * scale
    tanh_back = th.tanh(gaussian_back)
    one_minus_back = 1 - tanh_back * tanh_back
    log_probs = ((diff * diff).div_(scale_squared * 2)).neg_().sub_(scale.log()).sub_(_LOG_SQRT_2PI).sum(
        dim=1
    ) - th.log(one_minus_back + epsilon).sum(dim=1)
    rows = (mean_raw, scale, scale_squared, actions, clipped, diff, tanh_back, one_minus_back)
    return actions, log_probs, HeadCache(latent, rows, (exploration, std, matrix, std_squared))


def gsde_backward(
    weights: ActorWeights,
    cache: HeadCache,
    grad_actions: th.Tensor,
    grad_log_probs: th.Tensor,
    epsilon: float = 1e-6,
) -> th.Tensor:
    """Write the mean layer's and ``log_std``'s gradients; return the gradient of the latent (which
    gSDE's noise and variance also depend on: ``learn_features=True`` in SB3's SAC actor)."""
    mean_raw, scale, scale_squared, actions, clipped, diff, tanh_back, one_minus_back = cache.tensors
    exploration, std, matrix, std_squared = cache.shared
    latent = cache.latent
    bound = 1.0 - th.finfo(actions.dtype).eps
    # log-prob terms of the inverted action: -(x - mean)^2 / (2 scale^2) and -log(1 - tanh(x)^2 + eps)
    diff_over_var = diff / scale_squared
    grad_back = grad_log_probs * (2 * tanh_back * one_minus_back / (one_minus_back + epsilon) - diff_over_var)
    # TanhBijector.inverse: 0.5 (log1p(c) - log1p(-c)) of the clamped action
    grad_clipped = grad_back * 0.5 * (1 / (1 + clipped) + 1 / (1 - clipped))
    grad_clipped = grad_clipped.mul_((actions >= -bound) & (actions <= bound))
    grad_gaussian = (grad_actions + grad_clipped) * (1 - actions * actions)
    grad_mean = grad_gaussian + grad_log_probs * diff_over_var
    grad_scale = grad_log_probs * (diff * diff / (scale_squared * scale_squared)) * scale - grad_log_probs / scale
    grad_variance = grad_scale / (2 * scale)
    # gaussian = mean + latent @ matrix; variance = latent^2 @ std^2
    grad_latent = th.mm(grad_gaussian, matrix.t()).add_(2 * latent * th.mm(grad_variance, std_squared.t()))
    grad_matrix = th.mm(latent.t(), grad_gaussian)
    grad_std_squared = th.mm((latent * latent).t(), grad_variance)
    grad_std = grad_matrix * exploration + grad_std_squared * 2 * std
    if grad_std.shape != weights.log_std.shape:  # full_std=False
        grad_std = grad_std.sum(dim=1, keepdim=True)
        std = std[:, :1]
    th.mul(grad_std, std, out=weights.grad(weights.log_std))
    if weights.clip is not None:  # Hardtanh passes the gradient strictly inside its bounds
        low, high = weights.clip
        grad_mean = grad_mean * ((mean_raw > low) & (mean_raw < high))
    mean_weight, mean_bias = weights.mean
    th.mm(grad_mean.t(), latent, out=weights.grad(mean_weight))
    th.sum(grad_mean, dim=0, out=weights.grad(mean_bias))
    return grad_latent.addmm_(grad_mean, mean_weight)


# ---------------------------------------------------------------------- compiled heads (CPU)
def squashed_gaussian_fused(
    weights: ActorWeights, latent: th.Tensor, noise: th.Tensor, epsilon: float = 1e-6
) -> tuple[th.Tensor, th.Tensor, HeadCache]:
    """:func:`squashed_gaussian` with its element-wise part in one compiled loop (CPU tensors)."""
    assert weights.log_std_layer is not None
    mean = th.addmm(weights.mean[1], latent, weights.mean[0].t())
    raw_log_std = th.addmm(weights.log_std_layer[1], latent, weights.log_std_layer[0].t())
    actions = th.empty_like(mean)
    log_probs = mean.new_empty(mean.shape[0])
    kernels.gaussian_forward(
        mean.numpy(), raw_log_std.numpy(), noise.numpy(), actions.numpy(), log_probs.numpy(), epsilon
    )
    return actions, log_probs, HeadCache(latent, (mean, raw_log_std, noise, actions))


def squashed_gaussian_fused_backward(
    weights: ActorWeights,
    cache: HeadCache,
    grad_actions: th.Tensor,
    grad_log_prob: float,
    mask: bool,
    epsilon: float = 1e-6,
) -> th.Tensor:
    """:func:`squashed_gaussian_backward` in one compiled loop; the latent's gradient comes back
    through the trunk's last ReLU already when ``mask``."""
    assert weights.log_std_layer is not None
    mean, raw_log_std, noise, actions = cache.tensors
    latent = cache.latent
    (mean_weight, mean_bias), (std_weight, std_bias) = weights.mean, weights.log_std_layer
    grad_latent = th.empty_like(latent)
    kernels.gaussian_backward(
        mean.numpy(),
        raw_log_std.numpy(),
        noise.numpy(),
        actions.numpy(),
        grad_actions.contiguous().numpy(),
        grad_log_prob,
        latent.numpy(),
        mean_weight.detach().numpy(),
        std_weight.detach().numpy(),
        mask,
        grad_latent.numpy(),
        weights.grad(mean_weight).numpy(),
        weights.grad(mean_bias).numpy(),
        weights.grad(std_weight).numpy(),
        weights.grad(std_bias).numpy(),
        epsilon,
    )
    return grad_latent


def gsde_fused(
    weights: ActorWeights, latent: th.Tensor, exploration: th.Tensor, epsilon: float = 1e-6
) -> tuple[th.Tensor, th.Tensor, HeadCache]:
    """:func:`gsde` (CPU tensors) with SB3's element-wise operations as torch's vectorised kernels
    (the action, its clamped inverse and that inverse's ``tanh``, float32 as in SB3) and the
    log-probabilities in one compiled loop."""
    mean_raw = th.addmm(weights.mean[1], latent, weights.mean[0].t())
    mean = mean_raw.clamp(*weights.clip) if weights.clip is not None else mean_raw  # Hardtanh's values
    std = weights.log_std.exp()
    if std.shape[1] != mean_raw.shape[1]:  # full_std=False
        std = th.ones(std.shape[0], mean_raw.shape[1], dtype=std.dtype) * std
    matrix = exploration * std
    std_squared = std * std
    variance = narrow_mm(latent * latent, std_squared)
    actions = th.tanh(narrow_mm(latent, matrix).add_(mean))
    bound = 1.0 - th.finfo(actions.dtype).eps
    clipped = actions.clamp(-bound, bound)
    inverted = (clipped.log1p() - (-clipped).log1p()).mul_(0.5)  # TanhBijector.inverse
    tanh_inverted = th.tanh(inverted)
    log_probs = mean_raw.new_empty(mean_raw.shape[0])
    kernels.gsde_log_probs(
        mean.numpy(), inverted.numpy(), tanh_inverted.numpy(), variance.numpy(), log_probs.numpy(), epsilon
    )
    rows = (mean_raw, mean, variance, actions, inverted, tanh_inverted)
    return actions, log_probs, HeadCache(latent, rows, (exploration, std, matrix, std_squared))


def gsde_fused_backward(
    weights: ActorWeights,
    cache: HeadCache,
    grad_actions: th.Tensor,
    grad_log_prob: float,
    mask: bool,
    epsilon: float = 1e-6,
) -> th.Tensor:
    """:func:`gsde_backward` with the element-wise work in one compiled loop (the products with the
    latent stay torch's)."""
    mean_raw, mean, variance, actions, inverted, tanh_inverted = cache.tensors
    exploration, std, matrix, std_squared = cache.shared
    latent = cache.latent
    mean_weight, mean_bias = weights.mean
    grad_x, grad_mean, grad_variance = (th.empty_like(grad_actions) for _ in range(3))
    low, high = weights.clip if weights.clip is not None else (0.0, 0.0)
    kernels.gsde_grads(
        mean_raw.numpy(),
        mean.numpy(),
        variance.numpy(),
        actions.numpy(),
        inverted.numpy(),
        tanh_inverted.numpy(),
        low,
        high,
        weights.clip is not None,
        grad_actions.contiguous().numpy(),
        grad_log_prob,
        grad_x.numpy(),
        grad_mean.numpy(),
        grad_variance.numpy(),
        epsilon,
    )
    # gaussian = mean + latent @ matrix; variance = latent^2 @ std^2; mean = latent @ W.T + b
    grad_latent = th.mm(grad_x, matrix.t()).addcmul_(latent, th.mm(grad_variance, std_squared.t()), value=2.0)
    grad_latent.addmm_(grad_mean, mean_weight)
    if mask:
        grad_latent = relu_backward(grad_latent, latent)
    th.mm(grad_mean.t(), latent, out=weights.grad(mean_weight))
    th.sum(grad_mean, dim=0, out=weights.grad(mean_bias))
    # (as transposes of the (action, width) products: a row-major latent is the fast operand there)
    grad_matrix = th.mm(grad_x.t(), latent).t()
    grad_std_squared = th.mm(grad_variance.t(), latent.square()).t()
    grad_std = grad_matrix.mul_(exploration).add_(grad_std_squared.mul_(2 * std))
    if grad_std.shape != weights.log_std.shape:  # full_std=False
        grad_std = grad_std.sum(dim=1, keepdim=True)
        std = std[:, :1]
    th.mul(grad_std, std, out=weights.grad(weights.log_std))
    return grad_latent
