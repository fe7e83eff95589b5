#!/usr/bin/env bash
# Install sb3_crypto with its dev extra (pinned install path) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=dev bash scripts/setup_env.sh
export SB3_CRYPTO_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/python -m ruff check .
.venv/bin/lint-imports  # the one-way layers and no import cycles (contracts in pyproject.toml)
.venv/bin/python -m pytest -n 2 --durations=15 "$@"
