"""The camera path's frame budget: how often the whole plane is scanned, and how often each face is
re-classified. Photos have no budget and do both on every frame; video files full scan at a fixed rate."""
from __future__ import annotations

import math

import numpy as np

from .track import Track, iou

# Full scans may take this share of the frame period on average: the rest is left to the window searches,
# the classifier and the outputs, and most of the core to whatever else runs there. A Pi 4's 45-ms scan is
# then at the MAX_EVERY cap; an x86 core's 5-16 ms one runs every 2-6 frames.
SCAN_SHARE = 0.1
# Never fewer than one full scan in MAX_EVERY frames (a face walking in is found within a third of a second
# at 30 fps), and never a full scan on every frame when windows follow the faces in between: at MIN_EVERY a
# new face waits at most one frame more, measured to cost under 1 % of face-frames (README, benchmarks).
MIN_EVERY = 2
MAX_EVERY = 10
# A video file has no frame budget, but its plane is four times a camera's and each full scan is three (upright
# and both tilts): full scans this many times per second of the clip, tracked faces followed in windows between
# them. A face walking in is found within a sixth of a second of the clip; a face its window loses gets a full
# scan on the next frame.
FILE_SCANS_PER_S = 6
# A clip's header can claim any rate (variable-rate phone clips, broken files): k stays at most this, a sixth
# of a second of a 120-fps slow-motion clip.
FILE_MAX_EVERY = 20
# Two boxes overlapping this much are one face: a window's and a full scan's, or two windows'.
SAME_FACE_IOU = 0.3
# A face re-classified as soon as its box has moved or grown this much since it was last classified.
MOVED_IOU = 0.5


def file_scan_every(fps: float) -> int:
    """Frames per full scan of a video file: FILE_SCANS_PER_S a second of the clip (5 at 30 fps, 1 at 6 fps)."""
    return min(FILE_MAX_EVERY, max(1, round(fps / FILE_SCANS_PER_S))) if fps > 0 else 1


class ScanCadence:
    """When to scan the whole plane. ``every`` > 0: every that many frames; 0: chosen from the measured cost
    of a full scan and the frame period (``fps``), between MIN_EVERY and MAX_EVERY."""

    def __init__(self, every: int = 0, fps: float = 30.0):
        self.fixed = every
        self.period_ms = 1000.0 / max(fps, 0.1)
        self.every = every or MIN_EVERY
        self.scan_ms: float | None = None  # moving average of a full scan's wall time
        self._since = None  # frames since the last full scan; None: none yet

    def due(self) -> bool:
        return self._since is None or self._since + 1 >= self.every

    def scanned(self, ms: float) -> None:
        self.scan_ms = ms if self.scan_ms is None else 0.8 * self.scan_ms + 0.2 * ms
        self._since = 0
        if not self.fixed:
            self.every = min(MAX_EVERY, max(MIN_EVERY, math.ceil(self.scan_ms / (SCAN_SHARE * self.period_ms))))

    def skipped(self) -> None:
        self._since = (self._since or 0) + 1


class ClassifyCadence:
    """Which tracked faces to classify on this frame: new faces and faces whose box moved at once; the others
    at most ``hz`` times a second each, the most overdue first, no more per frame than keeps the rate (so
    faces that appeared together are spread over frames and the cost per frame stays flat). ``hz`` 0: all,
    every frame."""

    def __init__(self, hz: float = 10.0, fps: float = 30.0):
        self.hz, self.fps = hz, max(fps, 0.1)

    def pick(self, tracks: list[Track], now: float) -> list[int]:
        if not self.hz:
            return list(range(len(tracks)))
        urgent = {i for i, t in enumerate(tracks) if t.scores is None or _moved(t)}
        overdue = sorted((t.due, i) for i, t in enumerate(tracks) if i not in urgent and now >= t.due)
        share = math.ceil(len(tracks) * self.hz / self.fps)
        return sorted(urgent.union(i for _, i in overdue[:max(0, share - len(urgent))]))

    def classified(self, track: Track, now: float) -> None:
        if self.hz:
            track.due = now + 1.0 / self.hz


def _moved(t: Track) -> bool:
    if t.classified_box is None:
        return True
    a, b = t.box, t.classified_box
    return iou(a, b) < MOVED_IOU or not 0.8 < float(a[2]) / max(float(b[2]), 1e-6) < 1.25


def merge(full: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The full scan's boxes plus the window searches' boxes that none of them covers (a face the full scan
    missed on this frame but its window found)."""
    keep = [b for b in near if not any(iou(b, f) >= SAME_FACE_IOU for f in full)]
    return np.concatenate([full, np.asarray(keep, np.float32).reshape(-1, 5)]) if keep else full


def one_per_face(near: np.ndarray, tracks: list[Track]) -> np.ndarray:
    """Window results (row i: track i's) with a face found by two windows kept only for the track seen most
    recently (the window of a face that looked away can meet another track's face); the other row becomes NaN,
    so a face is never reported twice."""
    kept: list[int] = []
    for i in sorted(range(len(near)), key=lambda i: (tracks[i].missed, -tracks[i].hits)):
        if np.isnan(near[i, 0]):
            continue
        if any(iou(near[i], near[j]) >= SAME_FACE_IOU for j in kept):
            near[i] = np.nan
        else:
            kept.append(i)
    return near
