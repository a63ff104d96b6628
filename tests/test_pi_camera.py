"""The Pi camera path through the real picamera2 (PyPI), over a simulated Pi one layer below it
(tests/pisim: libcamera's Raspberry Pi pipeline handlers, kmsxx's pykms, the dma-heap).

Each test here is a failure a Pi owner met or would meet on day one; each failed against the code before
its fix."""
from __future__ import annotations

import logging
import threading
import time

import pytest
from conftest import cli_env, emotion_edge, pisim_log

from edge.config import Config


def test_the_real_picamera2_is_under_test(pi_sim):
    import picamera2

    assert "site-packages" in picamera2.__file__ and "pisim" not in picamera2.__file__
    from importlib.metadata import version

    assert version("picamera2") == "0.3.38"


def _source(cfg=None, **kw):
    from edge.sources.picamera2 import Picamera2Source

    return Picamera2Source((cfg or Config()).camera, **kw)


def _stop_within(source, seconds):
    """source.stop() on a thread: the test fails instead of hanging when stop blocks."""
    t = threading.Thread(target=source.stop, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"stop() still blocked after {seconds} s"
    return time.monotonic() - t0


def test_frames_flow_with_the_lores_luma_as_the_detector_plane(pi_sim):
    src = _source()
    src.open()
    try:
        frames = [src.read() for _ in range(5)]
    finally:
        _stop_within(src, 5)
    f = frames[-1]
    assert f.gray.shape == (240, 320) and f.main_size == (640, 480)
    assert 40 < f.gray.mean() < 220  # the picture, not an empty buffer
    assert [x.seq for x in frames] == sorted(x.seq for x in frames)


@pytest.mark.parametrize("sensor, mode, fov", [
    ("imx708", (2304, 1296), (4608, 2592)),
    ("imx219", (1640, 1232), (3280, 2464)),
    ("imx477", (2028, 1520), (4056, 3040)),
])
def test_the_whole_field_of_view_not_a_crop(pi_sim, monkeypatch, tmp_path, sensor, mode, fov):
    """Left to picamera2, the mode is scored against the 640x480 main stream: imx219 then runs its 640x480
    mode, a 1280x960 crop of the middle; imx477 its cropped 1332x990 one; imx708 the cropped 1536x864.
    A room needs the whole field: the smallest binned full-field mode fast enough for the frame rate."""
    monkeypatch.setenv("PISIM_CAMERAS", sensor)
    src = _source()
    src.open()
    try:
        src.read()
        assert src.sensor_mode["size"] == mode
    finally:
        _stop_within(src, 5)
    modes = [e for e in pisim_log(tmp_path) if e["event"] == "sensor-mode"]
    assert modes[-1]["size"] == list(mode) and modes[-1]["crop"] == [0, 0, *fov]


def test_selftest_reads_sensor_modes_without_losing_the_lores_stream(pi_sim, capsys):
    """Reading Picamera2.sensor_modes the first time configures the camera once per mode and leaves the
    last of those in place (no lores): the self-test crashed on lores['format'] and then on a missing
    stream. Now the modes are read before our configuration, and the report names mode and field."""
    from edge.selftest import Report, frames_lines

    cfg = Config().replace("display", preview="none")
    rep = Report()
    frames_lines(rep, cfg, "picamera2", 20)
    out = capsys.readouterr().out
    assert rep.counts["FAIL"] == 0, out
    assert "lores YUV420 320x240 stride 320" in out  # VC4: the luma plane of a 320-px stream needs no padding
    assert "sensor mode 2304x1296" in out and "full field of view" in out
    assert "ok   frames" in out


def test_selftest_stride_on_a_pi_5(pi_sim, monkeypatch, capsys):
    """PiSP aligns each plane to 64 bytes and the luma plane of YUV420 to twice that: 320 -> 384."""
    from edge.selftest import Report, frames_lines

    monkeypatch.setenv("PISIM_BOARD", "pi5")
    rep = Report()
    frames_lines(rep, Config().replace("display", preview="none"), "picamera2", 10)
    out = capsys.readouterr().out
    assert rep.counts["FAIL"] == 0 and "lores YUV420 320x240 stride 384" in out, out


def test_a_camera_that_stops_delivering_says_so_and_stops(pi_sim, monkeypatch, caplog):
    """After a capture job times out it stays queued, picamera2's stop() queues its own job behind it and
    waits without a timeout: the process hung until the watchdog killed it, the ribbon-cable line unsaid."""
    from edge.sources import SourceError

    monkeypatch.setenv("PISIM_FRAMES", "3")
    cfg = Config().replace("camera", capture_timeout=1.0).replace("display", preview="none")
    src = _source(cfg)
    src.open()
    caplog.set_level(logging.ERROR, logger="edge")
    with pytest.raises(SourceError, match="no frame for 1 s.*ribbon cable"):
        for _ in range(10):
            src.read()
    # the line is out before anything that can block
    assert any("no frame for 1 s" in r.getMessage() for r in caplog.records)
    assert _stop_within(src, 4) < 4


def test_check_of_a_camera_that_delivers_nothing_ends(tmp_path):
    env = cli_env(PISIM_FRAMES="0", PISIM_LOCKDIR=tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[camera]\ncapture_timeout = 1.0\n")
    t = time.monotonic()
    r = emotion_edge("check", "--source", "picamera2", "--config", str(cfg), env=env, pi_sim=True, timeout=60)
    line = next(ln for ln in r.stdout.splitlines() if " camera " in ln)
    assert line.startswith("FAIL") and "ribbon cable" in line, r.stdout + r.stderr
    assert time.monotonic() - t < 30


def test_picamera2_numbering_and_the_camera_the_selftest_names(pi_sim, monkeypatch, capsys):
    """picamera2 numbers the cameras it sorts (Pi cameras first, by Id, descending), not libcamera's
    order ("Num"): with a USB webcam enumerated first the self-test used to name the webcam."""
    from edge.selftest import Report, camera_lines

    monkeypatch.setenv("PISIM_BOARD", "pi5")
    monkeypatch.setenv("PISIM_CAMERAS", "imx708,imx219,uvc")
    from picamera2 import Picamera2

    info = Picamera2.global_camera_info()
    assert [c["Model"] for c in info] == ["imx708", "imx219", "USB Camera"]
    assert [c["Num"] for c in info] != [0, 1, 2]  # libcamera's own order differs
    for n, model in ((0, "imx708"), (1, "imx219")):
        src = _source(camera_num=n)
        src.open()
        try:
            camera_lines(Report(), src, 40)
        finally:
            _stop_within(src, 5)
        line = next(ln for ln in capsys.readouterr().out.splitlines() if " camera " in ln)
        assert model in line and "USB" not in line, line


def test_a_camera_number_that_is_not_there(pi_sim):
    from edge.sources import SourceError

    with pytest.raises(SourceError, match=r"no Pi camera 3 \(1 found: 0 imx708\)"):
        _source(camera_num=3).open()


# --- the HDMI preview ------------------------------------------------------------------------------------

def _run_with_preview(frames=15, **cfg_display):
    from edge.app import Outputs, build
    from edge.display import PreviewSink

    cfg = Config().replace("display", preview="drm", **cfg_display)
    pipe = build(cfg, "picamera2", Outputs())
    pipe.source.open()
    try:
        t = time.monotonic()
        pipe.run(frames)
        seconds = time.monotonic() - t
    finally:
        _stop_within(pipe.source, 5)
    return pipe, next(s for s in pipe.sinks if isinstance(s, PreviewSink)), seconds


def test_preview_on_a_connected_screen_commits_the_overlay(pi_sim, tmp_path):
    pipe, sink, _ = _run_with_preview(30)
    assert sink.active and sink.on_screen is True and sink.window["width"] == 1920
    commits = [e for e in pisim_log(tmp_path) if e["event"] == "commit"]
    assert commits and all(c["result"] == 0 for c in commits)
    assert sink.overlays >= 1  # the astronaut is boxed


def test_no_screen_means_no_preview_and_no_lost_start(pi_sim, monkeypatch, tmp_path, caplog):
    """Headless, the usual service: picamera2's DRM preview falls back to a disconnected connector, every
    commit fails unseen (or, in older picamera2, the plane reservation kills its thread and the first
    capture times out). The preview is not attached at all, in one line why."""
    monkeypatch.setenv("PISIM_HDMI", "disconnected")
    caplog.set_level(logging.INFO, logger="edge")
    pipe, sink, seconds = _run_with_preview(15)
    assert not sink.active and "no display connected" in sink.why
    assert not [e for e in pisim_log(tmp_path) if e["event"] == "commit"]
    assert "DRM on the attached display" not in caplog.text
    assert seconds < pipe.source.capture_timeout  # no capture timeout spent on a preview that cannot show


def test_a_desktop_holding_the_screen_is_reported_not_hidden(pi_sim, monkeypatch, tmp_path, caplog):
    """With a desktop compositor as DRM master every atomic commit returns -EACCES and kmsxx raises
    nothing: frames flowed, the journal said "DRM on the attached display", nothing was on screen."""
    monkeypatch.setenv("PISIM_DRM_MASTER", "desktop")
    caplog.set_level(logging.INFO, logger="edge")
    pipe, sink, _ = _run_with_preview(10)
    assert not sink.active and "desktop" in sink.why
    assert "do_boot_behaviour B1" in caplog.text
    assert "DRM on the attached display" not in caplog.text
    assert pipe.stats.snapshot()["frames"] >= 10  # the camera still runs


def test_a_board_short_of_memory_gets_a_picture_sized_framebuffer(pi_sim, monkeypatch, tmp_path):
    """DrmPreview allocates a framebuffer the size of its window; on a 512 MB Zero 2 W a 4K screen's is
    33 MB of CMA. There the window is the picture's size, centred."""
    import edge.display

    monkeypatch.setenv("PISIM_BOARD", "zero2w")
    monkeypatch.setenv("PISIM_HDMI_MODE", "3840x2160")
    monkeypatch.setattr(edge.display, "total_memory", lambda: 512 << 20)
    pipe, sink, _ = _run_with_preview(10)
    fbs = [e for e in pisim_log(tmp_path) if e["event"] == "dumb-fb"]
    assert sink.active and fbs and max(e["bytes"] for e in fbs) <= 640 * 480 * 4
    assert sink.window == {"x": (3840 - 640) // 2, "y": (2160 - 480) // 2, "width": 640, "height": 480}


@pytest.mark.parametrize("env, qt, gl, expected, why", [
    ({"DISPLAY": ":0"}, True, True, "qtgl", "desktop"),
    ({"DISPLAY": "localhost:10.0"}, True, True, "drm", "not a local display"),  # ssh -X
    ({"DISPLAY": ":0"}, True, False, "drm", "python3-opengl"),  # PyQt5 without PyOpenGL
    ({"DISPLAY": ":0", "INVOCATION_ID": "x"}, True, True, "drm", "service"),  # DISPLAY kept by sudo/systemd env
    ({}, True, True, "drm", "no desktop"),
])
def test_qtgl_only_where_it_can_open_a_window(env, qt, gl, expected, why):
    """picamera2's QtGL preview waits for ever when its window cannot open (QtPreviewBase.start), and
    picamera2 itself uses plain Qt for a non-local DISPLAY."""
    from edge.display import choose_preview

    kind, reason = choose_preview("auto", env, qt=qt, gl=gl)
    assert kind == expected and why in reason, reason


# --- the self-test, end to end ---------------------------------------------------------------------------

def test_selftest_full_over_the_simulated_pi(tmp_path, broker):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {broker.port}\n[display]\npreview = "drm"\n')
    env = cli_env(PISIM_LOCKDIR=tmp_path, PISIM_LOG=tmp_path / "pisim.log")
    r = emotion_edge("check", "--full", "--source", "picamera2", "--config", str(cfg), "--frames", "30", env=env,
                     pi_sim=True)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "imx708" in out and "sensor mode 2304x1296" in out and "full field of view" in out
    assert "main XRGB8888 640x480 stride 2560, lores YUV420 320x240 stride 320" in out
    assert "ok   preview   DRM 1920x1080, on screen" in out
    assert "faces per frame 1.00" in out  # the astronaut, through the real picamera2's buffers
    assert out.splitlines()[-1].startswith("selftest: 3 ok, 0 warn, 0 fail")


def test_selftest_full_on_the_demo_clip():
    r = emotion_edge("check", "--full", "--source", "demo", "--frames", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    names = [ln[5:14].strip() for ln in r.stdout.splitlines() if ln[:4].strip() in ("ok", "info", "warn", "FAIL")]
    assert names == ["board", "cpu", "python", "camera", "frames", "rooms", "preview", "mqtt", "service", "thermal"], \
        r.stdout
    assert "20 frames in" in r.stdout and "CPU-ms/frame" in r.stdout and "faces per frame 1.00" in r.stdout
    assert r.stdout.splitlines()[-1].startswith("selftest: 1 ok, 0 warn, 0 fail")


def test_selftest_says_the_preview_is_not_on_screen_under_a_desktop(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[display]\npreview = "drm"\n')
    env = cli_env(PISIM_LOCKDIR=tmp_path, PISIM_DRM_MASTER="desktop")
    r = emotion_edge("check", "--full", "--source", "picamera2", "--config", str(cfg), "--frames", "10", env=env,
                     pi_sim=True)
    line = next(ln for ln in r.stdout.splitlines() if " preview " in ln)
    assert line.startswith("warn") and "not on screen" in line and "desktop" in line, r.stdout
