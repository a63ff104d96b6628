"""The camera path's frame budget, in-process through app.build: a clip replayed as a camera, full scans every
k-th frame with window searches between them, classification at a rate, a worker thread, the model chosen by
measured speed. Speed itself is measured by scripts/bench_camera.py, not asserted here."""
import logging
import threading
import time

import numpy as np
import pytest

from edge import app, config
from edge.cadence import MAX_EVERY, MIN_EVERY, ClassifyCadence, ScanCadence, file_scan_every
from edge.pipeline import Cadence, Pipeline
from edge.sinks import Sink
from edge.sources.base import FrameSource, make_frame
from edge.track import Track


class Collect(Sink):
    name = "collect"

    def __init__(self, delay: float = 0.0):
        self.events, self.delay = [], delay

    def handle(self, ev, fr):
        self.events.append(ev)
        if self.delay:
            time.sleep(self.delay)  # an output slower than the camera: the replay must drop, not queue


class CountingDetector:
    """The real detector, counting its full scans and window searches."""

    def __init__(self, inner):
        self.inner, self.full, self.near = inner, 0, 0

    def detect(self, gray, tilted=False):
        self.full += 1
        return self.inner.detect(gray, tilted=tilted)

    def detect_near(self, gray, boxes):
        self.near += 1
        return self.inner.detect_near(gray, boxes)


@pytest.fixture(scope="module")
def demo_frames():
    """The demo clip's frames (the face moves, zooms and touches the edge), decoded once."""
    from edge.sources.demo import DemoSource

    src = DemoSource(90)
    return [f.main for f in iter(src.read, None)]


class Frames(FrameSource):
    """Frames one by one as a live source, with the capture times of a 30-fps camera (no pacing, no drops),
    so two runs see exactly the same frames."""

    live = True

    def __init__(self, frames):
        super().__init__()
        self.frames, self.i = frames, 0

    def read(self):
        if self.i >= len(self.frames):
            return None
        f = make_frame(self.i + 1, self.frames[self.i], 320, 240, t_capture=self.i / 30.0)
        self.i += 1
        return f


def run_frames(frames, cadence, cfg=None):
    cfg = cfg or config.Config()
    det, sink = CountingDetector(app.make_detector(cfg)), Collect()
    pipe = Pipeline(Frames(frames), det, app.make_classifier(cfg), app.make_tracker(cfg), [sink], cadence=cadence)
    res = pipe.run()
    return res, det, sink.events, pipe


def iou(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


# --- replaying a file as the camera ---------------------------------------------------------------------------

def test_live_replay_is_the_camera_path(demo_video):
    """--live / [camera] replay = "live": the lores plane, live defaults (no tilt, no flip), paced at the
    clip's rate, the cadence of a camera."""
    cfg = config.from_dict({"camera": {"replay": "live"}})
    sink = Collect()
    pipe = app.build(cfg, str(demo_video), app.Outputs(extra=[sink]))
    assert pipe.source.live and "replayed live at 30 fps" in pipe.source.description
    assert pipe.cadence.windows and pipe.cadence.classify_hz == 10.0 and pipe.cadence.scan_every == 0
    assert not pipe.tilted and not pipe.flip
    t0 = time.monotonic()
    with pipe.source:
        res = pipe.run()
    took = time.monotonic() - t0
    assert res.reason == "ended" and res.frames + pipe.source.dropped == 40
    assert took >= 39 / 30 * 0.9, took  # paced: 40 frames at 30 fps take 1.3 s, not as fast as they decode
    assert pipe.last_plane_shape == (240, 320) and pipe.last_main_size == (640, 480)
    assert sum(len(e.faces) for e in sink.events) >= 0.8 * len(sink.events)


def test_live_replay_drops_frames_when_the_pipeline_is_slow(demo_video):
    """A pipeline slower than the camera gets the newest frame; the ones in between are dropped and counted,
    never queued (latency stays about one frame)."""
    cfg = config.from_dict({"camera": {"replay": "live"}})
    sink = Collect(delay=0.1)  # 10 fps of output against a 30-fps clip
    pipe = app.build(cfg, str(demo_video), app.Outputs(extra=[sink]))
    with pipe.source:
        res = pipe.run()
    assert pipe.source.dropped >= 15, pipe.source.dropped
    assert res.frames + pipe.source.dropped == 40
    seqs = [e.seq for e in sink.events]
    assert seqs == sorted(seqs) and max(np.diff(seqs)) >= 2
    assert max(e.latency_ms for e in sink.events[1:]) < 100 + 34 + 50


def test_run_live_through_the_command_line(tmp_path, demo_video):
    from conftest import emotion_edge, events_of

    r = emotion_edge("run", "--live", "--source", str(demo_video))
    assert r.returncode == 0, r.stderr
    assert "replayed live" in r.stderr
    assert len(events_of(r.stdout)) >= 10


def test_stop_while_replaying_returns_at_once(demo_video):
    cfg = config.from_dict({"camera": {"replay": "live", "loop": True}})
    stop = threading.Event()
    pipe = app.build(cfg, str(demo_video), app.Outputs(extra=[Collect()]), stop=stop)
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    with pipe.source:
        res = pipe.run()
    assert res.reason == "stopped" and time.monotonic() - t0 < 1.5


# --- detection cadence ------------------------------------------------------------------------------------------

def test_video_files_scan_six_times_a_second_of_the_clip():
    assert [file_scan_every(fps) for fps in (30.0, 29.97, 25.0, 60.0, 6.0, 1.0)] == [5, 5, 4, 10, 1, 1]
    assert file_scan_every(0.0) == 1  # no rate: every frame
    assert file_scan_every(90000.0) == 20  # nor one it claims absurdly


def test_scan_cadence_follows_the_measured_cost():
    c = ScanCadence(every=0, fps=30.0)
    assert c.due()
    c.scanned(20.0)  # a tenth of a 33-ms frame for full scans: one every 6 frames
    assert c.every == 6
    c = ScanCadence(every=0, fps=30.0)
    c.scanned(1.0)
    assert c.every == MIN_EVERY
    c = ScanCadence(every=0, fps=30.0)
    c.scanned(500.0)
    assert c.every == MAX_EVERY
    c = ScanCadence(every=4, fps=30.0)
    c.scanned(500.0)
    assert c.every == 4  # a configured k stays
    for _ in range(3):
        assert not c.due()
        c.skipped()
    assert c.due()


def test_windows_follow_the_face_between_full_scans(demo_frames):
    """Every 5th frame a full scan, windows in between: boxes stay on the face (compared with a full scan on
    every frame) and the face is reported on as many frames."""
    _, det_ref, ref, _ = run_frames(demo_frames, Cadence(scan_every=1, windows=False, classify_hz=0.0))
    _, det, got, _ = run_frames(demo_frames, Cadence(scan_every=5, windows=True, classify_hz=0.0))
    assert det_ref.full == len(demo_frames)
    assert det.full <= len(demo_frames) // 5 + 6 and det.near >= len(demo_frames) // 2
    ref_ff = sum(len(e.faces) for e in ref)
    got_ff = sum(1 for r, g in zip(ref, got) for rf in r.faces if any(iou(rf.box, gf.box) >= 0.5 for gf in g.faces))
    assert got_ff >= 0.97 * ref_ff, (got_ff, ref_ff)
    ious = [max(iou(rf.box, gf.box) for gf in g.faces) for r, g in zip(ref, got) for rf in r.faces if g.faces]
    assert np.median(ious) >= 0.75


def test_windows_off_carry_the_boxes(demo_frames):
    _, det, got, _ = run_frames(demo_frames[:30], Cadence(scan_every=5, windows=False, classify_hz=0.0))
    assert det.full == 6 and det.near == 0
    assert all(e.faces for e in got[1:5])  # carried between scans


# --- classification cadence -------------------------------------------------------------------------------------

def _track(i, box=(100, 100, 50, 50)):
    t = Track(i, np.float32([*box, 0]), np.full(7, 1 / 7, np.float32))
    t.classified_box = t.box.copy()
    return t


def test_classify_cadence_staggers_faces_and_takes_new_ones_at_once():
    c = ClassifyCadence(hz=10.0, fps=30.0)
    tracks = [_track(i, (100 * i, 100, 50, 50)) for i in range(3)]
    for t in tracks:
        c.classified(t, 0.0)  # three faces that appeared together
    per_frame = []
    for k in range(1, 31):
        now = k / 30.0
        picked = c.pick(tracks, now)
        per_frame.append(len(picked))
        for i in picked:
            c.classified(tracks[i], now)
    assert max(per_frame) == 1  # spread over frames: the cost per frame stays flat
    assert 25 <= sum(per_frame) <= 31  # about 10 per face per second
    new = Track(9, np.float32([400, 100, 50, 50, 0]), None)
    assert c.pick(tracks + [new], 2.0)[-1] == 3  # a new face: classified on its first frame
    moved = _track(5)
    moved.box = np.float32([140, 100, 50, 50, 0])
    assert c.pick([moved], 0.0) == [0]  # moved: at once, due or not
    assert ClassifyCadence(hz=0.0).pick(tracks, 0.0) == [0, 1, 2]


def test_classification_rate_on_a_clip_keeps_the_emotions(demo_frames):
    _, _, ref, _ = run_frames(demo_frames, Cadence(scan_every=1, windows=False, classify_hz=0.0))
    _, _, got, pipe = run_frames(demo_frames, Cadence(scan_every=1, windows=False, classify_hz=10.0))
    faces = sum(len(e.faces) for e in got)
    assert pipe.stats.classified <= 0.6 * faces  # 10 of 30 a second, plus re-classifications on moves
    assert all(e.faces == () or e.faces[0].scores for e in got)  # events every frame, with scores
    same = [r.faces[0].emotion == g.faces[0].emotion for r, g in zip(ref, got) if r.faces and g.faces]
    assert np.mean(same) >= 0.9


def test_worker_thread_gives_the_same_faces(demo_frames):
    """threads = 2: tracked faces classified on a worker beside the full scan; what is reported is the same."""
    cad = Cadence(scan_every=3, windows=True, classify_hz=10.0)
    _, _, one, _ = run_frames(demo_frames, cad)
    _, _, two, pipe = run_frames(demo_frames, Cadence(scan_every=3, windows=True, classify_hz=10.0, workers=2))
    assert pipe._pool is not None
    assert [len(e.faces) for e in one] == [len(e.faces) for e in two]
    for a, b in zip(one, two):
        for fa, fb in zip(a.faces, b.faces):
            assert fa.emotion == fb.emotion and iou(fa.box, fb.box) > 0.9


# --- the model for the CPU ----------------------------------------------------------------------------------

def test_fast_model_chosen_when_a_face_is_over_budget(caplog):
    caplog.set_level(logging.INFO, logger="edge.app")
    slow = app.make_classifier(config.from_dict({"classifier": {"budget_ms": 0.001}}))
    assert slow.path.name == "emotion_fast_int8.tflite"
    assert "over the 0 ms budget" in caplog.text and "using the fast one" in caplog.text
    assert app.make_classifier(config.from_dict({"classifier": {"budget_ms": 0.0}})).path.name == "emotion_int8.tflite"
    named = app.make_classifier(config.from_dict({"classifier": {"model": "accurate", "budget_ms": 0.001}}))
    assert named.path.name == "emotion_int8.tflite"  # a model asked for by name is never swapped


# --- the benchmark ----------------------------------------------------------------------------------------------

def test_bench_times_the_camera_path(tmp_path, capsys):
    """`emotion-edge bench` replays its source live and reports the camera path's numbers (not judged here:
    scripts/bench_camera.py prints them for the README)."""
    import json

    from edge.bench import run_bench

    out = tmp_path / "bench.json"
    assert run_bench(config.Config(), "demo:60", 45, str(out)) == 0
    text = capsys.readouterr().out
    assert "replayed live at 30 fps" in text and "CPU ms per frame" in text and "latency p50 / p99" in text
    r = json.loads(out.read_text())
    assert r["live"] and r["frames"] + r["dropped"] >= 44 and r["plane"] == [240, 320]
    assert 0 < r["cpu_ms"] <= r["process_cpu_ms"] and r["latency_p99_ms"] >= r["latency_p50_ms"] > 0
    assert r["peak_rss_mb"] > 0 and r["faces_per_frame"] > 0.5


# --- outputs and other live sources -----------------------------------------------------------------------------

def test_a_failing_output_is_disabled_and_the_others_go_on(demo_frames, caplog):
    class Broken(Collect):
        name = "broken"

        def handle(self, ev, fr):
            raise OSError("disk full")

    good, bad = Collect(), Broken()
    cfg = config.Config()
    pipe = Pipeline(Frames(demo_frames[:20]), app.make_detector(cfg), app.make_classifier(cfg),
                    app.make_tracker(cfg), [bad, good], cadence=Cadence(0, True, 10.0))
    res = pipe.run()
    assert res.frames == 20 and len(good.events) == 20
    assert pipe.failed_outputs() == ["broken"] and pipe.stats.snapshot()["sink_errors"] == 1
    assert caplog.text.count("broken output failed, disabled for this run: disk full") == 1


def test_stream_source_keeps_the_newest_frame_and_reports_a_stall(demo_video):
    """LiveCaptureSource (webcams, RTSP/HTTP streams) on a file OpenCV opens as a stream: frames on the lores
    plane; when the stream stops delivering, a SourceError after stall_timeout, not a hang."""
    from edge.sources import SourceError
    from edge.sources.opencv import LiveCaptureSource

    src = LiveCaptureSource(str(demo_video), config.CameraConfig(), stall_timeout=1.0)
    src.open()
    try:
        first = src.read()
        assert first.gray.shape == (240, 320) and first.main_size == (640, 480) and src.live
        # The reader decodes the 40-frame file far faster than a camera delivers: reads skip to the newest
        # frame (never a backlog), then the end of the file is a stream that stopped.
        t0, seqs = time.monotonic(), [first.seq]
        with pytest.raises(SourceError, match="stopped delivering frames|no frame for"):
            while time.monotonic() - t0 < 10:
                seqs.append(src.read().seq)
                time.sleep(0.05)
        assert time.monotonic() - t0 < 5
        assert len(seqs) < 40 and seqs == sorted(seqs) and src.dropped > 0  # skipped frames are counted
    finally:
        src.stop()


def test_pi_camera_copies_its_main_image_only_while_a_face_is_small(pi_sim, monkeypatch, tmp_path):
    """Without an output that draws on it, the Pi camera's 640x480 main image is copied only for the frames after
    one with a face under SHARP_BELOW on the 320x240 lores plane, so that face is cut from the main image."""
    from edge.preprocess import SHARP_BELOW

    class Seen(Sink):
        name = "seen"

        def __init__(self):
            self.frames = []

        def handle(self, ev, fr):
            plane_w = [f.box[2] * fr.gray.shape[1] / fr.main_size[0] for f in ev.faces]
            self.frames.append((fr.main is not None, plane_w))

    from edge.sources.demo import write_demo_video

    # The camera's scene: the astronaut zooming in and out (the demo clip, 120 frames, looped).
    clip = tmp_path / "zoom.avi"
    write_demo_video(clip, frames=120)
    monkeypatch.setenv("PISIM_SOURCE", str(clip))
    from picamera2.request import CompletedRequest

    made = {"main": 0, "lores": 0}
    real = CompletedRequest.make_array

    def counting(self, name):
        made[name] += 1
        return real(self, name)

    monkeypatch.setattr(CompletedRequest, "make_array", counting)
    cfg = config.Config().replace("display", preview="none")
    pipe = app.build(cfg, "picamera2", app.Outputs())
    seen = Seen()
    pipe.sinks.append(seen)
    pipe.source.open()
    try:
        pipe.run(120)
    finally:
        pipe.source.stop()
    small = [any(w < SHARP_BELOW for w in widths) for _, widths in seen.frames]
    assert any(small) and not all(small), "the scene should hold both small and large faces"
    with_main = [m for m, _ in seen.frames]
    # (events carry boxes rounded to main pixels: a face within a pixel of the threshold may go either way)
    edge = [any(abs(w - SHARP_BELOW) <= 0.5 for w in widths) for _, widths in seen.frames]
    wrong = [(i, seen.frames[i - 1], seen.frames[i]) for i in range(1, len(small))
             if with_main[i] != small[i - 1] and not edge[i - 1]]
    assert not with_main[0] and not wrong
    assert made["main"] == sum(with_main) < len(with_main) == made["lores"]
