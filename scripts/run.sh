#!/bin/bash
# Set everything up, then run emotion-edge on the default source (the Pi camera, a webcam, or else the
# built-in demo clip), printing one JSON event per frame. Extra arguments go to `emotion-edge run`, e.g.
#   scripts/run.sh --source photo.jpg --annotate out.jpg
# Relative paths are the caller's: it runs from wherever it is called, and writes nothing into the checkout
# but its .venv.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
exec "$REPO/.venv/bin/emotion-edge" run --events - "$@"
