"""The runtime end to end: real Haar cascade, real int8 model, real images and video files."""
import json
import signal

import cv2
import jsonschema
import numpy as np
import pytest
from conftest import ROOT, emotion_edge, events_of, spawn

from edge import app, config
from edge.config import CameraConfig, DetectorConfig, TrackerConfig
from edge.pipeline import Pipeline
from edge.sources import open_source
from edge.track import IouTracker

SCHEMA = json.loads((ROOT / "edge" / "schemas" / "event.json").read_text())


def validate(ev):
    jsonschema.validate(ev, SCHEMA, format_checker=jsonschema.FormatChecker())


def test_version():
    r = emotion_edge("--version")
    assert r.returncode == 0 and r.stdout.startswith("emotion-edge ")


def test_smiling_astronaut_is_happy(tmp_path, astronaut_bgr):
    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), astronaut_bgr)
    r = emotion_edge("run", "--source", str(img), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (ev,) = events_of(r.stdout)
    validate(ev)
    assert ev["frame"] == {"w": 512, "h": 512}
    assert len(ev["faces"]) == 1
    face = ev["faces"][0]
    x, y, w, h = face["box"]
    # Eileen Collins' face in skimage's astronaut photo is around x 170-260, y 40-150.
    assert 140 < x + w / 2 < 280 and 40 < y + h / 2 < 160
    assert face["emotion"] == "happy", face["scores"]
    assert abs(sum(face["scores"].values()) - 1) < 0.05


def group_photo(astronaut_bgr) -> np.ndarray:
    """A 12-megapixel phone-sized frame with the astronaut at three sizes: faces of about 200, 190
    and 100 px (the last one a person a few metres back)."""
    canvas = np.full((3000, 4000, 3), 120, np.uint8)
    for x, y, s in [(100, 100, 1000), (1500, 200, 500), (600, 1800, 1100)]:
        canvas[y:y + s, x:x + s] = cv2.resize(astronaut_bgr, (s, s), interpolation=cv2.INTER_AREA)
    return canvas


def test_small_faces_in_a_large_photo_are_found(tmp_path, astronaut_bgr):
    img = tmp_path / "group.jpg"
    cv2.imwrite(str(img), group_photo(astronaut_bgr))
    r = emotion_edge("run", "--source", str(img), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (ev,) = events_of(r.stdout)
    sizes = sorted(f["box"][2] for f in ev["faces"])
    assert len(sizes) == 3 and 80 < sizes[0] < 130, sizes  # the 1024 px plane of before missed the small one
    assert [f["emotion"] for f in ev["faces"]] == ["happy"] * 3


def test_second_cascade_rejects_small_texture_faces_but_keeps_real_ones(astronaut_bgr):
    from skimage import data

    from edge.detect import HaarDetector
    from edge.sources.base import gray_plane

    gravel = cv2.resize(data.gravel(), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    plain = HaarDetector(DetectorConfig(confirm_below=0.0))
    checked = HaarDetector(DetectorConfig(confirm_below=0.1))
    found = plain.detect(gravel)
    assert len(found) >= 4  # Haar alone sees faces in gravel on a large plane
    kept = checked.detect(gravel)
    assert len(kept) <= len(found) // 2
    assert checked.rejected == len(found) - len(kept)
    faces = gray_plane(group_photo(astronaut_bgr), 2048)
    assert len(checked.detect(faces)) == len(plain.detect(faces)) == 3


def rolled(img: np.ndarray, degrees: float) -> np.ndarray:
    """The photo turned counter-clockwise on screen about its centre, as a camera held askew or a leaning head."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def test_leaning_faces_are_found_and_turned_upright(astronaut_bgr):
    from edge.detect import HaarDetector
    from edge.preprocess import face_patch

    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    det = HaarDetector(DetectorConfig(confirm_below=0.1, tilt=20))
    (upright,) = det.detect(gray, tilted=True)
    assert upright[4] == 0  # an upright face keeps its upright box
    reference = face_patch(gray, upright, 0.0).astype(float)
    centre = upright[:2] + upright[2:4] / 2
    for degrees in (-26, -18, 24, 28):
        g = rolled(gray, degrees)
        assert len(det.detect(g)) == 0, degrees  # the upright search alone misses it
        (face,) = det.detect(g, tilted=True)
        assert face[4] == 20 * np.sign(degrees)  # found in the search turned the other way
        m = cv2.getRotationMatrix2D((256, 256), degrees, 1.0)
        moved = m @ np.array([*centre, 1.0])
        assert np.hypot(*(face[:2] + face[2:4] / 2 - moved)) < 0.2 * face[2], (degrees, face)
        patch = face_patch(g, face, 0.0).astype(float)
        unturned = face_patch(g, face[:4], 0.0).astype(float)
        # The crop turned upright looks like the upright face; the same box not turned does not.
        assert np.corrcoef(reference.ravel(), patch.ravel())[0, 1] > 0.65
        similarity = [np.corrcoef(reference.ravel(), p.ravel())[0, 1] for p in (patch, unturned)]
        assert similarity[0] > similarity[1] + 0.15
    assert len(HaarDetector(DetectorConfig(tilt=0)).detect(rolled(gray, 24), tilted=True)) == 0  # tilt 0: upright only


def test_leaning_face_in_a_photo_through_the_cli(tmp_path, astronaut_bgr):
    img = tmp_path / "leaning.jpg"
    cv2.imwrite(str(img), rolled(astronaut_bgr, -24))
    out = tmp_path / "annotated.png"
    r = emotion_edge("run", "--source", str(img), "--annotate", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (ev,) = events_of(r.stdout)
    validate(ev)
    (face,) = ev["faces"]
    assert face["roll"] == -20.0 and face["emotion"] == "happy", face
    # The box is drawn turned: ink at the turned square's corners, none at the unturned square's bottom corners.
    drawn = np.any(cv2.imread(str(out)).astype(int) - cv2.imread(str(img)) != 0, axis=2)
    x, y, w, h = face["box"]
    for cx, cy in cv2.boxPoints(((x + w / 2, y + h / 2), (w, h), -face["roll"])).round().astype(int):
        assert drawn[cy - 2:cy + 3, cx - 2:cx + 3].any(), (cx, cy)
    assert not drawn[y + h - 4:y + h, x:x + 4].any() and not drawn[y + h - 4:y + h, x + w - 4:x + w].any()
    cfg = tmp_path / "upright.toml"
    cfg.write_text("[detector]\ntilt = 0\n")
    r = emotion_edge("run", "--config", str(cfg), "--source", str(img), cwd=tmp_path)
    (ev,) = events_of(r.stdout)
    assert ev["faces"] == []


def test_tilted_search_and_flip_are_for_recorded_sources_unless_asked(monkeypatch, demo_video):
    from edge.sources.base import FrameSource

    class Live(FrameSource):
        live = True

        def read(self):
            return None

    out = app.Outputs(events=None)
    recorded = app.build(config.from_dict({}), str(demo_video), out)
    assert recorded.tilted and recorded.flip
    monkeypatch.setattr(app, "make_source", lambda cfg, spec, want_main, stop=None: Live())
    live = app.build(config.from_dict({}), "webcam:0", out)
    assert not live.tilted and not live.flip
    asked = app.build(config.from_dict({"detector": {"tilt_live": True}, "classifier": {"flip_live": True}}),
                      "webcam:0", out)
    assert asked.tilted and asked.flip
    monkeypatch.undo()
    off = app.build(config.from_dict({"detector": {"tilt": 0}, "classifier": {"flip": False}}), str(demo_video), out)
    assert not off.tilted and not off.flip


def test_thumbnail_and_photo_in_shadow(tmp_path, astronaut_bgr):
    thumb = tmp_path / "thumb.png"
    cv2.imwrite(str(thumb), cv2.resize(astronaut_bgr, (128, 128), interpolation=cv2.INTER_AREA))
    r = emotion_edge("run", "--source", str(thumb), cwd=tmp_path)
    (ev,) = events_of(r.stdout)
    (face,) = ev["faces"]  # a 24-px face: under the detector's 40-px window without the enlarged plane
    x, y, w, h = face["box"]
    assert ev["frame"] == {"w": 128, "h": 128} and 18 < w < 32 and 35 < x + w / 2 < 70, face["box"]
    assert face["emotion"] == "happy"

    def confidence(img, *args):
        path = tmp_path / "p.png"
        cv2.imwrite(str(path), img)
        r = emotion_edge("run", *args, "--source", str(path), cwd=tmp_path)
        (ev,) = events_of(r.stdout)
        (face,) = ev["faces"]
        return face["scores"]["happy"]

    shadow = (astronaut_bgr * 0.25).astype(np.uint8)
    normal, dark = confidence(astronaut_bgr), confidence(shadow)
    assert dark > normal - 0.1  # equalised before the model, the dark face reads about as well
    contradicting = tmp_path / "contradicting.toml"
    contradicting.write_text('[classifier]\npreprocess = "none"\n')
    r = emotion_edge("run", "--config", str(contradicting), "--source", str(thumb), cwd=tmp_path)
    assert r.returncode == 1 and 'expects faces with preprocess = "denoise-equalize"' in r.stderr


def test_portrait_phone_clip_is_played_upright(tmp_path, astronaut_bgr):
    """A phone held upright stores landscape frames and a 90-degree display matrix in the track header."""
    import struct

    portrait = np.full((640, 480, 3), 100, np.uint8)
    portrait[64:576] = cv2.resize(astronaut_bgr, (480, 512))
    stored = cv2.rotate(portrait, cv2.ROTATE_90_COUNTERCLOCKWISE)
    raw = tmp_path / "raw.mp4"
    vw = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), 15, (640, 480))
    for _ in range(10):
        vw.write(stored)
    vw.release()
    b = bytearray(raw.read_bytes())
    i = b.find(b"tkhd")
    assert i > 0 and b[i + 4] == 0  # version 0 header: the matrix follows 40 bytes of fields
    off = i + 8 + 20 + 8 + 8
    assert struct.unpack(">9i", b[off:off + 36]) == (65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30)  # identity
    b[off:off + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 480 << 16, 0, 1 << 30)  # turn 90 degrees
    clip = tmp_path / "phone.mp4"
    clip.write_bytes(bytes(b))
    r = emotion_edge("run", "--source", str(clip), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    evs = events_of(r.stdout)
    assert len(evs) == 10 and all(e["frame"] == {"w": 480, "h": 640} for e in evs)
    assert all(len(e["faces"]) == 1 and e["faces"][0]["emotion"] == "happy" for e in evs)


def test_frame_without_face_gives_empty_faces(tmp_path):
    rng = np.random.default_rng(0)
    img = tmp_path / "wall.jpg"
    cv2.imwrite(str(img), cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (9, 9), 3))
    r = emotion_edge("run", "--source", str(img))
    assert r.returncode == 0, r.stderr
    (ev,) = events_of(r.stdout)
    validate(ev)
    assert ev["faces"] == []


def test_folder_in_name_order_with_source_names_and_bad_file_skipped(tmp_path, astronaut_bgr):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "b_face.jpg"), astronaut_bgr)
    cv2.imwrite(str(d / "a_blank.png"), np.full((240, 320, 3), 90, np.uint8))
    cv2.imwrite(str(d / "c_gray.bmp"), cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "d_face.tiff"), astronaut_bgr[:, ::-1])
    (d / "e_broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (d / "notes.txt").write_text("not an image")
    r = emotion_edge("run", "--source", str(d))
    assert r.returncode == 0, r.stderr
    evs = events_of(r.stdout)
    for ev in evs:
        validate(ev)
    assert [e["source"] for e in evs] == ["a_blank.png", "b_face.jpg", "c_gray.bmp", "d_face.tiff"]
    assert [len(e["faces"]) for e in evs] == [0, 1, 1, 1]
    assert "e_broken.jpg: not a readable image, skipped" in r.stderr
    assert "1 bad" in r.stderr


def test_video_file_one_event_per_frame_with_stable_ids(demo_video):
    r = emotion_edge("run", "--source", str(demo_video))
    assert r.returncode == 0, r.stderr
    evs = events_of(r.stdout)
    assert [e["seq"] for e in evs] == list(range(1, 41))
    for ev in evs:
        validate(ev)
    ids = {f["id"] for e in evs for f in e["faces"]}
    with_face = sum(1 for e in evs if e["faces"])
    assert with_face >= 30
    assert len(ids) <= 2, ids  # one face, tracked; a re-entry may start a second id
    assert all(e["latency_ms"] >= 0 for e in evs)


def test_max_frames_and_events_file(tmp_path, demo_video):
    out = tmp_path / "ev.jsonl"
    r = emotion_edge("run", "--source", str(demo_video), "--max-frames", "7", "--events", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    lines = out.read_text().splitlines()
    assert len(lines) == 7 and json.loads(lines[-1])["seq"] == 7


def test_annotated_video_has_every_frame_and_boxes(tmp_path, demo_video):
    out = tmp_path / "annotated.mp4"
    r = emotion_edge("run", "--source", str(demo_video), "--annotate", str(out), "--events", "none")
    assert r.returncode == 0, r.stderr
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert n == 40 and ok and frame.shape == (480, 640, 3)


def test_annotated_clip_keeps_the_clips_frame_rate(tmp_path, astronaut_bgr):
    clip = tmp_path / "slow.mp4"
    vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 15, (512, 512))
    for _ in range(15):
        vw.write(astronaut_bgr)
    vw.release()
    out = tmp_path / "annotated.mp4"
    r = emotion_edge("run", "--source", str(clip), "--annotate", str(out), "--events", "none")
    assert r.returncode == 0, r.stderr
    cap = cv2.VideoCapture(str(out))
    fps, n = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert (fps, n) == (15.0, 15)  # written at 30 fps before, it played at double speed


def test_clip_summary_and_timeline_picture(tmp_path, demo_video):
    from edge.draw import colour

    out = tmp_path / "timeline.png"
    r = emotion_edge("run", "--source", str(demo_video), "--timeline", str(out), "--events", "none")
    assert r.returncode == 0, r.stderr
    assert "summary: faces in 40 of 40 frames; happy" in r.stderr
    assert "face 1: 40 frames, 0.0 s to 1.3 s; happy" in r.stderr  # the demo clip runs at 30 fps
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 1200
    row = img[16 + 17, 90:1160]  # the first row's middle line, across the plot
    happy = np.all(np.abs(row.astype(int) - colour("happy", "bgr")) < 8, axis=1)
    assert happy.mean() > 0.9

    bad = emotion_edge("run", "--source", str(demo_video), "--timeline", str(tmp_path / "t.txt"), "--events", "none")
    assert bad.returncode == 2 and "the picture must be one of .jpg .jpeg .png" in bad.stderr


def test_folder_summary_counts_every_photo(tmp_path, astronaut_bgr):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        cv2.imwrite(str(d / f"{i}.jpg"), astronaut_bgr)
    cv2.imwrite(str(d / "2_group.jpg"), group_photo(astronaut_bgr))
    cv2.imwrite(str(d / "3_blank.png"), np.full((240, 320, 3), 90, np.uint8))
    r = emotion_edge("run", "--source", str(d), "--events", "none", "--timeline", str(tmp_path / "t.png"))
    assert r.returncode == 0, r.stderr
    assert "summary: 5 faces in 3 of 4 photos; happy 100 %" in r.stderr
    assert "face 1:" not in r.stderr  # a folder's faces are unrelated: no per-face lines
    assert cv2.imread(str(tmp_path / "t.png")) is not None
    single = emotion_edge("run", "--source", str(d / "0.jpg"), "--events", "none")
    assert "summary:" not in single.stderr  # one photo: its event says it all


def test_phone_photos_opencv_cannot_read_are_named_not_passed_over(tmp_path, astronaut_bgr):
    """An iPhone folder holds HEIC photos, which OpenCV cannot decode: they used to be left out of a folder
    without a word, and a single one was opened as a video ("not a video OpenCV can decode")."""
    d = tmp_path / "phone"
    d.mkdir()
    cv2.imwrite(str(d / "IMG_0001.jpg"), astronaut_bgr)
    heic = d / "IMG_0002.HEIC"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    r = emotion_edge("run", "--source", str(d))
    assert r.returncode == 0, r.stderr
    assert len(events_of(r.stdout)) == 1
    assert "1 photo(s) skipped: OpenCV cannot read HEIC/HEIF photos" in r.stderr and "heif-convert" in r.stderr
    assert "1 frames, 1 bad" in r.stderr
    r = emotion_edge("run", "--source", str(heic))
    assert r.returncode == 1 and "convert them to JPEG" in r.stderr and "video" not in r.stderr


def test_avif_photos_are_read_where_opencv_can(tmp_path, astronaut_bgr):
    from PIL import Image

    d = tmp_path / "web"
    d.mkdir()
    try:
        Image.fromarray(astronaut_bgr[:, :, ::-1]).save(d / "a.avif")
    except (KeyError, OSError):
        pytest.skip("this Pillow cannot write AVIF")
    if cv2.imdecode(np.fromfile(d / "a.avif", np.uint8), cv2.IMREAD_COLOR) is None:
        pytest.skip("this OpenCV build cannot read AVIF")
    r = emotion_edge("run", "--source", str(d))
    assert r.returncode == 0, r.stderr
    (ev,) = events_of(r.stdout)
    assert ev["source"] == "a.avif" and ev["faces"][0]["emotion"] == "happy"


def test_annotated_image_shows_box_in_emotion_colour(tmp_path, astronaut_bgr):
    from edge.draw import COLOURS

    src = tmp_path / "a.png"
    cv2.imwrite(str(src), astronaut_bgr)
    out = tmp_path / "a_annotated.png"
    r = emotion_edge("run", "--source", str(src), "--annotate", str(out))
    ev = events_of(r.stdout)[0]
    img = cv2.imread(str(out))
    x, y, w, h = ev["faces"][0]["box"]
    rgb = COLOURS[ev["faces"][0]["emotion"]]
    left_edge = img[y + h // 2, x]
    assert tuple(int(v) for v in left_edge[::-1]) == rgb


def test_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    r = emotion_edge("run", "--source", str(bad))
    assert r.returncode == 1
    assert "broken.mp4" in r.stderr and ("corrupt" in r.stderr or "decode" in r.stderr)


def test_unreadable_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"GIF89a nope")
    r = emotion_edge("run", "--source", str(bad))
    assert r.returncode == 1
    assert "photo.jpg: not a readable image" in r.stderr


def test_missing_source_and_missing_model_are_clear_errors(tmp_path):
    r = emotion_edge("run", "--source", str(tmp_path / "nothing.mp4"))
    assert r.returncode == 1 and "nothing.mp4': no such file or folder" in r.stderr
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[classifier]\nmodel = "{tmp_path}/missing.tflite"\n')
    r = emotion_edge("run", "--config", str(cfg), "--source", "demo:2")
    assert r.returncode == 1 and "missing.tflite: model file not found" in r.stderr
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all" * 10)
    cfg.write_text(f'[classifier]\nmodel = "{junk}"\n')
    r = emotion_edge("run", "--config", str(cfg), "--source", "demo:2")
    assert r.returncode == 1 and "junk.tflite: not a TFLite model" in r.stderr


def test_default_source_runs_anywhere(tmp_path):
    """No camera here: auto falls back to the demo clip built from scikit-image's astronaut."""
    r = emotion_edge("run", "--max-frames", "10", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    evs = events_of(r.stdout)
    assert len(evs) == 10 and any(e["faces"] for e in evs)


def test_sigterm_stops_cleanly():
    p = spawn("run", "--source", "demo:100000", "--events", "-")
    assert p.stdout.readline().startswith("{")  # running: its first event
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "SIGTERM: stopping" in err and "done (stopped)" in err


def test_status_line_on_stderr(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[service]\nstatus_interval = 0.2\n")
    r = emotion_edge("run", "--config", str(cfg), "--source", "demo:60", "--events", "none")
    assert r.returncode == 0
    assert "status: " in r.stderr and " fps, " in r.stderr and "face" in r.stderr



def test_status_line_shows_progress_through_a_clip(tmp_path, demo_video):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[service]\nstatus_interval = 0.05\n")
    r = emotion_edge("run", "--config", str(cfg), "--source", str(demo_video), "--events", "none")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "status: " in ln]
    assert lines and all("/40 (" in ln for ln in lines), lines  # the demo clip has 40 frames
    assert any(" s left" in ln for ln in lines), lines


class CountingDetector:
    """Counts full scans; window searches go straight to the real detector."""

    def __init__(self, inner, windows=False):
        self.inner, self.calls = inner, 0
        if windows:
            self.detect_near = inner.detect_near

    def detect(self, gray, tilted=False):
        self.calls += 1
        return self.inner.detect(gray, tilted=tilted)


class Collect:
    name, needs_image = "collect", False

    def __init__(self):
        self.events = []

    def start(self):
        pass

    def handle(self, ev, fr):
        self.events.append(ev)

    def close(self):
        pass


def run_clip(clip, frames):
    """A video file through the file path in-process: its events and the full scans it took."""
    cfg = config.from_dict({})
    src = open_source(str(clip), cfg.camera)
    det, sink = CountingDetector(app.make_detector(cfg), windows=True), Collect()
    with src:
        pipe = Pipeline(src, det, app.make_classifier(cfg, live=False), app.make_tracker(cfg), [sink],
                        cadence=app.cadence(cfg, src), tilted=True)
        assert pipe.run().frames == frames
    return sink.events, det.calls, pipe


def test_detect_every_k_frames_carries_boxes(demo_video):
    cfg = config.from_dict({"detector": {"every": 3}})
    det = CountingDetector(app.make_detector(cfg))
    src = open_source(str(demo_video), cfg.camera)
    sink = Collect()
    with src:
        pipe = Pipeline(src, det, app.make_classifier(cfg), app.make_tracker(cfg), [sink],
                        cadence=app.cadence(cfg, src))
        res = pipe.run()
    assert res.frames == 40
    assert det.calls <= 40 // 3 + 8  # plus re-detections when the face was lost
    carried = [e for i, e in enumerate(sink.events) if i % 3 != 0 and e.faces]
    assert carried, "frames between detections should still report the tracked face"


def test_tracker_keeps_ids_and_smooths():
    t = IouTracker(TrackerConfig(iou=0.3, smoothing=0.5, max_missed=1))
    happy, sad = np.eye(7)[3], np.eye(7)[4]

    def frame(boxes, scores):  # every face classified on this frame
        tracks = t.match(boxes)
        for track, sc in zip(tracks, scores):
            t.observe(track, sc)
        return tracks

    a = frame([[100, 100, 50, 50]], [happy])[0]
    b = frame([[104, 102, 50, 50], [300, 100, 40, 40]], [sad, happy])
    assert b[0].id == a.id and b[1].id != a.id
    assert np.argmax(b[0].scores) == 3 or b[0].scores[3] == b[0].scores[4]  # one sad frame does not flip it
    frame([], [])
    frame([], [])
    c = frame([[104, 102, 50, 50]], [happy])[0]
    assert c.id not in (a.id, b[1].id)  # retired after max_missed


def test_picamera2_lores_stride_padding_and_limited_range(pi_sim, monkeypatch):
    """On a Pi 5 (PiSP) a 320-px lores luma plane is 384 bytes a row: the padding is not image. A limited
    range (16..235) luma plane is stretched to the full range the model was trained on."""
    from edge.sources.picamera2 import Picamera2Source

    monkeypatch.setenv("PISIM_BOARD", "pi5")

    def first_frame(luma_range):
        src = Picamera2Source(CameraConfig(luma_range=luma_range))
        src.open()
        try:
            return src.read(), src.stride
        finally:
            src.stop()

    f, stride = first_frame("full")
    assert stride == 384 and f.gray.shape == (240, 320) and f.gray.flags["C_CONTIGUOUS"]
    assert f.main is None and f.main_size == (640, 480)
    border = int(np.median(f.gray[:, -20:]))  # the scene's grey room at the right edge, not zero padding
    assert border == 90
    g, _ = first_frame("limited")
    assert int(np.median(g.gray[:, -20:])) == round((90 - 16) * 255 / 219)


def test_exif_rotated_phone_photo_is_upright(tmp_path, astronaut_bgr):
    """A portrait photo stored sideways with EXIF orientation 6 (rotate 90° clockwise to view)."""
    from PIL import Image

    sideways = cv2.rotate(astronaut_bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    img = Image.fromarray(cv2.cvtColor(sideways, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif.tobytes(), quality=92)
    r = emotion_edge("run", "--source", str(path))
    (ev,) = events_of(r.stdout)
    assert ev["frame"] == {"w": 512, "h": 512} and len(ev["faces"]) == 1


def test_huge_images_are_refused_from_their_header(tmp_path):
    """A 20000 x 20000 PNG is a few hundred KB on disk and 1.2 GB decoded: refused before decoding, a clear
    line alone, counted bad and skipped in a folder."""
    import struct
    import zlib

    from skimage import data

    from edge.sources.images import header_size

    def png(path, w, h):
        raw = zlib.compress(b"".join(b"\x00" + bytes(w) for _ in range(h)), 9)

        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                         + chunk(b"IDAT", raw) + chunk(b"IEND", b""))

    big = tmp_path / "big.png"
    png(big, 20000, 20000)
    assert big.stat().st_size < 2_000_000
    r = emotion_edge("run", "--source", str(big))
    assert r.returncode == 1 and "over the 64 MP limit" in r.stderr, r.stderr
    folder = tmp_path / "photos"
    folder.mkdir()
    big.rename(folder / "a_big.png")
    cv2.imwrite(str(folder / "b_face.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    r = emotion_edge("run", "--source", str(folder))
    assert r.returncode == 0, r.stderr
    assert "a_big.png: 20000x20000 = 400 MP is over the 64 MP limit" in r.stderr
    assert [e["source"] for e in events_of(r.stdout)] == ["b_face.jpg"]
    for ext in (".jpg", ".png", ".bmp", ".webp"):
        ok, buf = cv2.imencode(ext, np.zeros((77, 91, 3), np.uint8))
        assert header_size(buf.tobytes()) == (91, 77), ext


def test_hostile_files_and_paths_are_one_line_each(tmp_path):
    """A labels path that does not exist is an error (it used to fall back to the built-in labels); a file
    that is not a cascade, or a model with damaged bytes, is one line and no traceback; output paths in a
    missing folder are usage errors (2), for --events as for --annotate."""
    from edge.classify import shipped_model

    def run(*args, config=""):
        cfg = tmp_path / "c.toml"
        cfg.write_text(config)
        return emotion_edge("run", "--config", str(cfg), "--source", "demo:2", *args, timeout=60)

    r = run(config=f'[classifier]\nlabels = "{tmp_path}/no-labels.txt"\n')
    assert r.returncode == 1 and "no-labels.txt: cannot read labels" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.xml"
    junk.write_text("<opencv_storage><cascade>nonsense</cascade></opencv_storage>")
    r = run(config=f'[detector]\ncascade = "{junk}"\n')
    assert r.returncode == 1 and "not a valid Haar cascade" in r.stderr and "Traceback" not in r.stderr
    blob = bytearray(shipped_model().read_bytes())
    for where in (16, 64, len(blob) // 3, len(blob) - 2000):
        bad = tmp_path / f"bad{where}.tflite"
        damaged = bytearray(blob)
        damaged[where:where + 64] = bytes(range(64))
        bad.write_bytes(damaged)
        r = run(config=f'[classifier]\nmodel = "{bad}"\n')
        assert "Traceback" not in r.stderr and r.returncode in (0, 1), (where, r.stderr[-800:])
    assert run("--events", str(tmp_path / "nowhere" / "e.jsonl")).returncode == 2
    assert run("--annotate", str(tmp_path / "nowhere" / "a.mp4")).returncode == 2


def test_small_faces_in_a_1080p_clip_are_found_on_every_frame(tmp_path, astronaut_bgr):
    """People a few metres from a phone: 70- and 100-px faces in 1920x1080 frames, moving. The file's plane is
    1280 wide (at 640 they would be 23 and 33 px, under the detector's 40), full scans 6 times a second of
    the clip and the faces followed in windows between them."""
    import matplotlib

    hopper = cv2.imread(matplotlib.get_data_path() + "/sample_data/grace_hopper.jpg")
    heads = [cv2.resize(astronaut_bgr, None, fx=70 / 97, fy=70 / 97, interpolation=cv2.INTER_AREA),
             cv2.resize(hopper, None, fx=100 / 200, fy=100 / 200, interpolation=cv2.INTER_AREA)]
    clip = tmp_path / "room.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1920, 1080))
    for t in range(30):
        frame = np.full((1080, 1920, 3), 90, np.uint8)
        for i, head in enumerate(heads):
            x, y = 300 + 900 * i + 4 * t, 400 - 2 * t
            frame[y:y + head.shape[0], x:x + head.shape[1]] = head
        out.write(frame)
    out.release()

    events, scans, pipe = run_clip(clip, 30)
    assert pipe.last_plane_shape == (720, 1280)
    assert [len(e.faces) for e in events] == [2] * 30
    assert {f.id for e in events for f in e.faces} == {1, 2}
    assert scans <= 30 // 5 + 2, scans  # full scans; windows between them found both faces
    for e in events:
        by_x = sorted(e.faces, key=lambda f: f.box[0])
        assert 60 < by_x[0].box[2] < 90 and 85 < by_x[1].box[2] < 125, [f.box for f in by_x]


def test_a_leaning_face_is_followed_between_full_scans(tmp_path, astronaut_bgr):
    """A head leaning 20 degrees, found by the full scan's turned search, is looked for leaning in its window
    too: full scans stay at their rate instead of one on every frame."""
    turned = cv2.warpAffine(astronaut_bgr, cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512),
                            borderMode=cv2.BORDER_REPLICATE)
    clip = tmp_path / "leaning.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1280, 720))
    for t in range(30):
        frame = np.full((720, 1280, 3), 90, np.uint8)
        frame[100:612, 200 + 8 * t:712 + 8 * t] = turned
        out.write(frame)
    out.release()
    events, scans, _ = run_clip(clip, 30)
    assert [len(e.faces) for e in events] == [1] * 30
    assert {f.roll for e in events for f in e.faces} == {20.0}
    assert scans <= 30 // 5 + 2, scans


def test_a_face_that_looks_away_for_half_a_second_keeps_its_id(tmp_path, astronaut_bgr):
    """Someone turning away, or walking behind a lamp, for half a second is the same person when they come back
    to the same place: one id (one row of the timeline, one face in the mood summary), never a face reported
    while it is gone, and no full scan on every frame of the gap."""
    clip = tmp_path / "away.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1280, 720))
    for t in range(60):
        frame = np.full((720, 1280, 3), 90, np.uint8)
        if not 25 <= t < 40:
            frame[100:612, 400:912] = astronaut_bgr
        out.write(frame)
    out.release()
    events, scans, _ = run_clip(clip, 60)
    assert [len(e.faces) for e in events] == [1] * 25 + [0] * 15 + [1] * 20
    assert {f.id for e in events for f in e.faces} == {1}
    assert scans <= 60 // 5 + 4, scans


def test_one_face_is_never_reported_twice():
    """A track kept through an absence has its window searched; when the real face moved into that window, both
    tracks' windows found it and the demo clip showed the astronaut as four faces from 2 s on."""
    from edge.track import iou

    r = emotion_edge("run", "--source", "demo")
    assert r.returncode == 0, r.stderr
    events = events_of(r.stdout)
    assert len(events) == 150
    doubled = [e["seq"] for e in events
               if any(iou(a["box"], b["box"]) > 0.3 for i, a in enumerate(e["faces"]) for b in e["faces"][i + 1:])]
    assert doubled == []
    assert sum(bool(e["faces"]) for e in events) == 150
