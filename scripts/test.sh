#!/bin/bash
# Set everything up (venv, test and training extras, mosquitto, shellcheck, chromium), then run
# the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
