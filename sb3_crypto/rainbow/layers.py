"""Factorised noisy linear layers (NoisyNet) and the noise draws of a whole network.

:class:`NoisyLinear` is the layer; :func:`resample_noise` draws new noise for every noisy layer of
one or more networks at once; :data:`LayerWeights` is the ``(weight, bias)`` list that the
matrix-product passes and the fused C51 loss take.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch as th
from torch import nn
from torch.nn import functional as F

#: Each linear layer's ``(weight, bias)``, input to output (see :meth:`RainbowQNetwork.layer_weights`).
LayerWeights = list[tuple[th.Tensor, th.Tensor]]


def _scaled_noise(x: th.Tensor) -> th.Tensor:
    """``f(x) = sign(x) sqrt(|x|)``, the factorised-noise transform."""
    return x.abs().sqrt_().copysign_(x)


class _NoisyNetwork(Protocol):
    """What :func:`resample_noise` uses of a network (a :class:`~sb3_crypto.rainbow.network.RainbowQNetwork`)."""

    _noisy: list[NoisyLinear]

    def _noise_buffer(self) -> th.Tensor | None: ...


def resample_noise(*networks: _NoisyNetwork) -> None:
    """New noise for every noisy layer of ``networks``, written in place.

    Each network's ``eps_in`` / ``eps_out`` buffers are views of one flat tensor, so a draw is four
    operations per network plus one outer product per layer: the training loop draws twice per
    step, and in it every tensor operation counts (measured ~10-30 us each between the large
    matrix products, against ~2 us in isolation).
    """
    for network in networks:
        flat = network._noise_buffer()
        if flat is not None:
            raw = th.randn(flat.shape[0], device=flat.device)
            th.copysign(raw.abs().sqrt_(), raw, out=flat)  # f(x) = sign(x) sqrt(|x|)
            for layer in network._noisy:
                th.outer(layer.eps_out, layer.eps_in, out=layer.eps_weight)


class NoisyLinear(nn.Module):
    """Factorised Gaussian noisy linear layer (Fortunato et al., 2018).

    ``weight = mu_w + sigma_w * f(eps_out) f(eps_in)^T`` with ``f(x) = sign(x) sqrt(|x|)``; the noise
    is used while ``noise_enabled`` is set and redrawn by :meth:`reset_noise`. The outer product
    ``f(eps_out) f(eps_in)^T`` is formed once per draw (``eps_weight``, not saved), so a forward pass
    costs two fused multiply-adds and the matrix product.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(th.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(th.full((out_features, in_features), sigma0 / math.sqrt(in_features)))
        self.bias_mu = nn.Parameter(th.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(th.full((out_features,), sigma0 / math.sqrt(in_features)))
        self.register_buffer("eps_in", th.zeros(in_features))
        self.register_buffer("eps_out", th.zeros(out_features))
        self.register_buffer("eps_weight", th.zeros(out_features, in_features), persistent=False)
        self.noise_enabled = True
        self.reset_noise()

    def reset_noise(self) -> None:
        """Draw new factorised noise ``f(x) = sign(x) sqrt(|x|)`` of standard normals, in place."""
        self.set_noise_values(_scaled_noise(th.randn(self.in_features + self.out_features, device=self.eps_in.device)))

    def set_noise_values(self, scaled: th.Tensor) -> None:
        """Use ``scaled`` (``in_features + out_features`` already-transformed values) as the noise.

        The buffers become views of ``scaled`` (no copies); ``scaled`` must not be changed afterwards.
        """
        self._buffers["eps_in"] = scaled[: self.in_features]
        self._buffers["eps_out"] = scaled[self.in_features :]
        self._buffers["eps_weight"] = th.outer(self._buffers["eps_out"], self._buffers["eps_in"])

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        th.outer(self.eps_out, self.eps_in, out=self.eps_weight)  # loaded eps_in / eps_out

    def effective_parameters(self) -> tuple[th.Tensor, th.Tensor]:
        """``(weight, bias)`` as the layer uses them now: with the current noise, or the means."""
        if not self.noise_enabled:
            return self.weight_mu, self.bias_mu
        return (
            th.addcmul(self.weight_mu, self.weight_sigma, self.eps_weight),
            th.addcmul(self.bias_mu, self.bias_sigma, self.eps_out),
        )

    #: Batches up to this size use the factorised product (see :meth:`forward`).
    factorised_max_batch: int = 4

    def forward(self, x: th.Tensor) -> th.Tensor:
        if self.noise_enabled and x.dim() == 2 and x.shape[0] <= self.factorised_max_batch:
            # x (mu + sigma * eps_out eps_in^T)^T = x mu^T + ((x * eps_in) sigma^T) * eps_out: for one
            # observation (acting) this reads the two weight matrices once instead of forming the
            # noisy one; measured faster per action, and the same function.
            out = F.linear(x, self.weight_mu, self.bias_mu)
            return out.addcmul_(F.linear(x * self.eps_in, self.weight_sigma, self.bias_sigma), self.eps_out)
        return F.linear(x, *self.effective_parameters())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
