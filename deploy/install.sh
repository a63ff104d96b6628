#!/bin/bash
# Install emotion-edge as a boot-time service on Raspberry Pi OS (Bookworm or Trixie, 64- or 32-bit).
#
#   sudo deploy/install.sh                 install or upgrade, enable, start, run `emotion-edge check`
#   sudo deploy/install.sh --with-broker   also install a local mosquitto broker
#   sudo deploy/install.sh --no-picamera2  without the Pi camera stack: a USB webcam or an RTSP stream
#   deploy/install.sh --dry-run            print every step, change nothing
#   sudo deploy/install.sh --uninstall     remove what was added (keeps /etc/emotion-edge)
#   sudo deploy/install.sh --uninstall --purge   ... and the configuration too
#
# Safe to run again: every step checks before it acts, and an edited config is never overwritten.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${EMOTION_EDGE_ROOT:-}"          # a prefix for every path (tests install into a temporary root)
SERVICE_USER=emotion-edge
PREFIX=/opt/emotion-edge
VENV="$PREFIX/venv"
ETC=/etc/emotion-edge
UNIT=/etc/systemd/system/emotion-edge.service

DRY_RUN=0 UNINSTALL=0 PURGE=0 WITH_BROKER=0 START=1 CHECK_OK=1 PICAMERA2=1
ARCH_OVERRIDE="" CODENAME_OVERRIDE=""

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --with-broker) WITH_BROKER=1 ;;
        --no-start) START=0 ;;
        --no-picamera2) PICAMERA2=0 ;;
        --arch) ARCH_OVERRIDE="${2:?--arch needs a value}"; shift ;;
        --codename) CODENAME_OVERRIDE="${2:?--codename needs a value}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# systemctl for a running systemd; in a chroot or a container without it (the arm64 test roots), what needs
# the manager is skipped with a note. Enabling works either way: it only makes links.
sysctl() {
    if [ "$DRY_RUN" = 1 ] || [ -d /run/systemd/system ] || [ "$1" = enable ] || [ "$1" = disable ]; then
        run systemctl "$@"
    else
        say "systemd is not running here (a chroot?): skipped systemctl $*"
    fi
}

# Run a command, or print it in --dry-run mode.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '    + %s\n' "$*"
    else
        "$@"
    fi
}

# Install a repository file at DEST with MODE; in --dry-run print its digest so a test can
# check that what would be written is exactly the repository's file.
put_file() {
    local src="$1" dest="$ROOT$2" mode="$3"
    local sum
    sum="$(sha256sum "$src" | cut -d' ' -f1)"
    if [ "$DRY_RUN" = 1 ]; then
        printf '    write %s (mode %s, sha256 %s, from %s)\n' "$2" "$mode" "$sum" "${src#"$REPO"/}"
    else
        install -D -m "$mode" "$src" "$dest"
    fi
}

detect_platform() {
    local os_release="$ROOT/etc/os-release"
    CODENAME="$CODENAME_OVERRIDE"
    OS_NAME="Debian"
    if [ -r "$os_release" ]; then
        [ -n "$CODENAME" ] || CODENAME="$(sed -n 's/^VERSION_CODENAME=//p' "$os_release" | tr -d '"' | head -n1)"
        OS_NAME="$(sed -n 's/^PRETTY_NAME=//p' "$os_release" | tr -d '"' | head -n1)"
        OS_NAME="${OS_NAME:-Debian}"
    fi
    # The userland's architecture, not the kernel's: 32-bit Raspberry Pi OS on a Pi 4/5 runs a 64-bit
    # kernel, so uname -m says aarch64 while every binary and wheel must be armhf.
    ARCH="${ARCH_OVERRIDE:-$(dpkg --print-architecture 2>/dev/null || uname -m)}"
    case "$ARCH" in
        aarch64|arm64) ARCH=aarch64; BITS=64 ;;
        armv7l|armv6l|armhf) ARCH=armv7l; BITS=32 ;;
        x86_64|amd64) ARCH=x86_64; BITS=64 ;;
        *) die "unsupported CPU architecture $ARCH" ;;
    esac
    case "$CODENAME" in
        bookworm) PYVER=3.11 ;;
        trixie) PYVER=3.13 ;;
        *) die "unsupported OS release '${CODENAME:-unknown}': Raspberry Pi OS Bookworm or Trixie is needed" ;;
    esac
    if [ "$BITS" = 32 ]; then
        # ai-edge-litert has no 32-bit ARM wheel; tflite-runtime stops at Python 3.11.
        [ "$PYVER" = 3.11 ] || die "32-bit $CODENAME has Python $PYVER, for which no TFLite runtime wheel exists; use 64-bit Raspberry Pi OS"
        RUNTIME="tflite-runtime"
    else
        RUNTIME="ai-edge-litert"
    fi
    say "platform: $OS_NAME ($CODENAME), $BITS-bit userland ($ARCH), Python $PYVER, TFLite runtime $RUNTIME"
}

apt_packages() {
    # picamera2 and systemd bindings come from apt (they need libcamera and libsystemd);
    # the venv sees them through --system-site-packages.
    local pkgs=(python3-venv python3-pip python3-systemd python3-numpy)
    [ "$PICAMERA2" = 1 ] && pkgs+=(python3-picamera2)
    [ "$WITH_BROKER" = 1 ] && pkgs+=(mosquitto mosquitto-clients)
    say "apt packages: ${pkgs[*]}"
    run apt-get update
    if [ "$PICAMERA2" = 1 ] && [ "$DRY_RUN" = 0 ] && \
            ! apt-cache policy python3-picamera2 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        die "python3-picamera2 is not in this system's apt sources (Raspberry Pi OS has it; plain Debian does not). For a USB webcam or an RTSP stream instead: sudo deploy/install.sh --no-picamera2"
    fi
    [ "$PICAMERA2" = 1 ] || say "without python3-picamera2 (--no-picamera2): for a USB webcam or an RTSP stream"
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
}

service_user() {
    if getent passwd "$SERVICE_USER" >/dev/null 2>&1 && [ "$DRY_RUN" = 0 ]; then
        say "user $SERVICE_USER exists"
    else
        say "create system user $SERVICE_USER"
        run useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    fi
    # The unit names both groups (SupplementaryGroups=): systemd refuses to start it (216/GROUP) when one
    # is missing, as render is on a Debian without udev.
    local g
    for g in video render; do
        if ! getent group "$g" >/dev/null 2>&1 && [ "$DRY_RUN" = 0 ]; then
            say "create system group $g"
            run groupadd --system "$g"
        fi
        run usermod -a -G "$g" "$SERVICE_USER"
    done
}

python_env() {
    say "virtual environment $VENV (with system site packages, for apt's picamera2)"
    if [ -x "$ROOT$VENV/bin/python" ] && [ "$DRY_RUN" = 0 ]; then
        say "venv exists; upgrading in place"
    else
        run python3 -m venv --system-site-packages "$ROOT$VENV"
    fi
    # The venv keeps the distribution's numpy (Bookworm 1.24, Trixie 2.x): apt's picamera2 and simplejpeg
    # are built against it, so pip is held to exactly that version.
    local np_version constraints
    np_version="$(python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null || echo "")"
    constraints="$(mktemp)"
    if [ -n "$np_version" ]; then
        say "numpy: keeping the system's $np_version"
        echo "numpy==$np_version" > "$constraints"
    fi
    # Built from a copy: pip would otherwise leave root-owned build/ and *.egg-info/ in the user's checkout,
    # and stale files there could leak into a later upgrade.
    local src
    src="$(mktemp -d)"
    if [ "$DRY_RUN" = 1 ]; then
        printf '    + copy %s (without .git, .venv, build/, *.egg-info) to %s\n' "$REPO" "$src"
    else
        tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' -cf - . | tar -C "$src" -xf -
    fi
    run "$ROOT$VENV/bin/pip" install --upgrade --no-cache-dir --constraint "$constraints" "$src" "$RUNTIME"
    rm -rf "$constraints" "$src"
    # The service's venv must import the system's numpy together with apt's picamera2 and OpenCV.
    local imports="import numpy, cv2"
    [ "$PICAMERA2" = 1 ] && imports="$imports, picamera2"
    run "$ROOT$VENV/bin/python" -c "$imports; print('imports ok: numpy', numpy.__version__, 'OpenCV', cv2.__version__)"
}

config_files() {
    say "configuration in $ETC"
    run install -d -m 0755 "$ROOT$ETC"
    if [ -e "$ROOT$ETC/config.toml" ]; then
        if cmp -s "$REPO/deploy/config.toml" "$ROOT$ETC/config.toml"; then
            say "config.toml is current"
        else
            say "config.toml was edited: kept; the shipped defaults go to config.toml.dist"
            put_file "$REPO/deploy/config.toml" "$ETC/config.toml.dist" 0644
        fi
    else
        put_file "$REPO/deploy/config.toml" "$ETC/config.toml" 0644
        if [ "$PICAMERA2" = 0 ]; then
            say "[camera] source = \"webcam:0\" (--no-picamera2; an RTSP URL works there too)"
            run sed -i 's|^source = "auto"|source = "webcam:0"|' "$ROOT$ETC/config.toml"
        fi
        if [ "$WITH_BROKER" = 1 ]; then
            say "[mqtt] enabled = true, host = \"localhost\" (--with-broker: events go to the local mosquitto)"
            run sed -i '/^\[mqtt\]/,/^\[/ s|^enabled = false|enabled = true|' "$ROOT$ETC/config.toml"
        fi
    fi
    if [ "$WITH_BROKER" = 1 ] && [ "$DRY_RUN" = 0 ] && \
            ! sed -n '/^\[mqtt\]/,/^\[/p' "$ROOT$ETC/config.toml" | grep -q '^enabled = true'; then
        say "note: your config.toml (kept) has MQTT off: set [mqtt] enabled = true and host = \"localhost\" there for the local broker, then: sudo systemctl restart emotion-edge"
    fi
    # LoadCredential= needs the files to exist; an empty one means "no password".
    for secret in mqtt-password http-password; do
        if [ ! -e "$ROOT$ETC/$secret" ]; then
            run install -m 0600 -o root -g root /dev/null "$ROOT$ETC/$secret"
        fi
    done
}

unit_file() {
    say "systemd unit $UNIT"
    put_file "$REPO/deploy/emotion-edge.service" "$UNIT" 0644
    sysctl daemon-reload
    sysctl enable emotion-edge.service
}

check() {
    # libcamera gives a camera to one process: a running service would make the check's camera busy.
    # So the service is stopped, checked as it will run, and started after.
    say "emotion-edge check (the service is stopped meanwhile: one process per camera)"
    sysctl stop emotion-edge.service
    CHECK_OK=1
    as_service check --service --config "$ROOT$ETC/config.toml" || CHECK_OK=0
}

# Run emotion-edge as the service runs: its user and groups and its credentials (LoadCredential= puts the
# MQTT and HTTP passwords in $CREDENTIALS_DIRECTORY, which only systemd provides: a check run with runuser
# read no password and failed against a broker that needs one). Without a running systemd (a chroot),
# runuser, without the passwords.
as_service() {
    if [ "$DRY_RUN" = 1 ] || [ -d /run/systemd/system ]; then
        run systemd-run --quiet --pipe --wait --collect --service-type=exec \
            -p User="$SERVICE_USER" -p Group="$SERVICE_USER" -p SupplementaryGroups="video render" \
            -p LoadCredential=mqtt-password:"$ETC/mqtt-password" -p LoadCredential=http-password:"$ETC/http-password" \
            -E PYTHONUNBUFFERED=1 -- "$ROOT$VENV/bin/emotion-edge" "$@"
    else
        say "systemd is not running here (a chroot?): the check runs without the service's credentials"
        run runuser -u "$SERVICE_USER" -- "$ROOT$VENV/bin/emotion-edge" "$@"
    fi
}

start_service() {
    [ "$START" = 1 ] || { say "not started (--no-start): sudo systemctl start emotion-edge"; return; }
    if [ "$CHECK_OK" = 1 ]; then
        say "start emotion-edge.service"
        sysctl restart emotion-edge.service
    else
        say "check failed: the service is installed and enabled but not started; fix the FAIL line above, then: sudo systemctl start emotion-edge"
    fi
}

display_note() {
    # A desktop started at boot is the screen's DRM master, so the service's HDMI preview cannot show there
    # (the journal says so at every start; the maker is looking here now).
    local dm="$ROOT/etc/systemd/system/display-manager.service"
    if [ -L "$dm" ] || [ -e "$dm" ]; then
        say "note: this system boots to a desktop, which holds the screen: the preview with boxes shows on HDMI only when it boots to the console (sudo raspi-config nonint do_boot_behaviour B1, then reboot); or set [display] http and open the live view in the desktop's browser"
    fi
}

uninstall() {
    # Safe to run again, and after a half-done install: each step only undoes what is there.
    say "uninstall emotion-edge"
    if [ -e "$ROOT$UNIT" ] || [ "$DRY_RUN" = 1 ]; then
        sysctl stop emotion-edge.service
        sysctl disable emotion-edge.service
    fi
    # Home Assistant keeps a device for as long as its retained discovery configs stay on the broker.
    if [ -x "$ROOT$VENV/bin/emotion-edge" ] || [ "$DRY_RUN" = 1 ]; then
        say "remove the device from Home Assistant (retained MQTT discovery), if MQTT is on"
        as_service mqtt forget --config "$ROOT$ETC/config.toml" --timeout 5 || true
    fi
    run rm -f "$ROOT$UNIT"
    sysctl daemon-reload
    run rm -rf "$ROOT$PREFIX"
    if getent passwd "$SERVICE_USER" >/dev/null 2>&1 || [ "$DRY_RUN" = 1 ]; then
        run userdel "$SERVICE_USER"
    fi
    if [ "$PURGE" = 1 ]; then
        run rm -rf "$ROOT$ETC"
    else
        say "kept $ETC (use --purge to remove it)"
    fi
}

main() {
    if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root (sudo), or with --dry-run to see the steps"
    fi
    [ "$DRY_RUN" = 1 ] && say "dry run: nothing is changed"
    if [ "$UNINSTALL" = 1 ]; then
        uninstall
        return
    fi
    detect_platform
    apt_packages
    service_user
    python_env
    config_files
    unit_file
    check
    start_service
    display_note
    [ "$CHECK_OK" = 1 ] || exit 1
    say "done: journalctl -u emotion-edge -f shows the log"
}

main
