"""Trading environments over one shared accounting core (:class:`Ledger`)."""

from sb3_crypto.envs.base import MarketEnv, ObservationLayout
from sb3_crypto.envs.ledger import Fill, Ledger
from sb3_crypto.envs.portfolio import CryptoPortfolioEnv
from sb3_crypto.envs.rewards import REWARD_MODES, S2_REWARD_WEIGHTS, MultiComponentReward
from sb3_crypto.envs.trading import CryptoTradingEnv

__all__ = [
    "REWARD_MODES",
    "S2_REWARD_WEIGHTS",
    "CryptoPortfolioEnv",
    "CryptoTradingEnv",
    "Fill",
    "Ledger",
    "MarketEnv",
    "MultiComponentReward",
    "ObservationLayout",
]
