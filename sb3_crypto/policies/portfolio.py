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
(PPO, A2C) and :class:`AssetwiseSACPolicy` keep the EIIE structure to the end: one shared head scores
every token (the action's logit for that asset, cash first) and the value (PPO) or Q (SAC, from each
token with its own action) is computed from a mean over the tokens, so actions permute with the
assets and the value does not change.

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
    policy: sb3_crypto.policies.EiieAssetwiseSACPolicy              # SAC, per-asset heads
    policy: sb3_crypto.policies.EiieSACPolicy                       # SAC, SB3's MLP heads
    policy_kwargs: "dict(features_extractor_class=sb3_crypto.policies.AssetAttentionExtractor)"
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy, ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from sb3_crypto.envs.base import PortfolioLayout
from sb3_crypto.policies.assetwise_fast import ActorNet, AssetwiseNetworks
from sb3_crypto.sac.policies import KeptModes


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

    def fast_spec(self) -> tuple[str, Sequence[nn.Module]] | None:
        """How :mod:`~sb3_crypto.policies.assetwise_fast` runs the encoder without autograd:
        ``("conv", (first, second))`` (EIIE's two convolutions), ``("mlp", layers)`` (an MLP over the
        flattened window), or ``None`` (no fast path: tokens that interact, another encoder)."""
        if type(self).interact is not PortfolioExtractor.interact or self.encode.__func__ not in _FAST_ENCODERS:  # type: ignore[attr-defined]
            return None
        return self._fast_encoder()

    def _fast_encoder(self) -> tuple[str, Sequence[nn.Module]] | None:
        return None

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

    def _fast_encoder(self) -> tuple[str, Sequence[nn.Module]] | None:
        modules = list(self.encoder)
        kinds = [nn.Conv1d, nn.ReLU, nn.Conv1d, nn.ReLU, nn.Flatten]
        if len(modules) != len(kinds) or any(type(m) is not k for m, k in zip(modules, kinds)):
            return None
        return "conv", (modules[0], modules[2])


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

    def _fast_encoder(self) -> tuple[str, Sequence[nn.Module]] | None:
        return "mlp", list(self.encoder)


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


#: The ``encode`` methods whose modules :meth:`PortfolioExtractor.fast_spec` describes (a subclass
#: with its own ``encode`` gets no fast path).
_FAST_ENCODERS = (EiieExtractor.encode, AssetMlpExtractor.encode)


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
        extractor = _check_assetwise(type(self).__name__, self.pi_features_extractor, self.action_space)
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


class TokenwiseMlp(nn.Module):
    """One MLP applied to every token: ``(batch, n_slots * token_dim)`` -> ``(batch, n_slots * width)``."""

    def __init__(self, token_dim: int, n_slots: int, net_arch: Sequence[int], activation: type[nn.Module]) -> None:
        super().__init__()
        self.n_slots, self.token_dim = n_slots, token_dim
        self.net = _mlp([token_dim, *net_arch], activation)
        self.width = ([token_dim, *net_arch])[-1]

    def forward(self, features: th.Tensor) -> th.Tensor:
        return self.net(features.reshape(-1, self.n_slots, self.token_dim)).flatten(1)


class TokenQ(nn.Module):
    """A Q-network over tokens and per-token actions: one MLP shared by every ``(token_i, a_i)``, the
    mean over the tokens, then a linear output. It reads SB3's critic input ``cat(features, actions)``
    and is invariant to permuting the tokens together with their actions."""

    def __init__(self, token_dim: int, n_slots: int, net_arch: Sequence[int], activation: type[nn.Module]) -> None:
        super().__init__()
        self.n_slots, self.token_dim = n_slots, token_dim
        sizes = [token_dim + 1, *net_arch]
        self.body = _mlp(sizes, activation)
        self.out = nn.Linear(sizes[-1], 1)

    def forward(self, qvalue_input: th.Tensor) -> th.Tensor:
        split = self.n_slots * self.token_dim
        tokens = qvalue_input[:, :split].reshape(-1, self.n_slots, self.token_dim)
        actions = qvalue_input[:, split:].unsqueeze(-1)
        return self.out(self.body(th.cat((tokens, actions), dim=-1)).mean(dim=1))


def _check_assetwise(owner: str, extractor: Any, action_space: gym.spaces.Space) -> PortfolioExtractor:
    """The portfolio extractor and the Box of ``n_assets + 1`` logits a per-asset head needs."""
    if not isinstance(extractor, PortfolioExtractor):
        raise ValueError(
            f"{owner}: features_extractor_class must be a PortfolioExtractor (EiieExtractor, AssetMlpExtractor, "
            f"AssetAttentionExtractor), got {type(extractor).__name__}"
        )
    if not isinstance(action_space, gym.spaces.Box) or action_space.shape != (extractor.n_slots,):
        raise ValueError(
            f"{owner}: the action space must be a Box of {extractor.n_slots} logits (cash and {extractor.n_assets} "
            f"assets), got {action_space}"
        )
    return extractor


class AssetwiseActor(Actor):
    """SAC's actor with EIIE's per-asset head: one MLP shared by every token (``net_arch``), then one
    shared linear layer each for the mean and the log standard deviation of every asset's logit."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        **kwargs: Any,
    ) -> None:
        if use_sde:
            raise ValueError(
                "AssetwiseSACPolicy: use_sde is not supported (per-asset Gaussian head); set use_sde: False"
            )
        super().__init__(
            observation_space,
            action_space,
            net_arch,
            features_extractor,
            features_dim,
            activation_fn,
            use_sde,
            **kwargs,
        )
        extractor = _check_assetwise("AssetwiseSACPolicy", features_extractor, action_space)
        self.latent_pi = TokenwiseMlp(extractor.token_dim, extractor.n_slots, net_arch, activation_fn)
        self.mu = TokenScore(self.latent_pi.width, extractor.n_slots)
        self.log_std = TokenScore(self.latent_pi.width, extractor.n_slots)  # type: ignore[assignment]

    def _acting_net(self) -> ActorNet | None:
        """The tensor version of this actor (:mod:`.assetwise_fast`), kept while the modules stay
        the same; ``None`` when it does not apply."""
        kept = self.__dict__.get("_acting")
        key = tuple(self.parameters())  # (a replaced module or parameter builds it again)
        if kept is None or len(kept[0]) != len(key) or any(a is not b for a, b in zip(kept[0], key)):
            try:
                net = ActorNet(self)
            except ValueError:
                net = None
            kept = self.__dict__["_acting"] = (key, net)
        return kept[1]

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """SB3's ``Actor.forward``; without autograd (acting), the same computation and random draws
        through plain tensors instead of the module tree and distribution objects."""
        if th.is_grad_enabled() or not isinstance(obs, th.Tensor) or self._has_hooks():
            return super().forward(obs, deterministic)
        net = self._acting_net()
        if net is None:
            return super().forward(obs, deterministic)
        return net.act(obs.float().flatten(1), deterministic)

    def _has_hooks(self) -> bool:
        return any(m._forward_hooks or m._forward_pre_hooks for m in self.modules())


class AssetwiseCritic(ContinuousCritic):
    """SAC's critics as :class:`TokenQ` networks: each asset's token with its action through one
    shared MLP (``net_arch``), averaged, so Q does not depend on the order of the assets."""

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space, action_space, net_arch, features_extractor, features_dim, activation_fn, *args, **kwargs
        )
        extractor = _check_assetwise("AssetwiseSACPolicy", features_extractor, action_space)
        self.q_networks = []
        for idx in range(self.n_critics):
            q_net = TokenQ(extractor.token_dim, extractor.n_slots, net_arch, activation_fn)
            self.add_module(f"qf{idx}", q_net)  # replaces the MLP SB3 built under that name
            self.q_networks.append(q_net)


class AssetwiseSACPolicy(KeptModes, SACPolicy):
    """SAC policy with EIIE's structure to the end: the actor scores every asset's token with shared
    layers (:class:`AssetwiseActor`) and the critics average shared per-asset networks over the
    tokens and their actions (:class:`AssetwiseCritic`). Permuting the assets permutes the action's
    mean and standard deviation the same way and leaves Q unchanged. Default extractor:
    :class:`EiieExtractor`; the action space must be the portfolio env's ``n_assets + 1`` logits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", EiieExtractor)
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> Actor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return AssetwiseActor(**actor_kwargs).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> ContinuousCritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return AssetwiseCritic(**critic_kwargs).to(self.device)

    def fast_networks(self) -> AssetwiseNetworks:
        """The actor, critics and targets as tensors with hand-written backward passes, for
        :class:`~sb3_crypto.sac.FastSAC`'s training step; raises ``ValueError`` when they do not
        apply (an attention extractor, other activations, a shared extractor)."""
        return AssetwiseNetworks(self)


__all__ = [
    "AssetAttentionExtractor",
    "AssetMlpExtractor",
    "AssetwiseActor",
    "AssetwiseActorCriticPolicy",
    "AssetwiseCritic",
    "AssetwiseSACPolicy",
    "EiieExtractor",
    "PortfolioExtractor",
    "TokenMlp",
    "TokenQ",
    "TokenScore",
    "TokenwiseMlp",
]
