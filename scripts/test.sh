#!/usr/bin/env bash
# Install, then run the whole test suite: unit tests of genrec_lib, a render check of the
# book, nbval over every notebook (each checks itself with assert cells), and the checks on
# the results files the notebooks wrote. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${PYTHON:-python3}" -m pytest "$@"
