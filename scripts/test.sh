#!/usr/bin/env bash
# Sets up .venv (if needed) and runs the whole test suite, slow tests included.
#   bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest -n 2 --run-slow "$@"
