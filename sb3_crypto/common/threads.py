"""Small shared helpers."""

from __future__ import annotations

import os

#: Environment variable overriding the torch thread count the package's entry points set.
THREADS_ENV = "SB3_CRYPTO_THREADS"


def configure_threads(n_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default 1, or ``$SB3_CRYPTO_THREADS``); returns the number set.

    Measured on a 2-core machine: SAC with small MLPs runs as fast on 1 thread as on 2 when the
    machine is idle, and two threads become many times slower as soon as another process (an env
    worker, a second trial) is busy. One thread is the safe default; raise it for large networks.
    """
    import torch as th

    if n_threads is None:
        n_threads = int(os.environ.get(THREADS_ENV, "1"))
    if n_threads > 0:
        th.set_num_threads(n_threads)
    return th.get_num_threads()
