"""What a Raspberry Pi user meets on day one: the real picamera2 over the simulated Pi (tests/pisim), the
installer's choices, and the packaging facts of Raspberry Pi OS Bookworm and Trixie."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT, cli_env, emotion_edge
from packaging.markers import Marker
from packaging.requirements import Requirement


def test_second_user_of_a_camera_is_told_who_holds_it(pi_sim):
    """libcamera gives a camera to one process (Camera::acquire); picamera2 wraps the EBUSY in
    "Camera __init__ sequence did not complete." (picamera2.py __init__)."""
    from edge.sources import SourceError
    from edge.sources.picamera2 import Picamera2Source

    first = Picamera2Source()
    first.open()
    try:
        with pytest.raises(SourceError, match="in use by another process.*emotion-edge service"):
            Picamera2Source().open()
    finally:
        first.stop()
    again = Picamera2Source()  # released by stop()
    again.open()
    again.stop()


def test_check_says_the_camera_is_busy_while_the_service_holds_it(pi_sim, tmp_path):
    """The installer used to restart the service, then run `check`: its camera line failed on a good
    install. libcamera locks a camera across processes (the simulated one with a file lock)."""
    from picamera2 import Picamera2

    env = cli_env(PISIM_LOCKDIR=tmp_path / "locks")
    holder = Picamera2(0)  # the running service
    try:
        r = emotion_edge("check", "--source", "picamera2", env=env, pi_sim=True)
    finally:
        holder.close()
    line = next(ln for ln in r.stdout.splitlines() if " camera " in ln)
    assert line.startswith("FAIL") and "in use by another process" in line, r.stdout
    r = emotion_edge("check", "--source", "picamera2", env=env, pi_sim=True)
    assert next(ln for ln in r.stdout.splitlines() if " camera " in ln).startswith("ok"), r.stdout


def test_installer_checks_before_it_starts_the_service(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text("VERSION_CODENAME=bookworm\n")
    r = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--dry-run", "--arch", "arm64"],
                       capture_output=True, text=True, env=dict(os.environ, EMOTION_EDGE_ROOT=str(tmp_path)), timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    stop, check, start = (out.index("systemctl stop emotion-edge.service"), out.index("emotion-edge check --service --config"),
                          out.index("systemctl restart emotion-edge.service"))
    assert stop < check < start


def test_installer_says_a_desktop_hides_the_preview(tmp_path):
    """Pi OS with a desktop starts a display manager at boot; its compositor holds the screen, and the
    service's DRM preview fails there. The installer says what to do; without a desktop it says nothing."""
    (tmp_path / "etc" / "systemd" / "system").mkdir(parents=True)
    (tmp_path / "etc" / "os-release").write_text("VERSION_CODENAME=bookworm\n")

    def install():
        r = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--dry-run", "--arch", "arm64"],
                           capture_output=True, text=True, env=dict(os.environ, EMOTION_EDGE_ROOT=str(tmp_path)),
                           timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "boots to a desktop" not in install()
    # As raspi-config and lightdm leave it (dangling here: the test root has no /lib/systemd).
    (tmp_path / "etc" / "systemd" / "system" / "display-manager.service").symlink_to("/lib/systemd/system/lightdm.service")
    out = install()
    assert "boots to a desktop" in out and "raspi-config nonint do_boot_behaviour B1" in out and "[display] http" in out


def test_empty_credential_means_no_password(tmp_path, monkeypatch):
    """The installer creates /etc/emotion-edge/mqtt-password empty for LoadCredential=; with no username
    that used to stop the service: "a password needs mqtt.username"."""
    from edge.config import MqttConfig
    from edge.sinks.mqtt_client import make_client, read_password

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = MqttConfig(enabled=True, host="127.0.0.1")
    assert read_password(cfg) is None
    make_client(cfg, "pi")  # no MqttConfigError
    (creds / "mqtt-password").write_text("secret\n")
    with pytest.raises(ValueError, match="needs mqtt.username"):
        make_client(cfg, "pi")


def test_empty_credential_run_connects(broker, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n')
    r = emotion_edge("run", "--config", str(cfg), "--source", "demo:5", "--events", "none",
                     env=cli_env(CREDENTIALS_DIRECTORY=creds))
    assert r.returncode == 0, r.stderr


def test_usb_webcam_is_not_taken_for_a_pi_camera(pi_sim, monkeypatch):
    """picamera2's global_camera_info lists UVC webcams too (Ids with "/usb", sorted last): a lores YUV420
    stream on one fails validation, so `auto` must send it the webcam way."""
    from edge.sources import describe_auto
    from edge.sources import picamera2 as pc

    monkeypatch.setenv("PISIM_CAMERAS", "uvc")
    from picamera2 import Picamera2

    assert len(Picamera2.global_camera_info()) == 1
    assert not pc.available() and pc.pi_cameras() == []
    assert describe_auto() != "picamera2"


def test_a_pi_camera_beside_a_webcam_is_found(pi_sim, monkeypatch):
    from edge.sources import describe_auto
    from edge.sources import picamera2 as pc

    monkeypatch.setenv("PISIM_CAMERAS", "uvc,imx708")
    assert pc.available() and [c["Model"] for c in pc.pi_cameras()] == ["imx708"]
    assert describe_auto() == "picamera2"


def test_uvc_index_is_the_usb_video_device(tmp_path):
    """On a Pi /dev/video0.. are the camera's own unicam/ISP/codec nodes: the webcam is the USB one."""
    from edge.sources import uvc_index

    devices = tmp_path / "devices"
    v4l = tmp_path / "v4l"
    v4l.mkdir()
    for n, parent in ((0, "platform/fe801000.csi/unicam"), (10, "platform/bcm2835-codec"),
                      (3, "platform/scb/fd500000.pcie/pci0000:00/0000:01:00.0/usb1/1-1/1-1.3/1-1.3:1.0"),
                      (4, "platform/scb/fd500000.pcie/pci0000:00/0000:01:00.0/usb1/1-1/1-1.3/1-1.3:1.0")):
        target = devices / parent
        target.mkdir(parents=True, exist_ok=True)
        (v4l / f"video{n}").mkdir()
        (v4l / f"video{n}" / "device").symlink_to(target)
    assert uvc_index(str(v4l)) == 3
    assert uvc_index(str(tmp_path / "none")) is None


def test_python_floor_is_what_the_code_imports():
    """edge/config.py imports tomllib, new in Python 3.11."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11"
    assert "3, 11" in (ROOT / "scripts" / "setup.sh").read_text()


def _deps_for(python: str, machine: str) -> dict[str, str]:
    """The runtime requirements pip would take on a platform: name -> specifier."""
    env = {"python_version": python, "python_full_version": python + ".0", "platform_machine": machine,
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    out = {}
    for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(line)
        if req.marker is None or Marker(str(req.marker)).evaluate(env):
            assert req.name not in out, f"two requirements for {req.name} on {python}/{machine}"
            out[req.name] = str(req.specifier)
    return out


@pytest.mark.parametrize("release, python, machine, numpy_cap, opencv_cap", [
    ("bookworm 64-bit", "3.11", "aarch64", "<2", "<=4.11.0.86"),
    ("bookworm 32-bit", "3.11", "armv7l", "<2", "<=4.11.0.86"),
    ("trixie 64-bit", "3.13", "aarch64", None, "<5"),
    ("x86 developer", "3.11", "x86_64", None, "<5"),
])
def test_pins_follow_the_os_release_not_the_cpu(release, python, machine, numpy_cap, opencv_cap):
    """Trixie ships numpy 2 and PyPI has no numpy 1.x wheel for Python 3.13: a numpy<2 pin there builds
    numpy from source and mismatches apt's picamera2."""
    deps = _deps_for(python, machine)
    assert (numpy_cap in deps["numpy"]) if numpy_cap else ("<2" not in deps["numpy"]), (release, deps)
    assert opencv_cap in deps["opencv-python-headless"], (release, deps)


def test_installer_keeps_the_system_numpy():
    text = (ROOT / "deploy" / "install.sh").read_text()
    assert '"numpy<2"' not in text
    assert "numpy==$np_version" in text and "--constraint" in text


def test_installer_without_picamera2_installs_for_a_webcam(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    r = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--dry-run", "--arch", "arm64", "--no-picamera2"],
                       capture_output=True, text=True, env=dict(os.environ, EMOTION_EDGE_ROOT=str(tmp_path)), timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Debian GNU/Linux 13 (trixie)" in out and "Raspberry Pi OS" not in out  # says what it is
    assert "python3-picamera2" not in out.split("apt-get install", 1)[1].splitlines()[0]
    assert 'source = "webcam:0"' in out
    assert "-c import numpy, cv2; print" in out  # the venv's imports are checked, without picamera2
    assert "check --service" in out
    copied = re.search(r"\+ copy \S+ .* to (\S+)", out)
    assert copied and "pip install --upgrade --no-cache-dir --constraint" in out and copied.group(1) in out


def test_check_as_the_service_fails_without_a_camera_instead_of_promising_the_demo():
    r = emotion_edge("check", "--service", "--source", "auto")
    line = next(ln for ln in r.stdout.splitlines() if " camera " in ln)
    assert r.returncode == 1 and line.startswith("FAIL") and "service would not start" in line, r.stdout
    r = emotion_edge("check", "--source", "auto")
    line = next(ln for ln in r.stdout.splitlines() if " camera " in ln)
    assert line.startswith("skip") and "the service would not start" in line


@pytest.mark.parametrize("dpkg_arch, kernel, bits, runtime", [
    ("armhf", "aarch64", "32-bit", "tflite-runtime"),  # 32-bit Pi OS on a Pi 4/5: a 64-bit kernel
    ("arm64", "aarch64", "64-bit", "ai-edge-litert"),
])
def test_installer_takes_the_architecture_from_the_userland(tmp_path, dpkg_arch, kernel, bits, runtime):
    """raspberrypi/linux#5981: 32-bit Raspberry Pi OS boots a 64-bit kernel on a Pi 4/5, so uname -m says
    aarch64; dpkg says what every binary and wheel must be."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, out in (("dpkg", dpkg_arch), ("uname", kernel)):
        (fake / name).write_text(f"#!/bin/sh\necho {out}\n")
        (fake / name).chmod(0o755)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text('PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\n'
                                                 "VERSION_CODENAME=bookworm\n")
    env = dict(os.environ, EMOTION_EDGE_ROOT=str(tmp_path), PATH=f"{fake}:{os.environ['PATH']}")
    r = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--dry-run"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"{bits} userland" in r.stdout and f"TFLite runtime {runtime}" in r.stdout
    assert re.search(rf"pip install .* {runtime}$", r.stdout, re.M)


@pytest.mark.parametrize("release, python", [("bookworm", "3.11"), ("trixie", "3.13")])
def test_pins_have_aarch64_wheels_on_pypi(tmp_path, release, python):
    """Against PyPI's real metadata: what the pins select for 64-bit Pi OS exists as an aarch64 wheel for the
    release's Python (nothing is built from source on a Pi), and the old numpy<2 pin had none on Trixie."""
    deps = _deps_for(python, "aarch64")
    wanted = [f"numpy{deps['numpy']}", f"opencv-python-headless{deps['opencv-python-headless']}",
              "ai-edge-litert>=2.3,<3"]

    def download(*specs):
        return subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
                               "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux_2_27_aarch64",
                               "--platform", "manylinux_2_34_aarch64", "--python-version", python,
                               "--implementation", "cp", "-d", str(tmp_path), "--no-cache-dir", *specs],
                              capture_output=True, text=True, timeout=600)

    for spec in wanted:
        r = download(spec)
        if r.returncode and ("NewConnectionError" in r.stderr or "Network is unreachable" in r.stderr):
            pytest.skip("PyPI is not reachable from here")
        assert r.returncode == 0, (spec, r.stderr[-1500:])
    assert len(list(tmp_path.glob("*aarch64*.whl"))) == 3
    if release == "trixie":
        assert download("numpy>=1.24,<2").returncode != 0  # the pin this replaced: no wheel, a source build
