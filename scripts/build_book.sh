#!/usr/bin/env bash
# Install, then build the whole book to HTML (_build/html), executing every notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
jupyter-book build . --builder html "$@"
echo "Built: $(pwd)/_build/html/index.html"
