"""Deprecated path: Gymnasium registration of the package's env ids moved to :mod:`sb3_crypto.envs.registration`.

Kept so that imports and YAML dotted names written for earlier versions keep working; each name is
imported from the new module on first use, with a :class:`DeprecationWarning`.
"""

from sb3_crypto._aliases import moved_module

__getattr__, __dir__ = moved_module(__name__, "sb3_crypto.envs.registration")
