#!/bin/bash
# Set everything up (venv, test and training extras, mosquitto, shellcheck, chromium), then lint (ruff) and
# run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check edge model tests scripts
exec .venv/bin/python -m pytest "$@"
