"""Still faces: a poster, a framed photo, a face on a paused screen. A live camera's face whose box has not
moved and whose pixels have not changed beyond sensor noise for ``[tracker] still_after`` seconds is not a
person in the room: it stays in the per-frame events (``"still": true``) and leaves the state, presence and
the mood summary. It comes back as a person the moment it moves or changes.

Compared with the face as it was when it last changed, in the same region of the picture, not with the
previous frame, so a slow drift adds up and the detector's own jitter does not count.
A living face is never that still: blinks, breathing and small head movements change it within seconds.
"""
from __future__ import annotations

import cv2
import numpy as np

SIDE = 16  # the face compared at 16x16: each cell averages many pixels, so sensor noise stays small
# Largest change in one cell, after the mean change (auto exposure) is taken out, that still counts as the
# same picture: a blink changes the eye cells by several times this, sensor noise stays well under it.
CHANGE = 12.0


class StillFaces:
    def __init__(self, still_after: float):
        self.still_after = still_after
        self._refs: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}  # id -> (box, face cells, since)
        self.seen: set[int] = set()  # ids that were still at some point (the self-test counts them)

    def _cells(self, gray: np.ndarray, box_plane) -> np.ndarray | None:
        x, y, w, h = (int(round(v)) for v in box_plane[:4])
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(gray.shape[1], x + w), min(gray.shape[0], y + h)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        return cv2.resize(gray[y0:y1, x0:x1], (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)

    def update(self, tracks, gray: np.ndarray, to_main: np.ndarray, now: float) -> set[int]:
        """The ids of the tracks (seen on this frame) that are still now."""
        still, alive = set(), set()
        for t in tracks:
            alive.add(t.id)
            if t.missed:
                continue
            box = np.asarray(t.box[:4], np.float64)
            ref = self._refs.get(t.id)
            if ref is not None and self._same(ref, box, gray, to_main):
                if now - ref[2] >= self.still_after:
                    still.add(t.id)
                    self.seen.add(t.id)
                continue
            cells = self._cells(gray, box / to_main[:4])
            if cells is None:
                self._refs.pop(t.id, None)
            else:
                self._refs[t.id] = (box, cells, now)
        for gone in set(self._refs) - alive:
            del self._refs[gone]
        return still

    def _same(self, ref, box: np.ndarray, gray: np.ndarray, to_main: np.ndarray) -> bool:
        """Still there (the detector's box of a fixed picture wanders by several pixels between a full scan
        and a window search, so only a tenth of its size counts as a move), and the pixels of the region it
        was first seen in unchanged."""
        rbox, rcells, _ = ref
        tol = 0.1 * rbox[2]
        rc, c = rbox[:2] + rbox[2:] / 2, box[:2] + box[2:] / 2
        if np.abs(c - rc).max() > tol or abs(box[2] - rbox[2]) > 2 * tol:
            return False
        cells = self._cells(gray, rbox / to_main[:4])
        if cells is None:
            return False
        diff = cells - rcells
        return float(np.abs(diff - diff.mean()).max()) <= CHANGE
