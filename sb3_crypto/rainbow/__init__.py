"""Rainbow-family DQN: :class:`RainbowDQN`, the :class:`D3QN` preset, policies and noisy layers."""

from sb3_crypto.rainbow.network import noise_off
from sb3_crypto.rainbow.policies import MlpPolicy, NoisyLinear, RainbowPolicy, RainbowQNetwork
from sb3_crypto.rainbow.rainbow import D3QN, RainbowDQN, project_distribution

__all__ = [
    "D3QN",
    "MlpPolicy",
    "NoisyLinear",
    "RainbowDQN",
    "RainbowPolicy",
    "RainbowQNetwork",
    "noise_off",
    "project_distribution",
]
