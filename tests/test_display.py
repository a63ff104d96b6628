"""What people see: the overlay drawing, the picamera2 preview (the real one over the simulated Pi), and the
HTTP live view in a real headless Chromium."""
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import ROOT, emotion_edge, event, face, free_port, spawn

from edge.display import choose_preview
from edge.draw import COLOURS, draw_faces, label_rect, overlay_rgba, panel_rect


def test_overlay_box_edges_in_emotion_colour_and_transparent_elsewhere():
    ov = overlay_rgba((640, 480), event([face((200, 150, 120, 120), "sad")]))
    assert ov.shape == (480, 640, 4) and ov.dtype == np.uint8
    r, g, b = COLOURS["sad"]
    for y, x in ((210, 200), (150, 260), (269, 260), (210, 319)):  # left, top, bottom, right edges
        assert tuple(ov[y, x]) == (r, g, b, 255), (y, x, ov[y, x])
    assert ov[210, 260, 3] == 0  # inside the box: the camera shows through
    assert ov[400, 50, 3] == 0 and ov[470, 630, 3] == 0  # far from any drawing
    assert (ov[..., 3] > 0).mean() < 0.1


@pytest.mark.parametrize("box", [(0, 0, 80, 80), (590, 430, 50, 50), (-10, 200, 90, 90), (600, 0, 60, 60)])
def test_label_stays_inside_the_frame_at_borders(box):
    f = face(box, "surprise", 0.99)
    ov = overlay_rgba((640, 480), event([f]))
    x0, y0, x1, y1 = label_rect(f, (640, 480))
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    label_px = ov[y0:y1, x0:x1].astype(int)
    text_px = np.all(np.abs(label_px - np.array((*COLOURS["surprise"], 255))) <= 10, axis=2)
    assert text_px.sum() > 50  # the label's text is drawn, in the emotion's colour, inside the frame


def test_same_drawing_for_overlay_and_annotated_frame():
    ev = event([face((100, 100, 150, 150), "angry")])
    ov = overlay_rgba((640, 480), ev)
    frame = draw_faces(np.zeros((480, 640, 3), np.uint8), ev.faces, ev.fps, order="bgr")
    drawn = ov[..., 3] == 255
    assert np.array_equal(frame[drawn][:, ::-1], ov[drawn][:, :3])


def _bar_lengths(img, rect):
    """Pixels of each class's colour inside a panel, by class."""
    x0, y0, x1, y1 = rect
    px = img[y0:y1, x0:x1, :3].astype(int)
    return {k: int(np.all(np.abs(px - np.array(c)) <= 2, axis=2).sum()) for k, c in COLOURS.items()}


def test_score_panel_names_and_bars_beside_a_large_face():
    f = face((100, 100, 160, 160), "surprise", 0.7)
    ev = event([f])
    rect = panel_rect(f, (640, 480))
    x0, y0, x1, y1 = rect
    assert x0 >= 260 and y0 == 100 and x1 <= 640  # right of the box, level with its top
    ov = overlay_rgba((640, 480), ev)
    assert np.all(ov[y0:y1, x0:x1, 3] >= 160)  # a dark panel the camera does not show through
    lengths = _bar_lengths(ov, rect)
    assert all(n > 0 for n in lengths.values()), lengths  # a bar for every class
    assert lengths["surprise"] > 10 * lengths["angry"]  # scored 0.7 against 0.02
    names = ov[y0:y1, x0:x0 + (x1 - x0) // 3, :3].astype(int)
    grey = (names.min(axis=2) == names.max(axis=2)) & (names[..., 0] > 100)
    assert grey.sum() > 200  # the class names, in grey at the panel's left
    # On a camera frame: the same panel, the picture darkened behind it.
    frame = draw_faces(np.full((480, 640, 3), 150, np.uint8), ev.faces, None)
    assert frame[y1 - 2, x1 - 2].tolist() == [50, 50, 50]
    on_frame = _bar_lengths(frame[..., ::-1], rect)
    # (neutral's grey also matches some edge pixels of the grey names, which differ by background)
    assert {k: n for k, n in on_frame.items() if k != "neutral"} == {k: n for k, n in lengths.items() if k != "neutral"}


def test_score_panel_moves_left_at_the_edge_and_never_covers_another_face():
    right_edge = face((500, 100, 130, 130), "happy")
    x0, _, x1, _ = panel_rect(right_edge, (640, 480))
    assert x1 <= 496  # left of the box
    # Side by side: the left face has no room on either side, so it gets the thin bars; the right one
    # puts its panel on its free side.
    a, b = face((20, 150, 130, 130), "happy", fid=1), face((200, 150, 130, 130), "sad", fid=2)
    img = draw_faces(np.zeros((480, 640, 3), np.uint8), [a, b])
    assert panel_rect(a, (640, 480), avoid=[(200, 150, 330, 280), label_rect(b, (640, 480))]) is None
    rect = panel_rect(b, (640, 480), avoid=[(20, 150, 150, 280), label_rect(a, (640, 480))])
    assert rect[0] >= 330
    assert _bar_lengths(img[..., ::-1], rect)["sad"] > 0
    thin = img[283:300, 20:150, ::-1].astype(int)  # under face a: its seven thin bars
    assert np.all(np.abs(thin - np.array(COLOURS["happy"])) <= 2, axis=2).sum() > 100


def test_small_face_keeps_the_thin_bars():
    f = face((100, 100, 70, 70), "angry", 0.9)
    assert panel_rect(f, (640, 480)) is None
    ov = overlay_rgba((640, 480), event([f]))
    under = ov[173:200, 100:170, :3].astype(int)
    assert np.all(np.abs(under - np.array(COLOURS["angry"])) <= 2, axis=2).sum() > 50
    assert ov[100:170, 175:400, 3].max() == 0  # nothing beside it


def test_fps_is_drawn_only_once_measured():
    faces = event([face((100, 100, 150, 150))]).faces
    blank = draw_faces(np.zeros((480, 640, 3), np.uint8), faces, None)
    assert np.array_equal(draw_faces(np.zeros((480, 640, 3), np.uint8), faces, 0.0), blank)  # a single photo
    assert not np.array_equal(draw_faces(np.zeros((480, 640, 3), np.uint8), faces, 12.5), blank)


@pytest.mark.parametrize("setting, env, qt, expected", [
    ("auto", {}, True, "drm"), ("auto", {"DISPLAY": ":0"}, True, "qtgl"),
    ("auto", {"WAYLAND_DISPLAY": "wayland-0"}, True, "qtgl"),
    ("auto", {"DISPLAY": ":0"}, False, "drm"),  # no PyQt5: picamera2's Qt thread would die and start() hang
    ("drm", {"DISPLAY": ":0"}, True, "drm"), ("qtgl", {"DISPLAY": ":0"}, True, "qtgl"), ("qtgl", {}, True, "none"),
    ("qtgl", {"DISPLAY": ":0"}, False, "none"), ("none", {}, True, "none"),
])
def test_preview_choice(setting, env, qt, expected):
    kind, why = choose_preview(setting, env, qt=qt, gl=True)
    assert kind == expected
    if not qt and setting != "none":
        assert "PyQt5" in why


def sim_run(tmp_path, preview, n=8, config="", **env):
    """`emotion-edge run` on the simulated Pi camera; returns the process and the simulated Pi's log."""
    from conftest import cli_env

    log = tmp_path / f"pisim-{preview}.log"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[display]\npreview = "{preview}"\n{config}')
    e = cli_env(PISIM_LOG=log, PISIM_LOCKDIR=tmp_path / "locks", **env)
    r = emotion_edge("run", "--config", str(cfg), "--source", "picamera2", "--max-frames", str(n), "--events", "none",
                     env=e, pi_sim=True)
    return r, [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_preview_none_draws_nothing(tmp_path):
    r, events = sim_run(tmp_path, "none")
    assert r.returncode == 0, r.stderr
    assert not [e for e in events if e["event"] in ("commit", "dumb-fb")]


def test_no_drm_card_is_a_clear_line_not_a_crash(tmp_path):
    r, events = sim_run(tmp_path, "drm", PISIM_HDMI="none")
    assert r.returncode == 0, r.stderr
    assert "preview: none: no usable DRM card" in r.stderr
    assert not [e for e in events if e["event"] == "commit"]


def test_display_taken_on_the_event_loop_thread_falls_back_to_no_preview(tmp_path):
    """render_drm reserves the plane at the first frame, on picamera2's thread: the thread dies and no
    capture ever completes. The source notices by the capture timeout and goes on without a preview."""
    r, events = sim_run(tmp_path, "drm", n=10, config="[camera]\ncapture_timeout = 1.5\n", PISIM_DRM_PLANES="taken")
    assert r.returncode == 0, r.stderr
    assert "Failed to reserve DRM plane" in r.stderr  # picamera2's thread died (its traceback)
    assert "running without a preview" in r.stderr
    assert len([e for e in events if e["event"] == "sensor-mode"]) >= 2  # opened again
    assert not [e for e in events if e["event"] == "commit"]


def drm_sysfs(root: Path, mode: str = "1920x1080") -> Path:
    for name, status, modes in (("card1-HDMI-A-1", "connected", f"{mode}\n1280x720\n"),
                                ("card1-HDMI-A-2", "disconnected", ""), ("card1-Writeback-1", "unknown", "")):
        (root / name).mkdir(parents=True)
        (root / name / "status").write_text(status + "\n")
        (root / name / "modes").write_text(modes)
    (root / "card1").mkdir()  # the card itself has no status
    return root


def test_display_size_from_the_connected_connector(tmp_path):
    from edge.display import display_size

    assert display_size(str(drm_sysfs(tmp_path / "drm"))) == (1920, 1080)
    assert display_size(str(tmp_path / "nowhere")) is None


def in_process_preview(pi_sim, tmp_path, frames, preview="drm"):
    """A run through app.build with the simulated Pi camera and screen; returns its log and the preview sink."""
    import edge.display
    from edge.app import Outputs, build
    from edge.config import Config

    cfg = Config().replace("display", preview=preview)
    pipe = build(cfg, "picamera2", Outputs())
    pipe.source.open()
    try:
        pipe.run(frames)
    finally:
        pipe.source.stop()
    sink = next(s for s in pipe.sinks if isinstance(s, edge.display.PreviewSink))
    log = tmp_path / "pisim.log"
    return [json.loads(x) for x in log.read_text().splitlines()], sink


def test_preview_fills_the_attached_display(pi_sim, monkeypatch, tmp_path):
    """picamera2's DRM preview is a 640x480 window at (0, 0) unless told otherwise (DrmPreview.__init__)."""
    monkeypatch.setenv("PISIM_HDMI_MODE", "1280x720")
    _, sink = in_process_preview(pi_sim, tmp_path, 5)
    assert sink.window == {"x": 0, "y": 0, "width": 1280, "height": 720}


def test_overlay_is_committed_only_when_it_changes_and_at_most_5_per_second(pi_sim, tmp_path):
    """Each DRM set_overlay allocates a framebuffer and commits synchronously (DrmPreview.set_overlay)."""
    t = time.monotonic()
    events, sink = in_process_preview(pi_sim, tmp_path, 90)
    seconds = time.monotonic() - t
    overlays = [e for e in events if e["event"] == "dumb-fb" and e["width"] == 640]
    commits = [e for e in events if e["event"] == "commit"]
    assert 1 <= len(overlays) == sink.overlays <= 1 + 5 * seconds
    assert all(c["result"] == 0 for c in commits) and len(commits) > len(overlays)  # camera frames too
    assert len(sink.overlay_ms) == sink.overlays and max(sink.overlay_ms) < 1000


def test_unchanged_overlay_is_not_sent_again():
    from edge.config import DisplayConfig
    from edge.display import PreviewSink

    class Source:  # the source's side of the preview: FrameSource.set_overlay
        size, preview, sent = (640, 480), ("DRM", {}), 0

        def set_overlay(self, overlay):
            self.sent += 1

    source = Source()
    sink = PreviewSink(source, DisplayConfig(preview="drm"), max_hz=1000.0)
    sink.active = True
    same = event([face((100, 100, 150, 150))])
    for _ in range(10):
        sink.handle(same, None)
        time.sleep(0.002)
    assert source.sent == 1
    sink.handle(event([face((300, 100, 150, 150))]), None)  # moved: drawn again
    time.sleep(0.002)
    sink.handle(event([]), None)  # gone: the boxes are cleared
    assert source.sent == 3


def http_run(tmp_path, extra=""):
    port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[display]\nhttp = "127.0.0.1:{port}"\nhttp_max_fps = 10.0\n{extra}')
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    url = f"http://127.0.0.1:{port}"
    # Until the first frame is through, /event answers 204 No Content; wait for a real event (or for
    # an HTTP error, which the password test wants to see) so no test reads an empty body.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/event", timeout=1).status == 200:
                break
        except urllib.error.HTTPError:
            break
        except OSError:
            pass
        time.sleep(0.2)
    return p, url


def read_stream(url, seconds, headers=None):
    req = urllib.request.Request(url + "/stream", headers=headers or {})
    data = b""
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            data += r.read1(65536)
    return data


def test_http_stream_is_capped_and_event_is_json(tmp_path):
    p, url = http_run(tmp_path)
    try:
        ev = json.loads(urllib.request.urlopen(url + "/event", timeout=5).read())
        assert ev["schema"] == 1
        data = read_stream(url, 3.0)
        n = data.count(b"Content-Type: image/jpeg")
        assert 5 <= n <= 35  # 10 fps cap, not the pipeline's ~40-60 fps
        start = data.index(b"\xff\xd8")
        img = cv2.imdecode(np.frombuffer(data[start:data.index(b"\xff\xd9", start) + 2], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (480, 640, 3)
        page = urllib.request.urlopen(url + "/", timeout=5).read().decode()
        assert 'src="stream"' in page
    finally:
        p.terminate()
        p.communicate(timeout=20)
    assert p.returncode == 0


def test_http_event_is_no_content_until_the_first_event():
    from edge.config import DisplayConfig
    from edge.sinks.http_view import HttpViewSink

    sink = HttpViewSink(DisplayConfig(http=f"127.0.0.1:{free_port()}"))
    sink.start()
    try:
        url = f"http://{sink.host}:{sink.port}/event"
        r = urllib.request.urlopen(url, timeout=5)
        assert r.status == 204 and r.read() == b""
        sink.handle(event([face((10, 10, 50, 50), "sad", 0.7)]), None)
        ev = json.loads(urllib.request.urlopen(url, timeout=5).read())
        assert [f["emotion"] for f in ev["faces"]] == ["sad"]
    finally:
        sink.close()


def test_http_password(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("letmein\n")
    p, url = http_run(tmp_path, f'http_password_file = "{pw}"\n')
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/event", timeout=5)
        assert e.value.code == 401
        auth = {"Authorization": "Basic " + b64encode(b"viewer:letmein").decode()}
        deadline = time.monotonic() + 30
        while True:
            r = urllib.request.urlopen(urllib.request.Request(url + "/event", headers=auth), timeout=5)
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert json.loads(r.read())["schema"] == 1
        bad = {"Authorization": "Basic " + b64encode(b"viewer:nope").decode()}
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(url + "/event", headers=bad), timeout=5)
    finally:
        p.terminate()
        p.communicate(timeout=20)


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("chromium is not installed (apt install chromium)")


def test_http_view_in_headless_chromium(tmp_path):
    exe = chromium()
    p, url = http_run(tmp_path)
    shot = tmp_path / "view.png"
    try:  # http_run returned once the view served a real event
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,620",
                            "--virtual-time-budget=4000", f"--screenshot={shot}", url + "/"],
                           capture_output=True, text=True, timeout=90)
    finally:
        p.terminate()
        p.communicate(timeout=20)
    assert shot.exists(), r.stderr[-2000:]
    img = cv2.imread(str(shot))
    # The page shows a camera frame (not the empty dark placeholder) with a box in an emotion colour.
    frame = img[16:520, 16:660]
    assert frame.std() > 30
    hits = {emo: int(np.all(np.abs(frame.astype(int) - np.array(rgb[::-1])) <= 45, axis=2).sum())
            for emo, rgb in COLOURS.items() if emo != "neutral"}
    assert max(hits.values()) > 150, hits
    docs = ROOT / "docs"
    if os.environ.get("EMOTION_EDGE_UPDATE_DOCS"):
        shutil.copy(shot, docs / "http_view.png")


def test_http_view_survives_idle_connections_and_stays_quiet(caplog):
    """More idle connections than the limit: the oldest idle ones are dropped, a normal client is served,
    no traceback for clients that vanish, no Python version in Server:, nosniff on every answer."""
    import socket

    from edge.config import DisplayConfig
    from edge.sinks import http_view

    sink = http_view.HttpViewSink(DisplayConfig(http=f"127.0.0.1:{free_port()}"))
    sink.start()
    idle = []
    try:
        sink.handle(event([face((10, 10, 50, 50))]), None)
        for _ in range(3 * http_view.MAX_CONNECTIONS):
            idle.append(socket.create_connection((sink.host, sink.port), timeout=5))
        deadline = time.monotonic() + 10
        while sink.server.dropped_idle < 2 * http_view.MAX_CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.05)
        r = urllib.request.urlopen(f"http://{sink.host}:{sink.port}/event", timeout=5)
        assert r.status == 200 and json.loads(r.read())["faces"]
        assert r.headers["Server"] == "emotion-edge" and r.headers["X-Content-Type-Options"] == "nosniff"
        assert sink.server.dropped_idle >= 2 * http_view.MAX_CONNECTIONS
        assert len(sink.server.conns) <= http_view.MAX_CONNECTIONS
        closed = 0
        for s in idle[:http_view.MAX_CONNECTIONS]:  # the oldest: closed by the server (EOF), not left hanging
            s.settimeout(2)
            try:
                closed += s.recv(1) == b""
            except OSError:
                closed += 1
        assert closed == http_view.MAX_CONNECTIONS
        # A viewer that hangs up in the middle of the stream: no traceback.
        s = socket.create_connection((sink.host, sink.port), timeout=5)
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        for _ in range(5):
            sink.handle(event([face((10, 10, 50, 50))]), SimpleNamespace(main=np.zeros((480, 640, 3), np.uint8)))
            time.sleep(0.1)
    finally:
        for s in idle:
            s.close()
        sink.close()
    assert "Traceback" not in caplog.text


def test_http_auth_scheme_is_case_insensitive_and_failures_are_logged_once(tmp_path, caplog):
    from edge.config import DisplayConfig
    from edge.sinks.http_view import HttpViewSink

    pw = tmp_path / "pw"
    pw.write_text("letmein\n")
    sink = HttpViewSink(DisplayConfig(http=f"127.0.0.1:{free_port()}", http_password_file=str(pw)))
    sink.start()
    url = f"http://{sink.host}:{sink.port}/"
    try:
        token = b64encode(b"viewer:letmein").decode()
        for scheme in ("Basic", "basic", "BASIC"):
            r = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"{scheme} {token}"}),
                                       timeout=5)
            assert r.status == 200
        caplog.set_level("WARNING")
        for _ in range(20):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Basic eDp5"}), timeout=5)
    finally:
        sink.close()
    failed = [r for r in caplog.records if "failed login" in r.getMessage()]
    assert len(failed) == 1 and "1 failed login" in failed[0].getMessage()


@pytest.mark.parametrize("http, message", [
    ("127.0.0.1:{busy}", "cannot listen on 127.0.0.1:{busy}"),
    ("no-such-host.invalid:8080", "cannot listen on no-such-host.invalid:8080"),
])
def test_output_that_cannot_start_is_one_line_and_mqtt_says_offline(broker, tmp_path, http, message):
    import socket

    import paho.mqtt.client as mqtt

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n'
                   f'[service]\ndevice = "t"\n[display]\nhttp = "{http.format(busy=busy)}"\n')
    try:
        r = emotion_edge("run", "--config", str(cfg), "--source", "demo:3", "--events", "none", timeout=60)
    finally:
        holder.close()
    assert r.returncode == 1
    assert message.format(busy=busy) in r.stderr and "Traceback" not in r.stderr, r.stderr
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda c_, u, m: got.append(m.payload.decode())
    c.connect("127.0.0.1", broker.port)
    c.subscribe("emotion-edge/t/availability")
    c.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    c.loop_stop()
    assert got in ([], ["offline"])  # never "online" left behind
