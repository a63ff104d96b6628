#!/bin/bash
# Set everything up (venv, test and training extras, mosquitto, shellcheck, chromium), then lint (ruff),
# run the whole test suite, a worker per core, and the systemd test. Extra arguments go to pytest (and leave
# the systemd test out).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test: first time, installs with apt (sudo): mosquitto, shellcheck, chromium, libcap-dev, debootstrap and" \
     "systemd-container; and a .venv of about 2 GB (TensorFlow for the training tests, the real picamera2)" >&2
scripts/setup.sh --test
.venv/bin/ruff check edge model tests scripts
# One worker per core (pytest-xdist): the tests are independent (own brokers on free ports, own temp dirs).
.venv/bin/python -m pytest -n auto "$@"
# The installer and the unit under a real systemd (a Debian root booted with systemd-nspawn): it needs root,
# debootstrap and a few minutes (the root is cached in /var/tmp after the first run). Extra arguments mean a
# developer running part of the suite: then it is left out.
if [ $# -eq 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        scripts/systemd-test.sh
    else
        echo "test: scripts/systemd-test.sh skipped: it needs root (sudo scripts/systemd-test.sh)" >&2
        [ -z "${CI:-}" ] || exit 1
    fi
fi
