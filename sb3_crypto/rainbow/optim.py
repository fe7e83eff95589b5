"""Adam steps over kept tensor lists: :class:`_AdamSteps` lives in :mod:`sb3_crypto.common.optim`
(shared with the fast SAC); this module keeps the name importable from its first home."""

from sb3_crypto.common.optim import _AdamSteps

__all__ = ["_AdamSteps"]
