#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole test suite, slow tests included,
# then the Apache Beam tests in .venv-beam (set up if needed, see below).
# The milvus extra installs in .venv (setup.sh test); its tests start a Milvus
# server of their own (tests/fixtures/milvus.py).
#   bash scripts/test.sh [extra pytest args, for the core suite]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The web page's test drives headless Chromium; where it is missing and this
# is a Debian-like system run as root (CI), install it. Without it that one
# test is skipped, or fails where CI=true (CI must run it).
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Installing Chromium for the web page's test (apt-get)..."
  { apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 \
    || echo "note: Chromium could not be installed; the page test will skip" \
      "(or fail, where CI=true)."
fi
status=0
# -rfEs: the reasons of failures, errors and skips; --durations: the slowest
# tests, to keep the `slow` marks honest (tests/conftest.py).
.venv/bin/python -m pytest -n 2 --run-slow -rfEs --durations=25 "$@" \
  || status=$?
# The beam extra pins protobuf<7, which the core install does not take, so
# its tests run in a venv of their own; a failure there fails the script.
echo "Apache Beam tests (.venv-beam):"
if [ ! -x .venv-beam/bin/python ]; then
  python3.11 -m venv .venv-beam 2>/dev/null || python3 -m venv .venv-beam
fi
if ! .venv-beam/bin/python -m pip install --quiet -e ".[test,beam]" \
    >.venv-beam/install.log 2>&1; then
  cat .venv-beam/install.log
  exit 1
fi
.venv-beam/bin/python -m pytest -q -rfEs \
  tests/retrieval/test_beam_embedding.py || exit $?
exit "$status"
