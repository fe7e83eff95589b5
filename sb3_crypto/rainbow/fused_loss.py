"""The fused C51 loss: forward and hand-written backward through a ReLU MLP and (dueling) head.

:class:`FusedCategoricalLoss` is the autograd function; :func:`_categorical_forward` and
:func:`_categorical_backward` are its two halves, also called directly when the gradients are
written into the parameters without an autograd graph (``RainbowQNetwork.categorical_loss``).
"""

from __future__ import annotations

from typing import Any

import torch as th
from torch.nn import functional as F

from sb3_crypto.rainbow.layers import LayerWeights


def _categorical_forward(
    features: th.Tensor,
    actions: th.Tensor,
    target: th.Tensor,
    sample_weights: th.Tensor,
    layout: tuple[bool, int, int],
    weights: LayerWeights,
) -> tuple[th.Tensor, th.Tensor, list[th.Tensor], th.Tensor, th.Tensor]:
    """The fused C51 loss's forward: ``(weighted mean loss, per-sample losses, each layer's input,
    log-probabilities of the taken actions, the gather index)``; ``layout = (dueling, n_actions,
    n_atoms)``."""
    dueling, n_actions, n_atoms = layout
    inputs = [features]
    for weight, bias in weights[:-1]:
        inputs.append(F.linear(inputs[-1], weight, bias).relu_())
    out = F.linear(inputs[-1], *weights[-1])
    index = actions.reshape(-1, 1, 1).expand(-1, 1, n_atoms)
    if dueling:
        advantage = out[:, n_atoms:].view(-1, n_actions, n_atoms)
        taken = out[:, :n_atoms] + advantage.gather(1, index).squeeze(1) - advantage.mean(dim=1)
    else:
        taken = out.view(-1, n_actions, n_atoms).gather(1, index).squeeze(1)
    log_probs = F.log_softmax(taken, dim=1)
    losses = (target * log_probs).sum(dim=1).neg_()
    return th.dot(sample_weights, losses) / len(losses), losses, inputs, log_probs, index


def _categorical_backward(
    grad_loss: th.Tensor | float,
    saved: tuple[list[th.Tensor], th.Tensor, th.Tensor, th.Tensor, th.Tensor],
    layout: tuple[bool, int, int],
    matrices: list[th.Tensor],
    noise: list[tuple[th.Tensor, th.Tensor] | None],
    features_grad: bool,
    out: list[list[th.Tensor]] | None = None,
) -> tuple[th.Tensor | None, list[th.Tensor]]:
    """Gradients of the fused C51 loss: ``(gradient of the features or None, parameter gradients)``.

    :param saved: ``(layer inputs, log_probs, target, sample_weights, index)`` from the forward.
    :param matrices: each layer's weight matrix as used in the forward.
    :param noise: per layer ``(eps_weight, eps_out)`` when its noise is on (parameters ``weight_mu,
        weight_sigma, bias_mu, bias_sigma``), else ``None`` (``weight, bias``).
    :param out: per layer, tensors to write that layer's parameter gradients into (in the order
        above) instead of allocating them.
    """
    inputs, log_probs, target, sample_weights, index = saved
    dueling, n_actions, n_atoms = layout
    # d(-sum t log softmax(l)) / dl = softmax(l) * sum(t) - t, per sample, times w / batch
    scale = sample_weights * (grad_loss / len(target))
    grad_taken = (log_probs.exp() * target.sum(dim=1, keepdim=True)).sub_(target).mul_(scale[:, None])
    out_features = matrices[-1].shape[0]
    grad = grad_taken.new_empty(grad_taken.shape[0], out_features)
    if dueling:  # V gets it all; each advantage -1/n_actions of it, the taken one 1 more
        grad[:, :n_atoms] = grad_taken
        advantage = grad[:, n_atoms:].view(-1, n_actions, n_atoms)
        advantage.copy_((grad_taken / -n_actions)[:, None, :].expand_as(advantage))
        advantage.scatter_add_(1, index, grad_taken[:, None, :])
    else:
        grad.zero_().view(-1, n_actions, n_atoms).scatter_(1, index, grad_taken[:, None, :])
    grads: list[th.Tensor] = []
    grad_features = None
    for i in reversed(range(len(matrices))):
        layer_input = inputs[i]
        slots = out[i] if out is not None else [None] * (2 if noise[i] is None else 4)  # out=None allocates
        grad_weight = th.mm(grad.t(), layer_input, out=slots[0])
        if noise[i] is not None:
            eps_weight, eps_out = noise[i]
            grad_bias = th.sum(grad, dim=0, out=slots[2])
            sigma_grads = th.mul(grad_weight, eps_weight, out=slots[1]), th.mul(grad_bias, eps_out, out=slots[3])
            grads[:0] = [grad_weight, sigma_grads[0], grad_bias, sigma_grads[1]]
        else:
            grads[:0] = [grad_weight, th.sum(grad, dim=0, out=slots[1])]
        if i > 0:
            grad = grad.mm(matrices[i]).mul_(layer_input > 0)
        elif features_grad:
            grad_features = grad.mm(matrices[0])
    return grad_features, grads


def _gradient_slot(parameter: th.Tensor) -> th.Tensor:
    """``parameter.grad``, allocated if missing, to be overwritten."""
    grad = parameter.grad
    if grad is None or grad.shape != parameter.shape or grad.dtype != parameter.dtype:
        grad = parameter.grad = th.empty_like(parameter)
    return grad


class FusedCategoricalLoss(th.autograd.Function):
    """C51 cross-entropy of the taken actions through a ReLU MLP and (dueling) head, with the
    backward written out by hand (:func:`_categorical_backward`).

    Autograd records about twenty nodes for this computation (noisy-weight products, the dueling
    combination, gather, log-softmax, the loss) and runs each backward as a separate call; here the
    backward is two matrix products per layer and a few element-wise operations. The gradients are
    those of autograd through :meth:`RainbowQNetwork.logits` (a test compares them).

    ``forward(features, actions, target, sample_weights, spec, *params)`` returns the weighted mean
    loss and the per-sample losses (not differentiable), with ``spec = (layout, layer_weights,
    noise)`` as in :func:`_categorical_backward`.
    """

    @staticmethod
    def forward(
        ctx: Any,
        features: th.Tensor,
        actions: th.Tensor,
        target: th.Tensor,
        sample_weights: th.Tensor,
        spec: tuple,
        *params: th.Tensor,
    ) -> tuple[th.Tensor, th.Tensor]:
        layout, weights, noise = spec
        loss, losses, inputs, log_probs, index = _categorical_forward(
            features, actions, target, sample_weights, layout, weights
        )
        # Saved through autograd, which refuses the backward if any of them changed in place since
        # (a noise draw, an optimizer step), as it would for its own graph.
        noisy = [pair for pair in noise if pair is not None]
        matrices = [weight for weight, _ in weights]
        ctx.save_for_backward(
            *inputs, log_probs, target, sample_weights, index, *matrices, *(t for pair in noisy for t in pair)
        )
        ctx.layout = (layout, [pair is not None for pair in noise])
        ctx.mark_non_differentiable(losses)
        return loss, losses

    @staticmethod
    def backward(ctx: Any, grad_loss: th.Tensor, _grad_losses: th.Tensor | None) -> tuple[th.Tensor | None, ...]:
        layout, is_noisy = ctx.layout
        n_layers = len(is_noisy)
        saved = ctx.saved_tensors
        inputs, rest = list(saved[:n_layers]), saved[n_layers : n_layers + 4]
        matrices = list(saved[n_layers + 4 : 2 * n_layers + 4])
        noise = iter(saved[2 * n_layers + 4 :])
        noise_of = [(next(noise), next(noise)) if flag else None for flag in is_noisy]
        grad_features, grads = _categorical_backward(
            grad_loss, (inputs, *rest), layout, matrices, noise_of, ctx.needs_input_grad[0]
        )
        return (grad_features, None, None, None, None, *grads)
