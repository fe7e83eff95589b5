#!/usr/bin/env bash
# Create .venv (if missing) and install sb3_crypto with the pinned install path (constraints.txt).
# Usage: source-free; called by scripts/demo.sh and scripts/test.sh. EXTRAS=dev adds test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
spec="."
if [ -n "${EXTRAS:-}" ]; then
  spec=".[${EXTRAS}]"
fi
# torch is pinned to the CPU build 2.13.0 here; setup.cfg itself accepts a range.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0 -e "$spec"
