#!/usr/bin/env bash
# Creates .venv with beau_tf and its dependencies (idempotent). Usage:
#   bash scripts/setup.sh          # runtime only
#   bash scripts/setup.sh test     # plus the test dependencies and the
#                                  # optional extras the tests cover (openvino;
#                                  # milvus: client, server, milvus-lite)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$extra" = "test" ]; then
  .venv/bin/python -m pip install --quiet -e ".[test,openvino,milvus]"
else
  .venv/bin/python -m pip install --quiet -e .
fi
