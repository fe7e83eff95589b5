"""Fast SAC: SB3's SAC with a training step without autograd (:class:`FastSAC`), its policy and the
packed replay buffer."""

from sb3_crypto.sac.buffers import PackedReplayBuffer
from sb3_crypto.sac.policies import FastActor, FastSACPolicy, MlpPolicy
from sb3_crypto.sac.sac import FastSAC

__all__ = ["FastActor", "FastSAC", "FastSACPolicy", "MlpPolicy", "PackedReplayBuffer"]
