"""Feature extractors over the observation window.

Each extractor reads the window shape from the environment's declared layout (the
:class:`~sb3_crypto.envs.base.LayoutBox` observation space carries it as ``.layout``), splits the flat
observation into the ``(window_size, channels)`` window and the rest (account features, action
history), encodes the window and concatenates the rest before a last linear layer. For spaces
without a layout pass ``window_size`` and ``n_channels`` in ``features_extractor_kwargs``. A portfolio
observation (:class:`~sb3_crypto.envs.base.PortfolioLayout`, several assets' windows) is refused:
:mod:`sb3_crypto.policies.portfolio` has the extractors for it.

They work as ``features_extractor_class`` of every SB3 / sb3-contrib policy (DQN, QR-DQN, PPO,
MaskablePPO, RecurrentPPO, SAC, the package's Rainbow DQN).
"""

from __future__ import annotations

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_crypto.envs.base import PortfolioLayout


class WindowExtractor(BaseFeaturesExtractor):
    """Base class: finds the window block and splits observations into ``(window, rest)``."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int,
        window_size: int | None = None,
        n_channels: int | None = None,
    ) -> None:
        super().__init__(observation_space, features_dim)
        layout = getattr(observation_space, "layout", None)
        if isinstance(layout, PortfolioLayout):
            raise ValueError(
                f"{type(self).__name__}: the observation holds {layout.n_assets} assets' windows (a portfolio env); "
                "this extractor reads one window. Use a portfolio extractor: EiieExtractor, AssetMlpExtractor or "
                "AssetAttentionExtractor (policies EiieSACPolicy, EiieAssetwiseActorCriticPolicy, ...)"
            )
        if layout is not None:
            window_size, n_channels = layout.window_size, layout.n_channels
        if window_size is None or n_channels is None:
            raise ValueError(
                f"{type(self).__name__}: the observation space has no layout; pass window_size and n_channels "
                "in features_extractor_kwargs"
            )
        if len(observation_space.shape) != 1 or observation_space.shape[0] < window_size * n_channels:
            raise ValueError(
                f"{type(self).__name__}: observation shape {observation_space.shape} cannot hold a "
                f"{window_size}x{n_channels} window"
            )
        self.window_size = int(window_size)
        self.n_channels = int(n_channels)
        self.window_dim = self.window_size * self.n_channels
        self.rest_dim = int(observation_space.shape[0]) - self.window_dim

    def split(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``(window (batch, window_size, channels), rest (batch, rest_dim))``."""
        window = observations[:, : self.window_dim].reshape(-1, self.window_size, self.n_channels)
        return window, observations[:, self.window_dim :]

    def _head(self, encoded_dim: int, features_dim: int, dropout: float) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Linear(encoded_dim + self.rest_dim, features_dim), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        return nn.Sequential(*layers)


class WindowMlpExtractor(WindowExtractor):
    """An MLP over the flattened window; the account features join before the last layer."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 128,
        hidden: tuple[int, ...] = (256, 128),
        dropout: float = 0.0,
        **layout: int,
    ) -> None:
        super().__init__(observation_space, features_dim, **layout)
        layers: list[nn.Module] = []
        size = self.window_dim
        for width in hidden:
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.encoder = nn.Sequential(*layers)
        self.head = self._head(size, features_dim, dropout)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        window, rest = self.split(observations)
        return self.head(th.cat((self.encoder(window.flatten(1)), rest), dim=1))


class WindowConvExtractor(WindowExtractor):
    """Reference system S3's convolution over time: 32 / 64 / 128 maps, kernels 7 / 5 / 3, strides
    2 / 1 / 1 (zero-padded, so any window length works), flattened and joined with the account
    features, then ``features_dim`` units with optional dropout (S3: 0.1)."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 256,
        maps: tuple[int, int, int] = (32, 64, 128),
        kernels: tuple[int, int, int] = (7, 5, 3),
        strides: tuple[int, int, int] = (2, 1, 1),
        dropout: float = 0.0,
        **layout: int,
    ) -> None:
        super().__init__(observation_space, features_dim, **layout)
        layers: list[nn.Module] = []
        channels = self.n_channels
        for width, kernel, stride in zip(maps, kernels, strides):
            layers += [nn.Conv1d(channels, width, kernel, stride=stride, padding=kernel // 2), nn.ReLU()]
            channels = width
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        with th.no_grad():
            encoded = self.encoder(th.zeros(1, self.n_channels, self.window_size)).shape[1]
        self.head = self._head(encoded, features_dim, dropout)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        window, rest = self.split(observations)
        return self.head(th.cat((self.encoder(window.transpose(1, 2)), rest), dim=1))


class WindowAttentionExtractor(WindowExtractor):
    """Self-attention over the bars of the window (a small Transformer encoder with learned
    positions); the mean over bars and the latest bar's encoding join the account features."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 128,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 1,
        dropout: float = 0.0,
        **layout: int,
    ) -> None:
        super().__init__(observation_space, features_dim, **layout)
        self.embed = nn.Linear(self.n_channels, d_model)
        self.position = nn.Parameter(th.zeros(1, self.window_size, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = self._head(2 * d_model, features_dim, dropout)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        window, rest = self.split(observations)
        encoded = self.encoder(self.embed(window) + self.position)
        summary = th.cat((encoded.mean(dim=1), encoded[:, -1]), dim=1)
        return self.head(th.cat((summary, rest), dim=1))
