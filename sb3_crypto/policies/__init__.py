"""Window feature extractors and policies that use them, importable by dotted name.

RL Zoo YAML can name a policy directly, with no ``eval``'d class names in ``policy_kwargs``::

    policy: sb3_crypto.policies.ConvMaskablePolicy

Every policy here is an SB3 / sb3-contrib policy whose default ``features_extractor_class`` is one
of the window extractors (``Mlp``, ``Conv`` = S3's convolution, ``Attention``); everything else,
including ``net_arch`` and ``features_extractor_kwargs``, works as in the base class. Because the
extractor is the policy's default, RL Zoo's Optuna samplers (which replace ``policy_kwargs``) keep it.

The portfolio env (``CryptoPortfolio-v0``, several assets) has its own extractors, shared across
assets (:mod:`.portfolio`: ``Eiie``, ``AssetMlp``, ``AssetAttention``), with the bases
``ActorCriticPolicy`` (PPO, A2C), ``SACPolicy``, and ``AssetwiseActorCriticPolicy`` /
``AssetwiseSACPolicy`` (EIIE's per-asset heads: actions permute with the assets): ``EiieSACPolicy``,
``EiieAssetwiseActorCriticPolicy``, ``EiieAssetwiseSACPolicy``, ``AssetAttentionActorCriticPolicy``, ...

=======================  ====================================================  ===================
name suffix              base class                                            algorithms
=======================  ====================================================  ===================
``DQNPolicy``            ``stable_baselines3.dqn.policies.DQNPolicy``          DQN
``QRDQNPolicy``          ``sb3_contrib.qrdqn.policies.QRDQNPolicy``            QR-DQN
``ActorCriticPolicy``    ``stable_baselines3.common.policies.ActorCriticPolicy`` PPO, A2C
``MaskablePolicy``       ``sb3_contrib`` ``MaskableActorCriticPolicy``         MaskablePPO
``LstmPolicy``           ``sb3_contrib`` ``RecurrentActorCriticPolicy``        RecurrentPPO
``SACPolicy``            ``stable_baselines3.sac.policies.SACPolicy``          SAC
``RainbowPolicy``        ``sb3_crypto.rainbow.RainbowPolicy``                  RainbowDQN, D3QN
=======================  ====================================================  ===================
"""

from __future__ import annotations

from typing import Any

from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy

from sb3_crypto.policies.extractors import (
    WindowAttentionExtractor,
    WindowConvExtractor,
    WindowExtractor,
    WindowMlpExtractor,
)
from sb3_crypto.policies.portfolio import (
    AssetAttentionExtractor,
    AssetMlpExtractor,
    AssetwiseActorCriticPolicy,
    AssetwiseSACPolicy,
    EiieExtractor,
    PortfolioExtractor,
)
from sb3_crypto.rainbow.policies import RainbowPolicy

EXTRACTORS = {"Mlp": WindowMlpExtractor, "Conv": WindowConvExtractor, "Attention": WindowAttentionExtractor}
BASES = {
    "DQNPolicy": DQNPolicy,
    "QRDQNPolicy": QRDQNPolicy,
    "ActorCriticPolicy": ActorCriticPolicy,
    "MaskablePolicy": MaskableActorCriticPolicy,
    "LstmPolicy": RecurrentActorCriticPolicy,
    "SACPolicy": SACPolicy,
    "RainbowPolicy": RainbowPolicy,
}


def with_extractor(base: type, extractor: type, name: str) -> type:
    """A subclass of ``base`` whose default ``features_extractor_class`` is ``extractor``."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", extractor)
        base.__init__(self, *args, **kwargs)

    doc = f"{base.__name__} with :class:`{extractor.__name__}` as the default features extractor."
    return type(name, (base,), {"__init__": __init__, "__module__": __name__, "__doc__": doc})


#: Extractors of the portfolio env (several assets' windows, :mod:`.portfolio`).
PORTFOLIO_EXTRACTORS = {"Eiie": EiieExtractor, "AssetMlp": AssetMlpExtractor, "AssetAttention": AssetAttentionExtractor}
#: Policy bases for the portfolio env's Box action (``AssetwiseActorCriticPolicy``: EIIE's per-asset head).
PORTFOLIO_BASES = {
    "ActorCriticPolicy": ActorCriticPolicy,
    "SACPolicy": SACPolicy,
    "AssetwiseActorCriticPolicy": AssetwiseActorCriticPolicy,
    "AssetwiseSACPolicy": AssetwiseSACPolicy,
}

POLICIES: dict[str, type] = {}
for _extractors, _bases in ((EXTRACTORS, BASES), (PORTFOLIO_EXTRACTORS, PORTFOLIO_BASES)):
    for _prefix, _extractor in _extractors.items():
        for _suffix, _base in _bases.items():
            _name = f"{_prefix}{_suffix}"
            POLICIES[_name] = globals()[_name] = with_extractor(_base, _extractor, _name)

__all__ = [
    "EXTRACTORS",
    "PORTFOLIO_BASES",
    "PORTFOLIO_EXTRACTORS",
    "POLICIES",
    "AssetAttentionExtractor",
    "AssetMlpExtractor",
    "AssetwiseActorCriticPolicy",
    "AssetwiseSACPolicy",
    "EiieExtractor",
    "PortfolioExtractor",
    "WindowAttentionExtractor",
    "WindowConvExtractor",
    "WindowExtractor",
    "WindowMlpExtractor",
    "with_extractor",
    *POLICIES,
]
