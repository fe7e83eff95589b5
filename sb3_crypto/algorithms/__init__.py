"""The registry of the algorithms the package trains, loads and exports, and the family of a policy.

Names are RL Zoo's (``sac``, ``ppo_lstm``, ``qrdqn``, ...) plus the package's own ``rainbow``,
``d3qn``, ``ppo_mask`` and ``sac_fast``. This is the one place that maps names to classes and policy classes to
families; it does not import ``rl_zoo3`` (the zoo layer copies it into RL Zoo's tables only when
``train``, ``enjoy`` or ``-optimize`` run). Model files are read by :mod:`.model_io`.
"""

from __future__ import annotations

from typing import Any

from sb3_contrib import ARS, QRDQN, TQC, TRPO, CrossQ, MaskablePPO, RecurrentPPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from sb3_contrib.tqc.policies import TQCPolicy
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from sb3_crypto.rainbow import D3QN, RainbowDQN
from sb3_crypto.rainbow.policies import RainbowPolicy
from sb3_crypto.sac import FastSAC, FastSACPolicy

#: Algorithm name -> class: SB3, sb3-contrib (as RL Zoo names them) and the package's own.
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "a2c": A2C,
    "ddpg": DDPG,
    "dqn": DQN,
    "ppo": PPO,
    "sac": SAC,
    "td3": TD3,
    "ars": ARS,
    "crossq": CrossQ,
    "qrdqn": QRDQN,
    "tqc": TQC,
    "trpo": TRPO,
    "ppo_lstm": RecurrentPPO,
    "ppo_mask": MaskablePPO,
    "rainbow": RainbowDQN,
    "d3qn": D3QN,
    "sac_fast": FastSAC,
}

#: The package's own additions to RL Zoo's algorithms.
PACKAGE_ALGORITHMS = ("ppo_mask", "rainbow", "d3qn", "sac_fast")

#: Policy classes only one algorithm of their family trains, most specific first: the saved policy
#: class tells the algorithm (FastSAC's policy is a SACPolicy, so its family, which the export reads,
#: stays ``sac``).
POLICY_ALGORITHMS: tuple[tuple[type, str], ...] = ((FastSACPolicy, "sac_fast"),)

#: Policy base class -> family, most specific first (the recurrent and maskable policies are
#: ``ActorCriticPolicy`` subclasses, Rainbow's is not a ``DQNPolicy``).
POLICY_FAMILIES: tuple[tuple[type, str], ...] = (
    (RainbowPolicy, "rainbow"),
    (QRDQNPolicy, "qrdqn"),
    (DQNPolicy, "dqn"),
    (SACPolicy, "sac"),
    (TQCPolicy, "tqc"),
    (TD3Policy, "td3"),
    (RecurrentActorCriticPolicy, "recurrent"),
    (MaskableActorCriticPolicy, "maskable"),
    (ActorCriticPolicy, "actor_critic"),
)


def policy_family(policy: Any) -> str | None:
    """The family of a policy class or instance (see :data:`POLICY_FAMILIES`); ``None`` if unknown."""
    cls = policy if isinstance(policy, type) else type(policy)
    for base, family in POLICY_FAMILIES:
        if issubclass(cls, base):
            return family
    return None


def algorithm_for_policy(policy_class: type, saved_data: dict[str, Any] | None = None) -> str | None:
    """The algorithm name that trains ``policy_class``; actor-critic policies are PPO when the saved
    data has PPO's ``clip_range``, else A2C. ``None`` when the family is unknown."""
    for base, algo in POLICY_ALGORITHMS:
        if issubclass(policy_class, base):
            return algo
    family = policy_family(policy_class)
    if family == "recurrent":
        return "ppo_lstm"
    if family == "maskable":
        return "ppo_mask"
    if family == "actor_critic":
        return "ppo" if "clip_range" in (saved_data or {}) else "a2c"
    return family


def algorithm_name(model: Any) -> str:
    """The registry's name for a model's algorithm (``dqn``, ``rainbow``, ``ppo_lstm``, ...)."""
    for name, cls in ALGORITHMS.items():
        if type(model) is cls:
            return name
    return type(model).__name__.lower()


__all__ = [
    "ALGORITHMS",
    "PACKAGE_ALGORITHMS",
    "POLICY_ALGORITHMS",
    "POLICY_FAMILIES",
    "algorithm_for_policy",
    "algorithm_name",
    "policy_family",
]
