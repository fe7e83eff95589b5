"""``python -m sb3_crypto.enjoy``: RL Zoo's ``enjoy`` with the package's algorithms and envs registered.

Needed for algorithms RL Zoo does not ship (``ppo_mask``); accepts every ``rl_zoo3.enjoy`` option.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Run RL Zoo's enjoy with ``--gym-packages sb3_crypto`` and one torch thread by default."""
    import rl_zoo3.enjoy

    import sb3_crypto  # noqa: F401  (registers env ids)
    from sb3_crypto.zoo import install
    from sb3_crypto.zoo.cli import run_with_argv, with_defaults

    install()
    run_with_argv(rl_zoo3.enjoy.enjoy, with_defaults(sys.argv[1:] if argv is None else argv, config=False))


if __name__ == "__main__":
    main()
