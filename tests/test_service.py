"""systemd integration for real: the notify protocol on a socket the test owns, journald
priorities, the unit through systemd-analyze, and the installer in dry-run mode."""
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, cli_env, spawn

UNIT = ROOT / "deploy" / "emotion-edge.service"
INSTALL = ROOT / "deploy" / "install.sh"


class NotifySocket:
    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def drain(self, seconds: float):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            for line in data.split("\n"):
                self.messages.append((time.monotonic(), line))

    def wait_for(self, prefix: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(m.startswith(prefix) for _, m in self.messages):
                return True
            self.drain(0.2)
        return False

    def count(self, prefix: str, since: float = 0.0) -> int:
        return sum(1 for t, m in self.messages if m.startswith(prefix) and t >= since)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.close()


def service_env(notify, **extra):
    # No $INVOCATION_ID: events still go to stdout, so the test can see the first frame.
    return cli_env(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=1_000_000, **extra)


def test_notify_ready_watchdog_status_stopping(notify, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[service]\nstatus_interval = 0.5\n")
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", env=service_env(notify))
    try:
        assert notify.wait_for("READY=1", 60), notify.messages
        # READY=1 follows the first processed frame: its event is already on stdout.
        assert select.select([p.stdout], [], [], 0)[0], "READY=1 came before any frame was processed"
        assert p.stdout.readline().startswith('{"schema":1')
        t_ready = time.monotonic()
        notify.drain(3)
        assert notify.count("WATCHDOG=1", since=t_ready) >= 5  # every quarter of WatchdogSec
        status = [m for _, m in notify.messages if m.startswith("STATUS=") and "fps" in m]
        assert status and re.search(r"STATUS=\d+(\.\d)? fps, 1 face", status[-1]), status
        p.send_signal(signal.SIGTERM)
        notify.drain(1)
        out, err = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == 0, err
    notify.drain(0.5)
    assert notify.count("STOPPING=1") == 1


def test_stalled_camera_stops_watchdog_pings_and_fails_the_run(notify, tmp_path):
    """The Pi camera (real picamera2, simulated sensor) stops after 30 frames, like a camera whose cable came
    loose: no more watchdog
    pings, and after capture_timeout the run fails with a clear line (systemd then restarts it)."""
    log = tmp_path / "pisim.log"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[camera]\ncapture_timeout = 3.0\n")
    env = service_env(notify, PISIM_FRAMES=30, PISIM_LOG=log, PISIM_LOCKDIR=tmp_path)
    p = spawn("run", "--config", str(cfg), "--source", "picamera2", "--events", "none", env=env, pi_sim=True)
    try:
        assert notify.wait_for("READY=1", 60), notify.messages
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (log.exists() and "stalled" in log.read_text()):
            notify.drain(0.2)
        assert "stalled" in log.read_text()
        assert notify.count("WATCHDOG=1") >= 1
        notify.drain(0.5)  # a ping already in flight
        t_stall = time.monotonic()
        notify.drain(1.5)
        assert notify.count("WATCHDOG=1", since=t_stall) == 0, "a hung camera must silence the watchdog"
        out, err = p.communicate(timeout=10)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 1, err
    assert "no frame for 3 s" in err


def test_sigterm_with_a_hung_camera_ends_the_run_at_once(notify, tmp_path):
    """capture_request() without a timeout would block the loop for ever: SIGTERM unseen until systemd's
    TimeoutStopSec kills it. The capture waits in slices and sees the stop within 0.2 s."""
    log = tmp_path / "pisim.log"
    env = service_env(notify, PISIM_FRAMES=10, PISIM_LOG=log, PISIM_LOCKDIR=tmp_path)
    p = spawn("run", "--source", "picamera2", "--events", "none", env=env, pi_sim=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and "stalled" in log.read_text()):
            time.sleep(0.05)
        assert "stalled" in log.read_text()
        time.sleep(0.3)  # inside the blocked capture
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        took = time.monotonic() - t
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 0, err
    assert took < 2.0, f"SIGTERM took {took:.1f} s"
    notify.drain(0.3)
    assert notify.count("STOPPING=1") == 1


def test_journal_priorities_on_stderr(tmp_path):
    """Under systemd without python3-systemd, stderr lines carry <N> syslog priority prefixes."""
    r_fd, w_fd = os.pipe()
    st = os.fstat(w_fd)
    env = cli_env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    p = subprocess.Popen([sys.executable, "-m", "edge", "run", "--source", str(tmp_path / "missing.jpg")],
                         stdout=subprocess.DEVNULL, stderr=w_fd, env=env)
    os.close(w_fd)
    p.wait(60)
    with os.fdopen(r_fd) as f:
        err = f.read()
    lines = [ln for ln in err.splitlines() if ln.startswith("<")]
    assert any(ln.startswith("<3>") and "missing.jpg" in ln for ln in lines), err
    assert any(ln.startswith("<6>") for ln in lines), err


def analyze(*args):
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def test_unit_verifies_without_any_output(tmp_path):
    # ExecStart names the installed path; point it at this checkout's entry point so verify
    # can check it is executable. Everything else is verified as shipped.
    exe = shutil.which("emotion-edge") or str(ROOT / ".venv" / "bin" / "emotion-edge")
    text = UNIT.read_text()
    assert "ExecStart=/opt/emotion-edge/venv/bin/emotion-edge run --config /etc/emotion-edge/config.toml" in text
    unit = tmp_path / "emotion-edge.service"
    unit.write_text(text.replace("/opt/emotion-edge/venv/bin/emotion-edge", exe))
    r = analyze("verify", str(unit))
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_unit_exposure_at_most_2_5():
    r = analyze("security", "--offline=true", str(UNIT))
    m = re.search(r"Overall exposure level for emotion-edge.service: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5, f"exposure {m.group(1)}: someone loosened the hardening"


def test_unit_essentials():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=emotion-edge",
                 "SupplementaryGroups=video render", "LoadCredential=mqtt-password:", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "After=network-online.target"):
        assert line in text, line


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dry_run(root, *args):
    return subprocess.run(["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True,
                          env=dict(os.environ, EMOTION_EDGE_ROOT=str(root)), timeout=60)


@pytest.mark.parametrize("codename, arch, python, runtime", [
    ("bookworm", "aarch64", "3.11", "ai-edge-litert"),
    ("bookworm", "armv7l", "3.11", "tflite-runtime"),
    ("trixie", "aarch64", "3.13", "ai-edge-litert"),
])
def test_installer_dry_run(tmp_path, codename, arch, python, runtime):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text(f'PRETTY_NAME="Debian"\nVERSION_CODENAME={codename}\n')
    r = dry_run(tmp_path, "--arch", arch)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"Debian ({codename})" in out and f"Python {python}" in out
    assert "apt-get install -y --no-install-recommends python3-venv python3-pip python3-systemd python3-numpy " \
           "python3-picamera2" in out
    assert "useradd --system" in out and "usermod -a -G video emotion-edge" in out
    assert "venv --system-site-packages" in out and re.search(rf"pip install .* {runtime}$", out, re.M), out
    assert f"write /etc/systemd/system/emotion-edge.service (mode 0644, sha256 {sha(UNIT)}" in out
    assert f"write /etc/emotion-edge/config.toml (mode 0644, sha256 {sha(ROOT / 'deploy' / 'config.toml')}" in out
    assert "systemctl enable emotion-edge.service" in out and "emotion-edge check" in out
    assert not list(tmp_path.glob("opt")), "a dry run must not write anything"


def test_installer_refuses_32bit_trixie_and_keeps_edited_config(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text("VERSION_CODENAME=trixie\n")
    r = dry_run(tmp_path, "--arch", "armv7l")
    assert r.returncode == 1 and "no TFLite runtime wheel" in r.stderr
    (tmp_path / "etc" / "emotion-edge").mkdir()
    (tmp_path / "etc" / "emotion-edge" / "config.toml").write_text("[mqtt]\nenabled = true\n")
    r = dry_run(tmp_path, "--arch", "aarch64", "--with-broker")
    assert r.returncode == 0, r.stderr
    assert "config.toml was edited: kept" in r.stdout and "config.toml.dist" in r.stdout
    assert "mosquitto" in r.stdout
    r = dry_run(tmp_path, "--uninstall")
    assert r.returncode == 0
    removed = [ln.split("rm -rf ", 1)[1] for ln in r.stdout.splitlines() if "rm -rf " in ln]
    assert removed == [f"{tmp_path}/opt/emotion-edge"]  # only what it installed, inside the root
    assert "kept /etc/emotion-edge" in r.stdout and "userdel emotion-edge" in r.stdout


def test_installer_is_shellcheck_clean():
    exe = shutil.which("shellcheck")
    if not exe:
        pytest.skip("shellcheck is not installed (apt install shellcheck)")
    r = subprocess.run([exe, str(INSTALL)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_sigterm_while_a_silent_stream_is_opening(tmp_path, scheme):
    """A stream that accepts the connection and never answers: OpenCV blocks for its own timeout (28 s
    here before); SIGTERM must end the run within seconds, with status 0."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    p = spawn("run", "--source", f"{scheme}://127.0.0.1:{port}/stream", "--events", "none")
    try:
        conn, _ = server.accept()  # it is connecting: now inside OpenCV's open
        time.sleep(0.5)
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        took = time.monotonic() - t
        conn.close()
    finally:
        p.kill()
        p.wait()
        server.close()
    assert took < 5.0, f"SIGTERM took {took:.1f} s"
    assert p.returncode == 0, err
    assert "stopped while opening" in err


def test_run_sh_keeps_the_callers_directory(tmp_path):
    """scripts/run.sh changed to the repository root: a relative --source said "no such file", and the
    README's own --annotate wrote into the checkout."""
    import cv2

    from edge.sources.demo import astronaut_bgr

    cv2.imwrite(str(tmp_path / "photo.jpg"), astronaut_bgr())
    r = subprocess.run([str(ROOT / "scripts" / "run.sh"), "--source", "photo.jpg", "--annotate", "photo_annotated.jpg"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "photo_annotated.jpg").is_file() and not (ROOT / "photo_annotated.jpg").exists()
    assert '"faces":[{' in r.stdout
