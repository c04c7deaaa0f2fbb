#!/usr/bin/env bash
# Set up, then run the whole test suite in parallel (extra args go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest -n auto "$@"
