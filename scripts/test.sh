#!/bin/bash
# Set everything up (venv, test and training extras, mosquitto, shellcheck, chromium), then lint (ruff) and
# run the whole test suite, a worker per core. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check edge model tests scripts
# One worker per core (pytest-xdist): the tests are independent (own brokers on free ports, own temp dirs).
exec .venv/bin/python -m pytest -n auto "$@"
