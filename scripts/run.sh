#!/bin/bash
# Set everything up, then run emotion-edge on the default source (the Pi camera, a webcam,
# or else the built-in demo clip), printing one JSON event per frame. Extra arguments go to
# `emotion-edge run`, e.g. scripts/run.sh --source photo.jpg --annotate out.jpg
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/emotion-edge run --events - "$@"
