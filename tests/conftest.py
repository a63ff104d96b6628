"""Shared fixtures: a real mosquitto, real images and clips, and the CLI as a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PISIM = Path(__file__).resolve().parent / "pisim"  # the simulated Pi under the real picamera2
FER_CSV = ROOT.parent / "shared" / "data" / "fer2013plus.csv.gz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A real mosquitto on a loopback port, with its own config, that tests can stop and restart."""

    def __init__(self, workdir: Path, port: int | None = None, password: str | None = None):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.skip("mosquitto is not installed (apt install mosquitto)")
        self.exe, self.dir = exe, workdir
        self.port = port or free_port()
        self.proc = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr", "log_type error",
                 "log_type warning"]
        if os.geteuid() == 0:
            # Otherwise mosquitto drops to its own user, which cannot read pytest's 0700 folders.
            lines.append("user root")
        if password is not None:
            pw = workdir / "passwd"
            pw.write_text(f"edge:{password}\n")
            pw.chmod(0o600)
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self):
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "mosquitto.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


class LinkProxy:
    """A TCP proxy in front of the broker that a test can break: ``reset()`` kills every open connection (RST),
    ``blackhole(True)`` keeps them open but silently drops every byte both ways (a dead Wi-Fi link), new
    connections included."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list = []
        self.resets = 0
        self._black = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                a, _ = self.srv.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                a.close()
                continue
            with self.lock:
                self.pairs.append((a, b))
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self._black:
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def reset(self):
        import struct

        with self.lock:
            pairs, self.pairs = self.pairs, []
            self.resets += 1
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
                    s.close()
                except OSError:
                    pass

    def blackhole(self, on: bool):
        self._black = on

    def close(self):
        self._closed = True
        self.srv.close()
        self.reset()


class Subscriber:
    """A paho client collecting messages per topic."""

    def __init__(self, port: int, topics=("#",), username=None, password=None):
        import paho.mqtt.client as mqtt

        self.messages: list = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
        if username:
            self.client.username_pw_set(username, password)
        self.topics = topics
        self.connected = threading.Event()  # set when the broker acknowledged every subscription
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._pending: set = set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(5), "test subscriber could not connect and subscribe"

    def _on_connect(self, c, u, f, rc, p=None):
        with self.lock:
            self._pending = {c.subscribe(t, qos=1)[1] for t in self.topics}

    def _on_subscribe(self, c, u, mid, reason_codes, p=None):
        with self.lock:
            self._pending.discard(mid)
            if not self._pending:
                self.connected.set()

    def _on_message(self, c, u, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, suffix: str) -> list:
        with self.lock:
            return [(t, p, r) for t, p, r in self.messages if t.endswith(suffix)]

    def wait_for(self, pred, timeout=15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.05)
        return pred()

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> list:
        """Wait until no message arrived for ``quiet`` seconds (what was in flight has come); the messages."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                n = len(self.messages)
            if n != seen:
                seen, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.pop("EMOTION_EDGE_CONFIG", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def emotion_edge(*args, env=None, cwd=None, timeout=120, pi_sim=False) -> subprocess.CompletedProcess:
    env = env or cli_env()
    if pi_sim:
        env["PYTHONPATH"] = str(PISIM) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT.parent, timeout=timeout)


def spawn(*args, env=None, pi_sim=False, **kw) -> subprocess.Popen:
    env = env or cli_env()
    if pi_sim:
        env["PYTHONPATH"] = str(PISIM) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "edge", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory) -> Path:
    from edge.sources.demo import write_demo_video

    p = tmp_path_factory.mktemp("clips") / "astronaut.avi"
    write_demo_video(p, frames=40)
    return p


@pytest.fixture(scope="session")
def fer_csv():
    if not FER_CSV.exists():
        pytest.skip(f"FER2013 not found at {FER_CSV} (the ../shared/data folder is absent)")
    return FER_CSV


@pytest.fixture(scope="session")
def fer_data(fer_csv):
    from emotion_model import data

    return data.load(fer_csv, splits=("PublicTest", "PrivateTest"))


def face(box, emotion="happy", conf=0.8, fid=1):
    """A classified face for an Event (the seven labels, ``emotion`` at ``conf``)."""
    from edge.draw import COLOURS
    from edge.events import Face

    scores = {k: 0.02 for k in COLOURS}
    scores[emotion] = conf
    return Face(fid, box, emotion, conf, scores)


def event(faces, w=640, h=480, seq=1):
    from edge.events import Event

    return Event("t", seq, time.time(), w, h, tuple(faces), 5.0, 12.5)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def pi_sim(monkeypatch, tmp_path):
    """The real picamera2 in this process, over the simulated Pi (tests/pisim): a Pi 4 with a Camera
    Module 3 and an HDMI screen unless the test sets PISIM_* otherwise. Fresh modules for each test, so
    picamera2's class-level state (its camera manager, the platform) follows the test's board."""
    monkeypatch.syspath_prepend(str(PISIM))
    monkeypatch.setenv("PISIM_LOCKDIR", str(tmp_path / "locks"))
    monkeypatch.setenv("PISIM_LOG", str(tmp_path / "pisim.log"))
    for var in ("PISIM_BOARD", "PISIM_CAMERAS", "PISIM_FRAMES", "PISIM_HDMI", "PISIM_DRM_MASTER", "PISIM_SOURCE"):
        monkeypatch.delenv(var, raising=False)

    def purge():
        for name in [m for m in sys.modules if m.split(".")[0] in ("picamera2", "libcamera", "pykms", "pisim")]:
            sys.modules.pop(name, None)

    purge()
    import pisim

    pisim.install()
    yield pisim
    purge()


def pisim_log(tmp_path: Path) -> list[dict]:
    p = tmp_path / "pisim.log"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a failure: a missing data folder, broker or tool would otherwise pass unseen."""
    if not os.environ.get("CI") or exitstatus != 0 or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for rep in skipped:
            print(f"CI: unexpected skip: {rep.nodeid}: {rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else ''}")
        session.exitstatus = 1
