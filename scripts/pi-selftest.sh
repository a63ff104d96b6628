#!/bin/bash
# On a Raspberry Pi after deploy/install.sh: the self-test, with the service's own config and user.
# It needs the camera, so the service is paused meanwhile and started again after (one process per camera).
# Paste the output into a bug report. Extra arguments go to `emotion-edge check --full`.
set -uo pipefail
EXE=/opt/emotion-edge/venv/bin/emotion-edge
CONFIG=/etc/emotion-edge/config.toml
if [ ! -x "$EXE" ]; then
    echo "pi-selftest: $EXE not found: run deploy/install.sh first (or: emotion-edge check --full)" >&2
    exit 1
fi
was_active=0
if systemctl is-active --quiet emotion-edge.service 2>/dev/null; then
    was_active=1
    sudo systemctl stop emotion-edge.service
fi
# As the service runs: its user, groups and credentials (the MQTT password reaches it only through
# systemd's LoadCredential=, in $CREDENTIALS_DIRECTORY).
sudo systemd-run --quiet --pipe --wait --collect --service-type=exec \
    -p User=emotion-edge -p Group=emotion-edge -p SupplementaryGroups="video render" \
    -p LoadCredential=mqtt-password:/etc/emotion-edge/mqtt-password \
    -p LoadCredential=http-password:/etc/emotion-edge/http-password \
    -E PYTHONUNBUFFERED=1 -- "$EXE" check --full --config "$CONFIG" "$@"
rc=$?
[ "$was_active" = 1 ] && sudo systemctl start emotion-edge.service
exit $rc
