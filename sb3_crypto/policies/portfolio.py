"""Networks for the multi-asset portfolio env: one small network shared across assets (EIIE).

The observation of a portfolio env is laid out by :class:`~sb3_crypto.envs.base.PortfolioLayout`:
``n_assets`` windows of ``window_size`` bars x ``n_channels`` (asset-major), then the current
weights (cash first), then any extra values. The extractors here follow the *Ensemble of Identical
Independent Evaluators* of Jiang, Xu & Liang (2017, "A Deep Reinforcement Learning Framework for the
Financial Portfolio Management Problem"):

* every asset's window is encoded by the **same** network (:meth:`PortfolioExtractor.encode`), so
  the extractor is **equivariant** to the order of the assets: permuting the assets in the
  observation permutes the per-asset outputs the same way, and a model can be applied to any
  ordering of the same coins;
* each asset's code is joined with its **current weight** (the previous action, which the costs of a
  rebalance depend on) and the extra values, and mapped to a ``token_dim`` token by one shared layer;
* **cash** gets a token of its own from a learned **cash bias** (in place of a window) and the cash
  weight, through the same layer.

The output is the ``n_assets + 1`` tokens, cash first, flattened: ``(batch, (n_assets + 1) * token_dim)``.
Any SB3 policy can put its usual MLP heads on it (``EiieSACPolicy``, ``EiieActorCriticPolicy``: the
heads mix the assets, so the policy as a whole is not equivariant). :class:`AssetwiseActorCriticPolicy`
keeps the EIIE structure to the end: one shared head scores every token (the action's logit for that
asset, cash first) and the value is computed from the mean of the tokens, so actions permute with
the assets and the value does not change.

=========================  ============================================================
extractor                  per-asset encoder
=========================  ============================================================
:class:`EiieExtractor`     EIIE's convolution over time (a short kernel, then one that
                           spans the rest of the window)
:class:`AssetMlpExtractor` an MLP over the asset's flattened window
:class:`AssetAttentionExtractor`  an MLP per asset, then self-attention **across the assets**
                           (and cash; no positions, so still equivariant)
=========================  ============================================================

From RL Zoo YAML::

    policy: sb3_crypto.policies.EiieAssetwiseActorCriticPolicy     # PPO, per-asset head
    policy: sb3_crypto.policies.EiieSACPolicy                       # SAC, MLP heads
    policy_kwargs: "dict(features_extractor_class=sb3_crypto.policies.AssetAttentionExtractor)"
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_crypto.envs.base import PortfolioLayout


def _mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, each followed by ``activation``."""
    layers: list[nn.Module] = []
    for size_in, size_out in itertools.pairwise(sizes):
        layers += [nn.Linear(size_in, size_out), activation()]
    return nn.Sequential(*layers)


class PortfolioExtractor(BaseFeaturesExtractor):
    """Base class: splits a portfolio observation into windows, weights and extra values, encodes
    every asset's window with one shared network and returns one token per asset plus one for cash.

    Subclasses set :meth:`encode` (``(batch * n_assets, window_size, n_channels)`` ->
    ``(batch * n_assets, encoded_dim)``) and may override :meth:`interact` (tokens ``(batch,
    n_assets + 1, token_dim)`` -> same shape) to let the assets see each other.

    :param observation_space: a :class:`~sb3_crypto.envs.base.LayoutBox` with a
        :class:`~sb3_crypto.envs.base.PortfolioLayout` (for other Box spaces pass ``n_assets``,
        ``window_size`` and ``n_channels``; the weights are then the next ``n_assets + 1`` values).
    :param token_dim: size of each token (``features_dim`` is ``(n_assets + 1) * token_dim``).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        token_dim: int,
        n_assets: int | None = None,
        window_size: int | None = None,
        n_channels: int | None = None,
    ) -> None:
        name = type(self).__name__
        layout = getattr(observation_space, "layout", None)
        if layout is not None:
            if not isinstance(layout, PortfolioLayout):
                raise ValueError(
                    f"{name}: the observation is a single-asset window ({type(layout).__name__}); this extractor "
                    "is for portfolio observations (several assets' windows). Use WindowMlpExtractor, "
                    "WindowConvExtractor or WindowAttentionExtractor (the Mlp/Conv/Attention policies) for one asset"
                )
            n_assets, window_size, n_channels = layout.n_assets, layout.window_size, layout.n_channels
        if n_assets is None or window_size is None or n_channels is None:
            raise ValueError(
                f"{name}: the observation space has no portfolio layout; pass n_assets, window_size and "
                "n_channels in features_extractor_kwargs"
            )
        n_assets, window_size, n_channels = int(n_assets), int(window_size), int(n_channels)
        if min(n_assets, window_size, n_channels, int(token_dim)) < 1:
            raise ValueError(
                f"{name}: n_assets, window_size, n_channels and token_dim must be >= 1, got "
                f"{n_assets}, {window_size}, {n_channels}, {token_dim}"
            )
        window_dim = n_assets * window_size * n_channels
        shape = observation_space.shape
        if len(shape) != 1 or shape[0] < window_dim + n_assets + 1:
            raise ValueError(
                f"{name}: observation shape {shape} cannot hold {n_assets} windows of {window_size}x{n_channels} "
                f"and {n_assets + 1} weights"
            )
        super().__init__(observation_space, (n_assets + 1) * int(token_dim))
        self.n_assets = n_assets
        self.window_size = window_size
        self.n_channels = n_channels
        self.window_dim = window_dim
        self.token_dim = int(token_dim)
        self.extra_dim = int(shape[0]) - window_dim - (n_assets + 1)

    @property
    def n_slots(self) -> int:
        """Tokens per observation: the assets and cash."""
        return self.n_assets + 1

    def split(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """``(windows (batch, n_assets, window_size, n_channels), weights (batch, n_assets + 1),
        extra (batch, extra_dim))``."""
        windows = observations[:, : self.window_dim].reshape(-1, self.n_assets, self.window_size, self.n_channels)
        weights = observations[:, self.window_dim : self.window_dim + self.n_slots]
        return windows, weights, observations[:, self.window_dim + self.n_slots :]

    def _build_tokens(self, encoded_dim: int) -> None:
        """The cash bias and the shared layer from ``(code, weight, extra)`` to a token; call once
        the encoder's output size is known."""
        self.encoded_dim = int(encoded_dim)
        self.cash_bias = nn.Parameter(th.zeros(self.encoded_dim))
        self.mix = nn.Sequential(nn.Linear(self.encoded_dim + 1 + self.extra_dim, self.token_dim), nn.ReLU())

    def encode(self, windows: th.Tensor) -> th.Tensor:
        """Code of every window, ``(m, window_size, n_channels)`` -> ``(m, encoded_dim)``."""
        raise NotImplementedError

    def interact(self, tokens: th.Tensor) -> th.Tensor:
        """Let the tokens ``(batch, n_assets + 1, token_dim)`` see each other (none by default)."""
        return tokens

    def tokens(self, observations: th.Tensor) -> th.Tensor:
        """The tokens ``(batch, n_assets + 1, token_dim)``, cash first."""
        windows, weights, extra = self.split(observations)
        batch = windows.shape[0]
        codes = self.encode(windows.reshape(batch * self.n_assets, self.window_size, self.n_channels))
        codes = th.cat((self.cash_bias.expand(batch, 1, -1), codes.reshape(batch, self.n_assets, -1)), dim=1)
        parts = [codes, weights.unsqueeze(-1)]
        if self.extra_dim:
            parts.append(extra.unsqueeze(1).expand(-1, self.n_slots, -1))
        return self.interact(self.mix(th.cat(parts, dim=-1)))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.tokens(observations).flatten(1)


class EiieExtractor(PortfolioExtractor):
    """EIIE's convolutional evaluator (Jiang, Xu & Liang 2017), shared by every asset: a convolution
    over time with a short kernel (``maps[0]`` maps), then one whose kernel spans the rest of the
    window (``maps[1]`` maps, one value each), joined with the asset's current weight; cash gets
    the learned cash bias."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        token_dim: int = 32,
        maps: tuple[int, int] = (8, 32),
        kernel: int = 3,
        **layout: int,
    ) -> None:
        super().__init__(observation_space, token_dim, **layout)
        kernel = max(1, min(int(kernel), self.window_size))
        self.encoder = nn.Sequential(
            nn.Conv1d(self.n_channels, maps[0], kernel),
            nn.ReLU(),
            nn.Conv1d(maps[0], maps[1], self.window_size - kernel + 1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self._build_tokens(maps[1])

    def encode(self, windows: th.Tensor) -> th.Tensor:
        return self.encoder(windows.transpose(1, 2))


class AssetMlpExtractor(PortfolioExtractor):
    """An MLP over each asset's flattened window (shared by every asset), joined with its weight."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        token_dim: int = 32,
        hidden: tuple[int, ...] = (64,),
        **layout: int,
    ) -> None:
        super().__init__(observation_space, token_dim, **layout)
        sizes = [self.window_size * self.n_channels, *hidden]
        self.encoder = _mlp(sizes)
        self._build_tokens(sizes[-1])

    def encode(self, windows: th.Tensor) -> th.Tensor:
        return self.encoder(windows.flatten(1))


class AssetAttentionExtractor(AssetMlpExtractor):
    """:class:`AssetMlpExtractor`'s tokens, then self-attention **across the assets** and cash (a
    small Transformer encoder without positions, so the output stays equivariant to the asset
    order): each asset's token can depend on the others' (relative strength, the market factor)."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        token_dim: int = 32,
        hidden: tuple[int, ...] = (64,),
        n_heads: int = 4,
        n_layers: int = 1,
        dropout: float = 0.0,
        **layout: int,
    ) -> None:
        super().__init__(observation_space, token_dim, hidden, **layout)
        layer = nn.TransformerEncoderLayer(
            self.token_dim, n_heads, dim_feedforward=2 * self.token_dim, dropout=dropout, batch_first=True
        )
        self.attention = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def interact(self, tokens: th.Tensor) -> th.Tensor:
        return self.attention(tokens)


class TokenMlp(nn.Module):
    """``net_arch`` of :class:`AssetwiseActorCriticPolicy`: one MLP shared by every token for the
    actor (``latent_dim_pi = n_slots * width``) and one for the critic, whose tokens are averaged
    (``latent_dim_vf = width``), so the value does not depend on the asset order."""

    def __init__(
        self, token_dim: int, n_slots: int, pi: Sequence[int], vf: Sequence[int], activation: type[nn.Module]
    ) -> None:
        super().__init__()
        self.n_slots, self.token_dim = n_slots, token_dim
        self.policy_net = _mlp([token_dim, *pi], activation)
        self.value_net = _mlp([token_dim, *vf], activation)
        self.token_dim_pi = ([token_dim, *pi])[-1]
        self.latent_dim_pi = n_slots * self.token_dim_pi
        self.latent_dim_vf = ([token_dim, *vf])[-1]

    def _tokens(self, features: th.Tensor) -> th.Tensor:
        return features.reshape(-1, self.n_slots, self.token_dim)

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.policy_net(self._tokens(features)).flatten(1)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.value_net(self._tokens(features)).mean(dim=1)


class TokenScore(nn.Module):
    """One linear score per token, shared by every token: ``(batch, n_slots * width)`` ->
    ``(batch, n_slots)`` (the action's logits, cash first)."""

    def __init__(self, width: int, n_slots: int) -> None:
        super().__init__()
        self.n_slots, self.width = n_slots, width
        self.score = nn.Linear(width, 1)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        return self.score(latent.reshape(-1, self.n_slots, self.width)).squeeze(-1)


class AssetwiseActorCriticPolicy(ActorCriticPolicy):
    """PPO / A2C policy that keeps EIIE's structure to the action: the tokens of a
    :class:`PortfolioExtractor` go through one MLP shared by every token (``net_arch['pi']``), and
    one shared linear layer scores each token: the action's logit for that asset (cash first). The
    critic averages its shared MLP's outputs over the tokens (``net_arch['vf']``). The Gaussian's
    log standard deviation is one number for every asset. Permuting the assets in the observation
    permutes the action's mean the same way and leaves the value unchanged.

    The default extractor is :class:`EiieExtractor`; any :class:`PortfolioExtractor` works. The
    action space must be a Box of ``n_assets + 1`` values (the portfolio env's logits).
    """

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space, *args: Any, **kwargs: Any):
        kwargs.setdefault("features_extractor_class", EiieExtractor)
        if kwargs.get("use_sde"):
            raise ValueError(
                f"{type(self).__name__}: use_sde is not supported (per-asset Gaussian head); set use_sde: False"
            )
        super().__init__(observation_space, action_space, *args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        extractor = self.pi_features_extractor
        name = type(self).__name__
        if not isinstance(extractor, PortfolioExtractor):
            raise ValueError(
                f"{name}: features_extractor_class must be a PortfolioExtractor (EiieExtractor, AssetMlpExtractor, "
                f"AssetAttentionExtractor), got {type(extractor).__name__}"
            )
        shape = self.action_space.shape
        if not isinstance(self.action_space, gym.spaces.Box) or shape != (extractor.n_slots,):
            raise ValueError(
                f"{name}: the action space must be a Box of {extractor.n_slots} logits (cash and {extractor.n_assets} "
                f"assets), got {self.action_space}"
            )
        arch = self.net_arch
        pi, vf = (arch.get("pi", []), arch.get("vf", [])) if isinstance(arch, dict) else (arch, arch)
        self.mlp_extractor = TokenMlp(extractor.token_dim, extractor.n_slots, pi, vf, self.activation_fn)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        assert isinstance(self.action_dist, DiagGaussianDistribution)
        extractor = self.pi_features_extractor
        self.action_net = TokenScore(self.mlp_extractor.token_dim_pi, extractor.n_slots)
        self.log_std = nn.Parameter(th.full((1,), float(self.log_std_init)))
        if self.ortho_init:
            self.action_net.apply(lambda module: self.init_weights(module, gain=0.01))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]


__all__ = [
    "AssetAttentionExtractor",
    "AssetMlpExtractor",
    "AssetwiseActorCriticPolicy",
    "EiieExtractor",
    "PortfolioExtractor",
    "TokenMlp",
    "TokenScore",
]
