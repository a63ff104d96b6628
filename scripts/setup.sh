#!/bin/bash
# Set up a development/CI machine: a venv in .venv with emotion-edge installed (editable).
#   scripts/setup.sh          runtime + demo clip (enough for `emotion-edge run`)
#   scripts/setup.sh --test   + test tools, TensorFlow for training, and the system packages
#                              the tests drive for real (mosquitto, shellcheck, chromium)
# On a Raspberry Pi use deploy/install.sh instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "setup: Python 3.11 or newer is needed (found $("$PY" -V 2>&1))" >&2; exit 1; }

if [ "$WITH_TEST" = 1 ]; then
    missing=()
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    command -v mosquitto_passwd >/dev/null || missing+=(mosquitto)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    # picamera2 (tested for real) needs python-prctl, which builds against libcap's headers
    [ -e /usr/include/sys/capability.h ] || missing+=(libcap-dev)
    # scripts/systemd-test.sh: a Debian root booted under systemd-nspawn
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing system packages: ${missing[*]}" >&2
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PY" -m venv .venv
fi
extras=""
[ "$WITH_TEST" = 1 ] && extras="[test,train]"
stamp=".venv/.installed$extras-$(sha256sum pyproject.toml | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    echo "setup: installing emotion-edge$extras into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e ".$extras" >&2
    touch "$stamp"
fi
