#!/usr/bin/env python3
"""The camera path's benchmark: numbers for the README, printed, never asserted.

Two 640x480 clips made from public sample photos (scikit-image's astronaut, matplotlib's Grace Hopper): one
face moving and zooming (the demo clip), and three faces of which one walks in and out. On each:
  * emotion-edge's camera path (the clip replayed live, edge.bench.measure) with 1, 2 and 4 threads;
  * the thesis loop on the same frames: Haar on the full frame every frame, one float-model call per face;
  * what the cadence costs in recall: faces found per frame and id switches against full scans and
    classification on every frame, on the same frames;
and a table of expected Pi figures derived from the measured per-stage costs (assumptions printed with it).

    .venv/bin/python scripts/bench_camera.py [--frames 300] [--json out.json]

The thesis model is the thesis network (model.arch.thesis_cnn) with random weights, exported to a float
.tflite here: its cost does not depend on its weights, and no 4 MB file is shipped for it. Without
TensorFlow (the train extra) the thesis column is left out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge import config  # noqa: E402
from edge.bench import cpu_name  # noqa: E402

FPS = 30.0


def _faces() -> list[np.ndarray]:
    import matplotlib
    from skimage import data

    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:260, 110:310]
    hopper = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))[40:400, 80:440]
    return [cv2.resize(astro, (210, 250)), cv2.resize(hopper, (200, 200)), cv2.resize(hopper[:, ::-1], (190, 190))]


def clip_one_face(path: Path, frames: int) -> None:
    from edge.sources.demo import write_demo_video

    write_demo_video(path, frames=frames, fps=FPS)


def clip_three_faces(path: Path, frames: int) -> None:
    """Two faces drifting, a third walking in from the right after a quarter of the clip and out again."""
    faces = _faces()
    rng = np.random.default_rng(3)
    bg = np.clip(rng.normal(0, 6, (480, 640, 1)) + np.linspace(70, 150, 640)[None, :, None], 0, 255)
    bg = np.repeat(bg, 3, axis=2).astype(np.uint8)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 480))
    for i in range(frames):
        img = bg.copy()
        t = i / frames
        spots = [(30 + 30 * math.sin(2 * math.pi * t), 30 + 20 * math.cos(2 * math.pi * t)),
                 (230 + 25 * math.cos(2 * math.pi * t), 250 + 15 * math.sin(4 * math.pi * t))]
        # In from the right edge over 0.25..0.4, stays, out over 0.75..0.9.
        walk = min(1.0, max(0.0, (t - 0.25) / 0.15)) - min(1.0, max(0.0, (t - 0.75) / 0.15))
        spots.append((640 - walk * 200, 40))
        for face, (x, y) in zip(faces, spots):
            x, y = int(x), int(y)
            h, w = face.shape[:2]
            x0, x1 = max(0, x), min(640, x + w)
            if x1 > x0:
                img[y:y + h, x0:x1] = face[:, x0 - x:x1 - x]
        vw.write(img)
    vw.release()


def camera_path(tmp: Path, clip: Path, frames: int, threads: int) -> dict:
    """``emotion-edge bench`` on the clip in a process of its own, so its peak RSS is the runtime's alone."""
    cfg = tmp / f"threads{threads}.toml"
    cfg.write_text(f'[classifier]\nmodel = "accurate"\n[detector]\nthreads = {threads}\n')
    out = tmp / "bench.json"
    subprocess.run([sys.executable, "-m", "edge.cli", "bench", "--config", str(cfg), "--source", str(clip),
                    "--frames", str(frames), "--json", str(out)], check=True, stdout=subprocess.DEVNULL,
                   cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.read_text())


def thesis_model(out: Path) -> Path | None:
    import importlib.util

    if importlib.util.find_spec("keras") is None:
        return None
    from model import tf_environment

    tf_environment()  # TensorFlow's start-up chatter off
    from model.arch import thesis_cnn
    from model.train import export_float

    path = out / "thesis_float.tflite"
    export_float(thesis_cnn(), path)
    return path


def thesis_loop(frames: list[np.ndarray], model: Path) -> dict:
    """The thesis loop as written: full-frame grey, Haar 1.3/5/50 every frame, one call per face, drawing."""
    from edge.classify import Classifier
    from edge.detect import find_cascade

    cascade = cv2.CascadeClassifier(str(find_cascade()))
    clf = Classifier(model, photometric="none")
    c0, w0, faces = time.process_time(), time.perf_counter(), 0
    for img in frames:
        img = img.copy()
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        for (x, y, w, h) in cascade.detectMultiScale(gray, 1.3, 5, minSize=(50, 50)):
            roi = cv2.resize(gray[y:y + h, x:x + w], (48, 48))
            p = clf.scores_for_input(clf.model_input(roi[None]))
            cv2.rectangle(img, (x, y), (x + w, y + h), (255, 0, 0), 2)
            cv2.putText(img, clf.labels[int(np.argmax(p[0]))], (x, y - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.9,
                        (36, 255, 12), 2)
            faces += 1
    n = len(frames)
    return {"cpu_ms": 1000 * (time.process_time() - c0) / n, "fps": n / (time.perf_counter() - w0),
            "faces_per_frame": faces / n}


def decoded(path: Path) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


def recall(cfg: config.Config, frames: list[np.ndarray], cadence) -> list:
    """Per frame, the (id, box) of each face reported, frames fed one by one (no pacing, no drops) with the
    capture times a 30-fps camera would give them."""
    from edge import app
    from edge.pipeline import Pipeline
    from edge.sinks import Sink
    from edge.sources.base import FrameSource, make_frame

    class Frames(FrameSource):
        live = True

        def __init__(self):
            super().__init__()
            self.i = 0

        def read(self):
            if self.i >= len(frames):
                return None
            f = make_frame(self.i + 1, frames[self.i], cfg.camera.lores_width, cfg.camera.lores_height,
                           t_capture=self.i / FPS)
            self.i += 1
            return f

    out = []

    class Keep(Sink):
        name = "keep"

        def handle(self, ev, fr):
            out.append([(f.id, f.box, f.emotion) for f in ev.faces])

    pipe = Pipeline(Frames(), app.make_detector(cfg), app.make_classifier(cfg), app.make_tracker(cfg), [Keep()],
                    cadence=cadence)
    pipe.run()
    return out


def _iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def compare(ref: list, got: list) -> dict:
    """Face-frames the reference found and the cadence did not (IoU >= 0.3), extra ones, id switches, and
    frames whose leading emotion differs."""
    face_frames = missed = extra = switches = emotion_diff = 0
    prev: dict = {}
    for r, g in zip(ref, got):
        face_frames += len(r)
        used = set()
        for rid, rbox, remo in r:
            best = max(((_iou(rbox, gb), j) for j, (_, gb, _) in enumerate(g) if j not in used), default=(0, -1))
            if best[0] < 0.3:
                missed += 1
                continue
            used.add(best[1])
            gid, _, gemo = g[best[1]]
            if rid in prev and prev[rid] != gid:
                switches += 1
            prev[rid] = gid
            emotion_diff += gemo != remo
        extra += len(g) - len(used)
    return {"face_frames": face_frames, "missed": missed, "missed_pct": 100 * missed / max(1, face_frames),
            "extra": extra, "id_switches": switches, "emotion_differs_pct": 100 * emotion_diff / max(1, face_frames)}


# Published or widely measured per-core throughput, relative to what is measured here (see the README's
# assumptions): int8 GMAC/s for the classifier, and the 320x240 Haar scan's ms.
PIS = {
    "Pi 5 (Cortex-A76 2.4 GHz)": {"gmacs": 20.0, "scan_ms": 15.0},
    "Pi 4 (Cortex-A72 1.8 GHz)": {"gmacs": 5.5, "scan_ms": 45.0},
    "Pi Zero 2 W (Cortex-A53 1 GHz)": {"gmacs": 1.8, "scan_ms": 120.0},
}
MACS = {"emotion_int8.tflite": 147.3e6, "emotion_fast_int8.tflite": 37.0e6}


def pi_table(here: dict, scan_here_ms: float) -> list[str]:
    """Expected CPU-ms per frame on each Pi at 30 fps, from this run's per-stage costs: the full scan at the
    Pi's cost every k frames (k by the runtime's own rule), the window searches, tracking and outputs scaled by
    the same ratio as the scan, the classifier by MACs / GMAC/s times the faces classified per frame here."""
    from edge.cadence import MAX_EVERY, MIN_EVERY, SCAN_SHARE
    from edge.config import ClassifierConfig

    budget = ClassifierConfig().budget_ms
    rows = []
    for name, pi in PIS.items():
        ratio = pi["scan_ms"] / max(scan_here_ms, 1e-3)
        k = min(MAX_EVERY, max(MIN_EVERY, math.ceil(pi["scan_ms"] / (SCAN_SHARE * 1000 / FPS))))
        windows_here = max(0.0, here["stage_ms"]["detect"] - scan_here_ms / here["scan_every"])
        other = (windows_here + here["stage_ms"]["track"] + here["stage_ms"]["sinks"]) * ratio
        accurate_ms = MACS["emotion_int8.tflite"] / (pi["gmacs"] * 1e9) * 1000
        for model, macs in MACS.items():
            face_ms = macs / (pi["gmacs"] * 1e9) * 1000
            chosen = (accurate_ms > budget) == ("fast" in model)  # the runtime's rule: [classifier] budget_ms
            per_frame = pi["scan_ms"] / k + other + here["classified_per_frame"] * face_ms
            rows.append(f"| {name} | {'fast' if 'fast' in model else 'accurate'}{' (auto)' if chosen else ''} | "
                        f"{k} | {face_ms:.1f} | {per_frame:.1f} | {min(FPS, 1000 / per_frame):.0f} |")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from edge.pipeline import Cadence

    cv2.setNumThreads(1)
    results = {"cpu": cpu_name(), "clips": {}}
    print(f"CPU: {results['cpu']}, {os.cpu_count()} cores\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = {"1 face": tmp / "one.avi", "3 faces": tmp / "three.avi"}
        clip_one_face(clips["1 face"], args.frames)
        clip_three_faces(clips["3 faces"], args.frames)
        thesis = thesis_model(tmp)
        base = config.from_dict({"classifier": {"model": "accurate"}})
        for label, path in clips.items():
            r = results["clips"][label] = {"threads": {}}
            for threads in (1, 2, 4):
                r["threads"][threads] = camera_path(tmp, path, args.frames, threads)
            frames = decoded(path)
            if thesis:
                r["thesis"] = thesis_loop(frames, thesis)
            ref = recall(base, frames, Cadence(scan_every=1, windows=False, classify_hz=0.0))
            auto = recall(base, frames, Cadence(scan_every=0, windows=True, classify_hz=10.0))
            r["recall"] = {"auto": compare(ref, auto)}
            for k in (6, 10):
                r["recall"][f"every {k}"] = compare(ref, recall(base, frames, Cadence(k, True, 10.0)))
            # One full scan alone, for the Pi table: the scan is what scales with the CPU.
            from edge.app import make_detector

            det, gray = make_detector(base), cv2.cvtColor(cv2.resize(frames[0], (320, 240)), cv2.COLOR_BGR2GRAY)
            t0 = time.perf_counter()
            for _ in range(20):
                det.detect(gray)
            r["scan_ms"] = 1000 * (time.perf_counter() - t0) / 20

    for label, r in results["clips"].items():
        one = r["threads"][1]
        print(f"== {label}: {one['frames']} frames of 640x480 at 30 fps, model {one['model']}, "
              f"full scan every {one['scan_every']} frames, one full 320x240 scan {r['scan_ms']:.2f} ms")
        print("| threads | CPU ms/frame | fps | p50 ms | p99 ms | peak RSS MB | dropped |")
        print("|---|---|---|---|---|---|---|")
        for t, m in r["threads"].items():
            print(f"| {t} | {m['cpu_ms']:.2f} | {m['fps']:.1f} | {m['latency_p50_ms']:.1f} | "
                  f"{m['latency_p99_ms']:.1f} | {m['peak_rss_mb']:.0f} | {m['dropped']} |")
        print("per stage, ms per frame (1 thread): " + ", ".join(f"{k} {v:.2f}" for k, v in one["stage_ms"].items()))
        if "thesis" in r:
            th = r["thesis"]
            print(f"thesis loop on the same frames: {th['cpu_ms']:.1f} CPU ms/frame, {th['fps']:.1f} fps; "
                  f"emotion-edge {th['cpu_ms'] / one['cpu_ms']:.1f}x cheaper")
        for name, c in r["recall"].items():
            print(f"cadence {name}: {c['missed']} of {c['face_frames']} face-frames missed ({c['missed_pct']:.2f} %), "
                  f"{c['extra']} extra, {c['id_switches']} id switches, leading emotion differs on "
                  f"{c['emotion_differs_pct']:.1f} %")
        print("\nexpected on a Pi, this clip, 30 fps, one core (derived from the rows above, not measured):")
        print("| board | model | k | ms/face | CPU ms/frame | fps (one core) |\n|---|---|---|---|---|---|")
        print("\n".join(pi_table(one, r["scan_ms"])) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
