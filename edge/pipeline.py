"""The capture loop: source -> detect -> classify -> track -> event -> sinks, until the stop event."""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .cadence import ClassifyCadence, ScanCadence, merge, one_per_face
from .detect import with_roll
from .events import Event, Face
from .preprocess import cut_from_main
from .sources import FrameSource, SourceError

log = logging.getLogger(__name__)
# Seconds of frame intervals before a frame rate is reported (0 until then).
MIN_FPS_SPAN_S = 1.0

STAGES = ("capture", "detect", "classify", "track", "sinks")


@dataclass
class Stats:
    """Read by other threads (MQTT stats, HTTP view, systemd status) through ``snapshot()``."""

    frames: int = 0
    faces: int = 0
    bad_frames: int = 0
    sink_errors: int = 0
    fps: float = 0.0
    started: float = field(default_factory=time.monotonic)
    stage_ms: dict = field(default_factory=lambda: {s: 0.0 for s in STAGES})  # moving averages
    stage_total: dict = field(default_factory=lambda: {s: 0.0 for s in STAGES})  # sums, for the benchmark
    scan_every: int = 1  # frames per full scan, as the cadence chose it
    classified: int = 0  # faces classified (fewer than faces reported when the cadence spaces them)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict:
        with self.lock:
            return {"frames": self.frames, "faces": self.faces, "bad_frames": self.bad_frames,
                    "sink_errors": self.sink_errors, "fps": round(self.fps, 2),
                    "uptime_s": round(time.monotonic() - self.started, 1),
                    "scan_every": self.scan_every,
                    "stage_ms": {k: round(v, 3) for k, v in self.stage_ms.items()}}


@dataclass
class RunResult:
    frames: int
    reason: str  # "ended" | "stopped" | "max-frames" | "source-error" | "output-error"
    error: str | None = None


def clip_box(box, size) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(size[0], x + w), min(size[1], y + h)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


class Detector(Protocol):
    """Faces on a grayscale plane: ``[N, 5]`` float32 rows of x, y, w, h and roll in degrees (or ``[N, 4]``,
    upright). Optional, used when present: ``detect_near(gray, boxes)`` (the window searches between full
    scans), ``detect_padded`` and ``wants_padded`` (photos that are all face). edge.detect.HaarDetector is one."""

    def detect(self, gray: np.ndarray, tilted: bool = False) -> np.ndarray: ...


class Classifier(Protocol):
    """Scores ``[N, len(labels)]`` for the faces ``boxes`` of a plane; ``main`` (the frame's image, ``scale``
    times larger) for sharper crops of small faces. edge.classify.Classifier is one."""

    labels: tuple[str, ...]

    def classify(self, gray: np.ndarray, boxes, main: np.ndarray | None = None, scale=(1.0, 1.0),
                 flip: bool | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Cadence:
    """The frame budget of a live source (edge.cadence): full scans every ``scan_every`` frames (0: chosen
    from their measured cost), window searches between them (``windows``; off: boxes carried), each face
    re-classified ``classify_hz`` times a second (0: every frame), and with ``workers`` >= 2 the classifier
    runs on a worker thread beside the full scan. ``Cadence()`` is what photos get: everything on every frame."""

    scan_every: int = 1
    windows: bool = False
    classify_hz: float = 0.0
    workers: int = 1
    fps: float = 30.0


class Pipeline:
    def __init__(self, source: FrameSource, detector: Detector, classifier: Classifier, tracker, sinks=(),
                 device: str = "edge", cadence: Cadence = Cadence(), stop: threading.Event | None = None,
                 tilted: bool = False, flip: bool | None = None, masks=None, still=None):
        self.source, self.detector, self.classifier, self.tracker = source, detector, classifier, tracker
        self.masks = masks  # edge.masks.Masks or None: regions where no face is reported
        self.still = still  # edge.still.StillFaces or None (live sources only)
        # Chosen per source kind by the app: also search rolled faces (the detector's tilt), and classify each
        # face mirrored too (None: the classifier's own setting).
        self.tilted, self.flip = tilted, flip
        self.sinks = list(sinks)
        self.device = device
        self.cadence = cadence
        self.scans = ScanCadence(cadence.scan_every, cadence.fps)
        self.picks = ClassifyCadence(cadence.classify_hz, cadence.fps)
        self.windows = cadence.windows and hasattr(detector, "detect_near")
        self._pool = None
        if cadence.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="classify")
        self.stop = stop or threading.Event()
        self.stats = Stats()
        #: Called with the Event after every processed frame (watchdog pings, status lines).
        self.on_frame: list = []
        self._intervals: collections.deque = collections.deque(maxlen=30)
        self._last_t: float | None = None
        self._failed_sinks: set = set()
        self._processing_bad = 0
        self.last_main_size: tuple[int, int] | None = None  # of the last frame, for reports
        self.last_plane_shape: tuple[int, ...] | None = None

    def _ema(self, stage: str, ms: float):
        self.stats.stage_total[stage] += ms
        old = self.stats.stage_ms[stage]
        self.stats.stage_ms[stage] = ms if self.stats.frames == 0 else 0.9 * old + 0.1 * ms

    def _classify(self, frame, boxes) -> np.ndarray:
        return self.classifier.classify(frame.gray, boxes, frame.main, frame.scale, flip=self.flip)

    def _find(self, frame) -> tuple[np.ndarray, bool, dict]:
        """This frame's face boxes on the plane: a full scan, or the tracked faces looked for near where
        they were. Returns the boxes, whether they were found padded, and the scores the worker computed
        meanwhile (by track id)."""
        gray = frame.gray
        known = self.tracker.predicted_boxes() / self._to_main(frame)
        near = None
        if not self.scans.due():
            if not self.windows:
                self.scans.skipped()
                return known, False, {}
            near = one_per_face(self.detector.detect_near(gray, known), self.tracker.tracks)
            lost = np.isnan(near[:, 0])
            fresh = np.array([t.missed == 0 for t in self.tracker.tracks], bool)
            if not (lost & fresh).any():
                self.scans.skipped()
                return near[~lost], False, {}
            # A face its window did not find this frame (it turned, moved fast, reached the edge): the whole
            # plane now, rather than a frame without it. One already missing since an earlier frame (someone
            # who looked away) is still looked for in its window, and by the scheduled full scans, but does
            # not force a full scan on every frame of its absence.
        early = {}
        if self._pool is not None and self.windows and len(known):
            # Faces already tracked are found in their windows and classified on the worker while the full
            # scan runs here: both release the GIL, so on a multi-core Pi they overlap.
            if near is None:
                near = one_per_face(self.detector.detect_near(gray, known), self.tracker.tracks)
            found = np.flatnonzero(~np.isnan(near[:, 0]))
            tracks = [self.tracker.tracks[i] for i in found]
            due = [found[j] for j in self.picks.pick(tracks, frame.t_capture)]
            if due:
                early = {"ids": [self.tracker.tracks[i].id for i in due],
                         "future": self._pool.submit(self._classify, frame, near[due])}
        t0 = time.perf_counter()
        boxes = self._detect(gray)
        self.scans.scanned((time.perf_counter() - t0) * 1000)
        padded = False
        if self.source.independent and hasattr(self.detector, "detect_padded") and \
                self.detector.wants_padded(boxes, gray.shape):
            # A photo may be a face that fills the picture (an ID or profile photo), which the cascade misses
            # for want of context: look once more with a neutral border around it. Cameras never pay for this.
            found = with_roll(self.detector.detect_padded(gray, tilted=self.tilted))
            if len(found):
                boxes, padded = found, True
        if near is not None:  # a face its window found and this scan missed is still there
            boxes = merge(boxes, near[~np.isnan(near[:, 0])])
        return boxes, padded, early

    @staticmethod
    def _to_main(frame) -> np.ndarray:
        sx, sy = frame.scale
        return np.float32([sx, sy, sx, sy, 1.0])

    def process(self, frame) -> Event:
        """Detect, classify and track one frame; returns its event (sinks not yet called)."""
        pc = time.perf_counter
        t0 = pc()
        if self.source.independent:
            # Two photos in a folder share no faces: a face in the same place is someone else.
            self.tracker.reset()
        self.last_main_size, self.last_plane_shape = frame.main_size, frame.gray.shape
        to_main = self._to_main(frame)
        boxes_g, padded, early = self._find(frame)
        if self.masks:
            boxes_g = self.masks.keep(boxes_g * to_main, frame.main_size) / to_main
        t1 = pc()
        tracks = self.tracker.match(boxes_g * to_main)
        now = frame.t_capture
        if early:
            scores = early["future"].result()
            by_id = {t.id: t for t in tracks}
            for tid, sc in zip(early["ids"], scores):
                if tid in by_id:  # the full scan found it too, or its window box was kept
                    self.tracker.observe(by_id[tid], sc)
                    self.picks.classified(by_id[tid], now)
            early_ids = set(early["ids"])
            todo = [i for i in self.picks.pick(tracks, now) if tracks[i].id not in early_ids]
        else:
            todo = self.picks.pick(tracks, now)
        if todo:
            scores = self._classify(frame, boxes_g[todo])
            for i, sc in zip(todo, scores):
                self.tracker.observe(tracks[i], sc)
                self.picks.classified(tracks[i], now)
        # The next frames' small faces are cut from the main image, which a Pi camera then has to copy.
        self.source.main_wanted = any(cut_from_main(t.box[2] / frame.scale[0], frame.scale) for t in tracks)
        t2 = pc()
        labels = self.classifier.labels
        faces = []
        # A face that appears for the first time beside one already followed waits for a second sighting before
        # it is reported: one-frame boxes on the background (the demo clip's frame 36) otherwise became the
        # largest face, the retained state, for a frame. A first face, and every face of a photo, is reported at
        # once.
        settled = not self.source.independent and any(t.hits > 1 for t in self.tracker.tracks)
        for t in tracks:
            if settled and t.hits == 1:
                continue
            k = int(np.argmax(t.scores))
            box = tuple(int(round(v)) for v in t.box[:4])
            if padded:  # found with a border around the photo: what is reported stays inside it
                box = clip_box(box, frame.main_size)
            faces.append(Face(id=t.id, box=box, emotion=labels[k], confidence=float(t.scores[k]),
                              scores={lab: float(p) for lab, p in zip(labels, t.scores)},
                              roll=round(float(t.box[4]), 1), padded=padded))
        if self.still is not None:
            still = self.still.update(tracks, frame.gray, to_main, now)
            if still:
                faces = [dataclasses.replace(f, still=True) if f.id in still else f for f in faces]
        faces.sort(key=lambda f: -f.box[2] * f.box[3])  # largest (nearest) first, as documented
        now = time.monotonic()
        if self._last_t is not None:
            self._intervals.append(now - self._last_t)
        self._last_t = now
        # A rate from at least a second of frames: the first few after a start come in a burst (buffers the
        # camera or the replay filled meanwhile), and a 35-100 fps spike went into every restart's history.
        span = sum(self._intervals)
        fps = len(self._intervals) / span if span >= MIN_FPS_SPAN_S else 0.0
        event = Event(device=self.device, seq=frame.seq, wall_time=frame.wall_time, frame_w=frame.main_size[0],
                      frame_h=frame.main_size[1], faces=tuple(faces),
                      latency_ms=max(0.0, (now - frame.t_capture) * 1000), fps=fps, source=frame.name)
        t3 = pc()
        with self.stats.lock:
            self._ema("detect", (t1 - t0) * 1000)
            self._ema("classify", (t2 - t1) * 1000)
            self._ema("track", (t3 - t2) * 1000)
            self.stats.fps = fps
            self.stats.scan_every = self.scans.every
            self.stats.classified += len(todo) + (len(early["ids"]) if early else 0)
        return event

    def _detect(self, gray: np.ndarray) -> np.ndarray:
        # A detector without the roll column (a test's stand-in, a plugin) gives upright faces.
        return with_roll(self.detector.detect(gray, tilted=True) if self.tilted else self.detector.detect(gray))

    def _emit(self, event, frame):
        t0 = time.perf_counter()
        for sink in self.sinks:
            if sink in self._failed_sinks:
                continue
            try:
                sink.handle(event, frame)
            except Exception as e:
                # A broken output must not take detection down with it: log once, keep the rest going.
                with self.stats.lock:
                    self.stats.sink_errors += 1
                log.error("%s output failed, disabled for this run: %s", sink.name, e)
                self._failed_sinks.add(sink)
        return (time.perf_counter() - t0) * 1000

    def failed_outputs(self) -> list[str]:
        """Names of the outputs that failed during the run (each was disabled and logged once)."""
        return [s.name for s in self._failed_sinks]

    def _start_sinks(self) -> str | None:
        """Start every output; on the first failure close those already started (MQTT says "offline") and
        return the one-line reason."""
        started = []
        for sink in self.sinks:
            try:
                sink.start()
            except Exception as e:
                for s in reversed(started):
                    try:
                        s.close()
                    except Exception as e2:
                        log.error("closing %s output: %s", s.name, e2)
                return f"{sink.name} output: {e}"
            started.append(sink)
        return None

    def run(self, max_frames: int | None = None) -> RunResult:
        error = self._start_sinks()
        if error:
            return RunResult(0, "output-error", error)
        try:
            self.source.start()  # after the outputs: the preview, one of them, attaches before the camera starts
        except SourceError as e:
            self._close_sinks()
            return RunResult(0, "source-error", str(e))
        processed = 0
        try:
            while not self.stop.is_set():
                if max_frames is not None and processed >= max_frames:
                    return RunResult(processed, "max-frames")
                t0 = time.perf_counter()
                try:
                    frame = self.source.read()
                except SourceError as e:
                    return RunResult(processed, "source-error", str(e))
                capture_ms = (time.perf_counter() - t0) * 1000
                if frame is None:
                    # A live source gives None only when it was interrupted by the stop event.
                    return RunResult(processed, "stopped" if self.stop.is_set() else "ended")
                try:
                    event = self.process(frame)
                except Exception as e:
                    self._processing_bad += 1
                    with self.stats.lock:
                        self.stats.bad_frames = self.source.bad_frames + self._processing_bad
                    log.warning("frame %d skipped: %s", frame.seq, e, exc_info=log.isEnabledFor(logging.DEBUG))
                    continue
                sinks_ms = self._emit(event, frame)
                processed += 1
                with self.stats.lock:
                    self._ema("capture", capture_ms)
                    self._ema("sinks", sinks_ms)
                    self.stats.frames += 1
                    self.stats.faces = len(event.faces)
                    self.stats.bad_frames = self.source.bad_frames + self._processing_bad
                for cb in self.on_frame:
                    cb(event)
            return RunResult(processed, "stopped")
        finally:
            with self.stats.lock:
                self.stats.bad_frames = self.source.bad_frames + self._processing_bad
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self._close_sinks()

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:
                log.error("closing %s output: %s", sink.name, e)
