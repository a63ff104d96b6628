#!/bin/bash
# The boot-time service under a real systemd: a Debian root (Bookworm by default) booted with systemd-nspawn,
# systemd as its PID 1, and inside it, from a clean clone of this repository:
#   1 the installer (--no-picamera2 --with-broker), then the service with a replayed clip as its camera and
#     MQTT (with a password) to the local mosquitto: active only after READY=1, STATUS= updating, events,
#     state and availability on the broker
#   2 the journal has the service's lines and no traceback; systemd-analyze security exposure <= 2.0
#   3 watchdog: a stopped (SIGSTOP) process is killed and restarted within WatchdogSec + RestartSec;
#     "offline" then "online" on MQTT
#   4 a crash loop ends at the start limit with a clear journal line; `systemctl stop` takes under 2 s
#   5 start at boot: powered off, booted again, the service is active with no manual step
#   6 upgrade: the installer again on a newer checkout keeps the edited config and the credentials and
#     restarts the service once
#   7 --uninstall and --uninstall --purge leave nothing behind (user, unit, venv, config, retained MQTT)
# Each step has a deadline; a failure names the step and prints the journal's tail.
#
#   sudo scripts/systemd-test.sh [bookworm|trixie]
#
# Needs root, debootstrap and systemd-nspawn (installed if missing), and the network for apt and pip inside
# the root. The base root is cached in /var/tmp (built once per machine, a few minutes); each run copies it.
# SYSTEMD_TEST_BREAK='sed expression' is applied to the clone's unit first, to show that the test catches it.
# poll takes its condition in single quotes, evaluated at each try (and the variables it reads look unused):
# shellcheck disable=SC2016,SC2034
set -euo pipefail
CODENAME="${1:-bookworm}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${SYSTEMD_TEST_ROOT:-/var/tmp/emotion-edge-systemd-$CODENAME}"
APT_CACHE=/var/tmp/emotion-edge-systemd-apt-$CODENAME
RUN="$(mktemp -d /var/tmp/emotion-edge-systemd-run.XXXXXX)"
T0=$SECONDS
STEP="setup"
NSPID="" LEADER=""
MQ=(-h localhost -u edge -P s3cret)   # the test broker's user

say() { printf '==> [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }
step() { STEP="$*"; say "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() {
    printf 'systemd-test: FAILED at step "%s": %s\n' "$STEP" "$*" >&2
    if [ -n "$LEADER" ] && kill -0 "$LEADER" 2>/dev/null; then
        printf -- '--- journal of emotion-edge.service (last 40 lines) ---\n' >&2
        inroot journalctl -u emotion-edge.service --no-pager -n 40 >&2 || true
    fi
    exit 1
}
# poll SECONDS 'shell condition' 'what was awaited': true as soon as the condition holds, else fail
poll() {
    local limit="$1" cond="$2" what="$3" end=$((SECONDS + $1))
    until eval "$cond"; do
        [ "$SECONDS" -lt "$end" ] || fail "$what: not within ${limit} s"
        sleep 0.5
    done
}
inroot() { nsenter -t "$LEADER" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DEFAULT_TIMEOUT=180 "$@"; }
prop() { inroot systemctl show -p "$1" --value emotion-edge.service; }
# The service's journal, in a file: `journalctl | grep -q` under pipefail fails when grep stops reading early.
journal() { inroot journalctl -u emotion-edge.service -o cat --no-pager > "$RUN.journal"; cat "$RUN.journal"; }
in_journal() { journal > /dev/null; grep -q -- "$1" "$RUN.journal"; }

cleanup() {
    local rc=$?
    if [ -n "$LEADER" ] && kill -0 "$LEADER" 2>/dev/null; then
        inroot systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 40); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.25; done
        kill "$NSPID" 2>/dev/null || true
    fi
    wait "$NSPID" 2>/dev/null || true
    [ -n "${SYSTEMD_TEST_KEEP:-}" ] && { say "kept $RUN"; exit "$rc"; }
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT

boot() {
    systemd-nspawn --keep-unit --register=no --quiet -D "$RUN" -b --console=pipe \
        --bind="$APT_CACHE":/var/cache/apt/archives > "$RUN.console" 2>&1 &
    NSPID=$!
    LEADER=""
    poll 30 'LEADER="$(pgrep -P "$NSPID" | head -n1)"; [ -n "$LEADER" ]' "the container's PID 1"
    poll 90 '[ "$(inroot systemctl is-system-running 2>/dev/null)" = running ] || [ "$(inroot systemctl is-system-running 2>/dev/null)" = degraded ]' \
        "systemd inside the root reaching 'running'"
}

poweroff() {
    inroot systemctl poweroff >/dev/null 2>&1 || true
    poll 60 '! kill -0 "$NSPID" 2>/dev/null' "the container powering off"
    wait "$NSPID" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || { echo "systemd-test: run as root (debootstrap, systemd-nspawn)" >&2; exit 1; }
for tool in debootstrap systemd-nspawn nsenter; do
    command -v "$tool" >/dev/null || { say "installing debootstrap systemd-container";
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap systemd-container >/dev/null; break; }
done
if (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    echo "systemd-test: something on this machine listens on port 1883; the root shares its network and needs it for mosquitto" >&2
    exit 1
fi
mkdir -p "$APT_CACHE"
MIRROR="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
MIRROR="${MIRROR:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
if [ ! -x "$BASE/lib/systemd/systemd" ]; then
    step "debootstrap $CODENAME into $BASE (once per machine)"
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates,git,procps,python3 \
        "$CODENAME" "$BASE.tmp" "$MIRROR" > "$RUN.debootstrap.log" 2>&1 || { tail -20 "$RUN.debootstrap.log"; exit 1; }
    mv "$BASE.tmp" "$BASE"
fi

step "a fresh root from the cached one; a clean clone of this repository in /root/emotion-edge"
cp -a --reflink=auto "$BASE/." "$RUN/"
cp /etc/ssl/certs/ca-certificates.crt "$RUN/etc/ssl/certs/host-ca.crt"
# debootstrap writes no /etc/hosts; an installed system (and Raspberry Pi OS) has one
echo ee-test > "$RUN/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tee-test\n' > "$RUN/etc/hosts"
git clone --quiet "$REPO" "$RUN/root/emotion-edge"
if [ -n "${SYSTEMD_TEST_BREAK:-}" ]; then
    sed -i "$SYSTEMD_TEST_BREAK" "$RUN/root/emotion-edge/deploy/emotion-edge.service"
    say "unit broken on purpose: $SYSTEMD_TEST_BREAK"
fi
CLIP=/usr/local/share/emotion-edge-test/astronaut.avi
mkdir -p "$RUN${CLIP%/*}"
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY=python3
"$PY" -c "import sys; sys.path.insert(0, '$REPO'); from edge.sources.demo import write_demo_video; write_demo_video('$RUN$CLIP', frames=150)"
chmod 0644 "$RUN$CLIP"

step "boot the root (systemd as PID 1)"
boot
ok "systemd $(inroot systemctl --version | head -n1 | cut -d' ' -f2) running, $(inroot sh -c '. /etc/os-release; echo "$PRETTY_NAME"')"

# 1 --------------------------------------------------------------------------------------------------------
step "1 installer from the clean clone (--no-picamera2 --with-broker)"
set +e
inroot bash /root/emotion-edge/deploy/install.sh --no-picamera2 --with-broker > "$RUN.install1" 2>&1
rc=$?
set -e
# No camera in a container: the check's camera line fails and the installer says so, the service is not started.
[ "$rc" = 1 ] || { tail -30 "$RUN.install1"; fail "installer exit $rc, expected 1 (no camera here)"; }
grep -q '^FAIL camera' "$RUN.install1" || { tail -30 "$RUN.install1"; fail "no FAIL camera line"; }
! grep -q '\[ WARN' "$RUN.install1" || fail "OpenCV's own warnings in the installer's output"
inroot sed -n '/^\[mqtt\]/,/^\[/p' /etc/emotion-edge/config.toml | grep '^enabled = true' > /dev/null \
    || fail "--with-broker left [mqtt] enabled = false"
[ "$(prop UnitFileState)" = enabled ] || fail "unit not enabled"
ok "installed in $(grep -c . "$RUN.install1") lines of output; check failed on the camera alone; MQTT on"

step "1 the clip as the camera, a password on the broker, the service started"
inroot sh -c 'printf "listener 1883 127.0.0.1\nallow_anonymous false\npassword_file /etc/mosquitto/passwd\n" > /etc/mosquitto/conf.d/test.conf
    mosquitto_passwd -b -c /etc/mosquitto/passwd edge s3cret && chown mosquitto: /etc/mosquitto/passwd && systemctl restart mosquitto'
inroot sed -i -e "s|^source = \"webcam:0\"|source = \"$CLIP\"|" -e 's|^replay = "recorded"|replay = "live"|' \
    -e 's|^loop = false|loop = true|' -e 's|^username = ""|username = "edge"|' /etc/emotion-edge/config.toml
inroot sh -c 'printf s3cret > /etc/emotion-edge/mqtt-password'
inroot sh -c 'mosquitto_sub -h localhost -u edge -P s3cret -v -t "emotion-edge/+/availability" > /root/availability.log 2>&1 &'
inroot systemctl start emotion-edge.service || fail "systemctl start failed"
[ "$(prop ActiveState)" = active ] || fail "not active after start"
started="$(prop ExecMainStartTimestampMonotonic)" active="$(prop ActiveEnterTimestampMonotonic)"
# Type=notify: active only once READY=1 came, after Python, the model and a first frame (a Type=simple unit
# would be active the moment it forked).
[ $(( (active - started) / 1000 )) -ge 300 ] || fail "active $(( (active - started) / 1000 )) ms after exec: READY=1 not awaited?"
journal > /dev/null
first_log="$(grep -n 'emotion-edge [0-9.]*: ' "$RUN.journal" | head -n1 | cut -d: -f1)"
started_line="$(grep -n '^Started emotion-edge' "$RUN.journal" | head -n1 | cut -d: -f1)"
if [ -z "$first_log" ] || [ -z "$started_line" ] || [ "$first_log" -ge "$started_line" ]; then
    fail "'Started' is not after the service's first line (journal order $first_log / $started_line)"
fi
ok "active $(( (active - started) / 1000 )) ms after exec, after READY=1"
poll 20 '[[ "$(prop StatusText)" == *frames* ]]' "STATUS= with fps and frames"
s1="$(prop StatusText)"
poll 20 '[ "$(prop StatusText)" != "$s1" ]' "STATUS= updating"
ok "StatusText: $(prop StatusText)"
inroot timeout 15 mosquitto_sub "${MQ[@]}" -v -t 'emotion-edge/#' -C 30 > "$RUN.mqtt" 2>&1 || true
for topic in availability state events; do
    grep -q "^emotion-edge/[^/]*/$topic " "$RUN.mqtt" || fail "nothing on emotion-edge/+/$topic (got: $(cut -c1-60 "$RUN.mqtt" | sort -u | head -5 | tr '\n' ' '))"
done
grep -q '/availability online' "$RUN.mqtt" || fail "availability is not online"
ok "events, state and availability (online) on the broker, through a password read from LoadCredential="

# 2 --------------------------------------------------------------------------------------------------------
step "2 the journal and the hardening"
journal > /dev/null
grep -q 'status: ' "$RUN.journal" || fail "no status lines from the service in the journal"
! grep -q 'Traceback' "$RUN.journal" || fail "a traceback in the journal"
exposure="$(inroot systemd-analyze security emotion-edge.service 2>/dev/null | sed -n 's/.*Overall exposure level for emotion-edge.service: \([0-9.]*\).*/\1/p')"
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure $exposure > 2.0"
# The lines the README promises, as systemd applied them (one missing line barely moves the exposure score).
for want in ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes CapabilityBoundingSet= \
        AmbientCapabilities= MemoryDenyWriteExecute=yes RestrictRealtime=yes LockPersonality=yes DevicePolicy=closed \
        ProtectKernelModules=yes ProtectKernelTunables=yes ProtectControlGroups=yes RestrictSUIDSGID=yes User=emotion-edge; do
    got="$(inroot systemctl show -p "${want%%=*}" emotion-edge.service)"
    [ "$got" = "$want" ] || fail "hardening: $want expected, the unit has $got"
done
ok "journal has the service's lines and no traceback; exposure $exposure; the hardening lines in force"

# 3 --------------------------------------------------------------------------------------------------------
step "3 watchdog: a stopped process is killed and restarted"
wd_s="$(inroot systemctl show emotion-edge.service -p WatchdogUSec | sed -n 's/^WatchdogUSec=//p')"
rs_s="$(inroot systemctl show emotion-edge.service -p RestartUSec | sed -n 's/^RestartUSec=//p')"
to_s() { case "$1" in *min*) echo $(( ${1%%min*} * 60 ));; *ms) echo 0;; *s) echo "${1%s}";; 0|infinity|"") echo 0;; *) echo "$1";; esac; }
wd=$(to_s "$wd_s") rs=$(to_s "$rs_s")
[ "$wd" -gt 0 ] || fail "no WatchdogSec on the unit ($wd_s)"
pid="$(prop MainPID)" n0="$(prop NRestarts)"
t=$SECONDS
inroot kill -STOP "$pid"
poll $((wd + rs + 15)) '[ "$(prop NRestarts)" -gt "$n0" ] && [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" != "$pid" ]' \
    "a restart within WatchdogSec ${wd} s + RestartSec ${rs} s"
took=$((SECONDS - t))
in_journal 'Watchdog timeout' || fail "no 'Watchdog timeout' in the journal"
poll 30 'inroot tail -n 1 /root/availability.log | grep "online" > /dev/null' "availability online again"
inroot cat /root/availability.log > "$RUN.avail"
grep -A1000 'offline' "$RUN.avail" | grep online > /dev/null || fail "no offline then online on MQTT ($(tr '\n' ' ' < "$RUN.avail"))"
ok "killed and restarted after ${took} s (WatchdogSec ${wd} + RestartSec ${rs}); MQTT: offline, then online"

# 4 --------------------------------------------------------------------------------------------------------
step "4 systemctl stop, and a crash loop ending at the start limit"
t=$(date +%s%N)
inroot systemctl stop emotion-edge.service
ms=$(( ($(date +%s%N) - t) / 1000000 ))
[ "$ms" -lt 2000 ] || fail "systemctl stop took $ms ms"
poll 10 'inroot tail -n 1 /root/availability.log | grep offline > /dev/null' "a clean offline on stop"
ok "stopped in $ms ms, offline published"
inroot cp /etc/emotion-edge/config.toml /root/config.good
inroot sed -i "s|^source = \".*\"|source = \"/nonexistent/clip.avi\"|" /etc/emotion-edge/config.toml
inroot systemctl start emotion-edge.service >/dev/null 2>&1 || true
# StartLimitBurst counts every start in StartLimitIntervalSec, the watchdog's restart above included.
poll 120 '[ "$(prop ActiveState)" = failed ] && in_journal "Start request repeated too quickly"' \
    "'Start request repeated too quickly' and the unit failed"
in_journal 'nonexistent/clip.avi' || fail "the reason (the missing source) is not in the journal"
ok "failed after $(prop NRestarts) restarts: 'Start request repeated too quickly', the reason in the journal"
inroot cp /root/config.good /etc/emotion-edge/config.toml
inroot systemctl reset-failed emotion-edge.service

# 5 --------------------------------------------------------------------------------------------------------
step "5 start at boot"
poweroff
boot
poll 90 '[ "$(prop ActiveState)" = active ] && [[ "$(prop StatusText)" == *frames* ]]' "the service active and counting frames after boot"
ok "active after boot, $(prop StatusText)"

# 6 --------------------------------------------------------------------------------------------------------
step "6 upgrade: the installer again, on a newer checkout"
inroot sh -c 'echo "# edited by hand" >> /etc/emotion-edge/config.toml'
inroot sh -c 'sha256sum /etc/emotion-edge/config.toml /etc/emotion-edge/mqtt-password' > "$RUN.sums"
inroot git -C /root/emotion-edge -c user.name=test -c user.email=test@example.invalid commit -q --allow-empty -m "a newer version"
inroot sh -c 'mosquitto_sub -h localhost -u edge -P s3cret -v -t "emotion-edge/+/availability" > /root/availability.log 2>&1 &'
since="$(inroot date '+%Y-%m-%d %H:%M:%S')"
sleep 1
inroot bash /root/emotion-edge/deploy/install.sh --no-picamera2 --with-broker > "$RUN.install2" 2>&1 \
    || { tail -30 "$RUN.install2"; fail "the installer failed on an upgrade (its check must read the credentials the unit gives)"; }
inroot sh -c 'sha256sum /etc/emotion-edge/config.toml /etc/emotion-edge/mqtt-password' | cmp -s - "$RUN.sums" \
    || fail "the edited config or the credentials changed"
grep -q 'config.toml was edited: kept' "$RUN.install2" || fail "the installer did not say it kept the config"
inroot journalctl -u emotion-edge.service -o cat --no-pager --since "$since" > "$RUN.journal.upgrade"
starts="$(grep -c '^Started emotion-edge' "$RUN.journal.upgrade" || true)"
[ "$starts" = 1 ] || fail "the service was started $starts times by the upgrade, expected once"
[ "$(prop ActiveState)" = active ] || fail "not active after the upgrade"
ok "config and credentials kept, check ok with the password, the service restarted once"

# 7 --------------------------------------------------------------------------------------------------------
step "7 uninstall, then purge"
inroot bash /root/emotion-edge/deploy/install.sh --uninstall > "$RUN.uninstall" 2>&1 || { cat "$RUN.uninstall"; fail "--uninstall failed"; }
! inroot test -e /etc/systemd/system/emotion-edge.service || fail "the unit is still there"
! inroot test -e /opt/emotion-edge || fail "/opt/emotion-edge is still there"
! inroot getent passwd emotion-edge >/dev/null || fail "the user is still there"
inroot test -e /etc/emotion-edge/config.toml || fail "--uninstall without --purge removed the config"
left="$(inroot timeout 5 mosquitto_sub "${MQ[@]}" -v -t 'emotion-edge/#' -t 'homeassistant/#' --retained-only -W 3 2>/dev/null | grep -c . || true)"
[ "$left" = 0 ] || fail "$left retained MQTT messages left on the broker"
inroot bash /root/emotion-edge/deploy/install.sh --uninstall --purge > "$RUN.purge" 2>&1 || { cat "$RUN.purge"; fail "--purge failed"; }
! inroot test -e /etc/emotion-edge || fail "/etc/emotion-edge is still there after --purge"
ok "unit, venv, user, retained MQTT gone; config kept, then purged"

say "systemd-test: all steps passed ($CODENAME, $((SECONDS - T0)) s)"
