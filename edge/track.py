"""A small IoU tracker: stable face ids across frames and exponentially smoothed scores,
so a label does not flicker between two emotions on every frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import TrackerConfig
from .detect import with_roll


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, w, h (main-frame coordinates, float), roll in degrees
    scores: np.ndarray | None  # smoothed probabilities; None until the face is first classified
    hits: int = 1
    missed: int = 0
    # Where the face was when last classified and when it is due again (the pipeline's classification cadence).
    classified_box: np.ndarray | None = None
    due: float = 0.0


def iou(a, b) -> float:
    ax0, ay0, aw, ah = a[:4]
    bx0, by0, bw, bh = b[:4]
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class IouTracker:
    def __init__(self, cfg: TrackerConfig = TrackerConfig()):
        self.iou_threshold, self.alpha, self.max_missed = cfg.iou, cfg.smoothing, cfg.max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def predicted_boxes(self) -> np.ndarray:
        """Boxes to classify on frames where the detector does not run."""
        return np.array([t.box for t in self.tracks], dtype=np.float32).reshape(-1, 5)

    def match(self, boxes) -> list[Track]:
        """Match boxes to tracks greedily by IoU; returns the track of each box, in the order of ``boxes``
        (new tracks have no scores yet). Tracks without a box age, and are dropped after max_missed frames."""
        boxes = with_roll(boxes)
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
        track_for: dict[int, Track] = {}
        used = set()
        for v, ti, bi in pairs:
            if v < self.iou_threshold:
                break
            if ti in used or bi in track_for:
                continue
            used.add(ti)
            t = self.tracks[ti]
            t.box, t.hits, t.missed = boxes[bi], t.hits + 1, 0
            track_for[bi] = t
        for ti, t in enumerate(self.tracks):
            if ti not in used:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for bi in range(len(boxes)):
            if bi not in track_for:
                t = Track(self._next_id, boxes[bi], None)
                self._next_id += 1
                self.tracks.append(t)
                track_for[bi] = t
        return [track_for[bi] for bi in range(len(boxes))]

    def observe(self, track: Track, scores) -> None:
        """New scores for a track: its first ones as they are, later ones into the moving average."""
        s = np.asarray(scores, np.float32)
        track.scores = s.copy() if track.scores is None else self.alpha * s + (1 - self.alpha) * track.scores
        track.classified_box = track.box.copy()

    def reset(self) -> None:
        self.tracks.clear()
