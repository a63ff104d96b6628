"""``emotion-edge bench``: the pipeline and a faithful copy of the thesis loop on the same frames.

The thesis loop: colour-convert the full frame, Haar (scale 1.3, 5 neighbours, min 50 px) on it
every frame, one float-model call per face, draw. Ours: Haar on the small plane, every k-th
frame, int8 model, all faces in one call, tracker, events serialised. Frames are decoded once
and replayed to both, so decoding is timed once (the capture row) and counts for both.
"""
from __future__ import annotations

import json
import resource
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .config import Config
from .sources.base import FrameSource


def _rss_mb() -> float:
    from .metrics import rss_mb

    return rss_mb()


class ReplaySource(FrameSource):
    description = "replay"

    def __init__(self, frames):
        super().__init__()
        self.frames, self.i = frames, 0

    def read(self):
        if self.i >= len(self.frames):
            return None
        f = self.frames[self.i]
        self.i += 1
        return f


class _NullJsonSink:
    name = "events"
    needs_image = False

    def start(self):
        pass

    def handle(self, event, frame):
        event.to_json()

    def close(self):
        pass


def thesis_model_path() -> Path:
    return Path(str(resources.files("emotion_model") / "thesis_float.tflite"))


def thesis_loop(frames, model_path: Path, threads: int = 1) -> dict:
    from .classify import Classifier
    from .detect import find_cascade

    cascade = cv2.CascadeClassifier(str(find_cascade()))
    clf = Classifier(model_path, threads=threads, photometric="none")  # the thesis fed raw crops
    labels = clf.labels
    t_detect = t_classify = t_draw = 0.0
    faces_total = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for f in frames:
        img = f.main.copy()
        t0 = time.perf_counter()
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(gray, 1.3, 5, minSize=(50, 50))
        t1 = time.perf_counter()
        t_detect += t1 - t0
        for (x, y, w, h) in faces:
            t2 = time.perf_counter()
            roi = cv2.resize(gray[y:y + h, x:x + w], (48, 48))
            p = clf.scores_for_input(clf.prepare(roi, [(0, 0, 48, 48)]))
            label = labels[int(np.argmax(p[0]))]
            t3 = time.perf_counter()
            cv2.rectangle(img, (x, y), (x + w, y + h), (255, 0, 0), 2)
            cv2.putText(img, label, (x, y - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (36, 255, 12), 2)
            t_classify += t3 - t2
            t_draw += time.perf_counter() - t3
            faces_total += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = len(frames)
    return {"fps": n / wall, "cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n,
            "stage_ms": {"capture": None, "detect": 1000 * t_detect / n, "classify": 1000 * t_classify / n,
                         "track": 0.0, "sinks": 1000 * t_draw / n},
            "faces_per_frame": faces_total / n, "rss_mb": _rss_mb()}


def pipeline_loop(cfg: Config, frames) -> dict:
    from .app import make_classifier, make_detector, make_tracker
    from .pipeline import Pipeline

    pipe = Pipeline(ReplaySource(frames), make_detector(cfg), make_classifier(cfg), make_tracker(cfg),
                    [_NullJsonSink()], device=cfg.device, detect_every=cfg.detector.every)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    res = pipe.run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = res.frames
    st = pipe.stats.stage_total
    return {"fps": n / wall, "cpu_ms": 1000 * cpu / n, "wall_ms": 1000 * wall / n,
            "stage_ms": {k: st[k] / n for k in ("detect", "classify", "track", "sinks")} | {"capture": None},
            "rss_mb": _rss_mb()}


def run_bench(cfg: Config, spec: str | None, n: int, json_path: str | None = None) -> int:
    from .app import make_source
    from .sources import SourceError

    model = thesis_model_path()
    if not model.is_file():
        print(f"bench: {model} is missing (train it with python -m model.train --recipe thesis)")
        return 1
    spec = spec or "demo"
    try:
        src = make_source(cfg, spec, want_main=True)
        frames, t_cap = [], 0.0
        with src:
            while len(frames) < n:
                t0 = time.perf_counter()
                f = src.read()
                t_cap += time.perf_counter() - t0
                if f is None:
                    break
                frames.append(f)
    except SourceError as e:
        print(f"bench: {e}")
        return 1
    if not frames:
        print("bench: the source gave no frames")
        return 1
    cap_ms = 1000 * t_cap / len(frames)
    rss_frames = _rss_mb()
    ours = pipeline_loop(cfg, frames)
    thesis = thesis_loop(frames, model, threads=cfg.classifier.threads)
    ours["stage_ms"]["capture"] = cap_ms
    thesis["stage_ms"]["capture"] = cap_ms
    W, H = frames[0].main_size
    h, w = frames[0].gray.shape
    print(f"{len(frames)} frames of {src.description}: {W}x{H}, detector plane {w}x{h}, "
          f"detect every {cfg.detector.every}, {cfg.classifier.threads} classifier thread(s)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(process, with all frames held in memory: {rss_frames:.0f} MB before the loops)\n")
    rows = [("fps (decode excluded)", "fps", "{:.1f}"), ("wall ms / frame", "wall_ms", "{:.2f}"),
            ("CPU ms / frame (process time)", "cpu_ms", "{:.2f}")]
    print(f"| {'':<30} | {'emotion-edge':>12} | {'thesis loop':>12} | {'ratio':>6} |")
    print(f"|{'-' * 32}|{'-' * 14}|{'-' * 14}|{'-' * 8}|")
    for label, key, fmt in rows:
        a, b = ours[key], thesis[key]
        ratio = a / b if key == "fps" else b / a
        print(f"| {label:<30} | {fmt.format(a):>12} | {fmt.format(b):>12} | {ratio:5.1f}x |")
    for stage in ("capture", "detect", "classify", "track", "sinks"):
        a, b = ours["stage_ms"][stage], thesis["stage_ms"][stage]
        print(f"| {'  ' + stage + ' ms':<30} | {a:>12.3f} | {b:>12.3f} | {'':>6} |")
    print(f"| {'RSS MB after loop':<30} | {ours['rss_mb']:>12.0f} | {thesis['rss_mb']:>12.0f} | {'':>6} |")
    print("\nratio: how many times faster (fps) or cheaper (ms) emotion-edge is. capture = decode + grayscale "
          "plane, paid once per frame by both.\nthesis sinks = drawing boxes and labels; ours = event JSON.")
    if json_path:
        Path(json_path).write_text(json.dumps({"frames": len(frames), "ours": ours, "thesis": thesis}, indent=1))
    return 0
