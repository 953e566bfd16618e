#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole test suite, slow tests included.
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The web page's test drives headless Chromium; where it is missing and this
# is a Debian-like system run as root (CI), install it. Without it that one
# test is skipped, so a failed install does not stop the suite.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing Chromium for the web page's test (apt-get)..."
  { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 \
    || echo "note: Chromium could not be installed; the page test will skip."
fi
exec .venv/bin/python -m pytest -n 2 --run-slow "$@"
