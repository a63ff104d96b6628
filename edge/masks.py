"""Regions of the picture where no face is reported: a TV, a poster, a window onto the street.

A mask is a polygon in fractions of the frame (0..1 from the left and top edges), so it holds whatever the
main or lores size; the HTTP view turns clicks into one. A face whose box centre lies in a mask is dropped
before tracking: it never gets an id, an emotion, a place in the state or the summary.
"""
from __future__ import annotations

import math

import numpy as np

MAX_MASKS = 32
MAX_POINTS = 64


class MaskError(ValueError):
    """A mask that cannot be used; the message names the key and the polygon."""


def _segments_cross(p1, p2, p3, p4) -> bool:
    """True when segments p1-p2 and p3-p4 properly intersect (touching at an end does not count)."""
    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return 0 if abs(v) < 1e-12 else (1 if v > 0 else -1)

    o1, o2, o3, o4 = orient(p1, p2, p3), orient(p1, p2, p4), orient(p3, p4, p1), orient(p3, p4, p2)
    return o1 * o2 < 0 and o3 * o4 < 0


def parse(where: str, value) -> tuple[tuple[tuple[float, float], ...], ...]:
    """TOML's list of polygons, each a list of [x, y] fractions, checked: at least 3 points, every point
    inside the frame, an area, no edge crossing another."""
    if not isinstance(value, list):
        raise MaskError(f"{where}: expected a list of polygons, each a list of [x, y] points, got {type(value).__name__}")
    if len(value) > MAX_MASKS:
        raise MaskError(f"{where}: {len(value)} polygons, at most {MAX_MASKS}")
    out = []
    for i, poly in enumerate(value):
        w = f"{where}[{i}]"
        if not isinstance(poly, list) or not 3 <= len(poly) <= MAX_POINTS:
            raise MaskError(f"{w}: a polygon is a list of 3 to {MAX_POINTS} [x, y] points")
        pts = []
        for j, pt in enumerate(poly):
            if not (isinstance(pt, list) and len(pt) == 2 and
                    all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in pt)):
                raise MaskError(f"{w}[{j}]: expected [x, y], two numbers, got {pt!r}")
            x, y = float(pt[0]), float(pt[1])
            if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise MaskError(f"{w}[{j}]: {pt!r} is outside the frame: x and y are fractions from 0 to 1")
            pts.append((x, y))
        n = len(pts)
        for a in range(n):
            for b in range(a + 1, n):
                if b == a + 1 or (a == 0 and b == n - 1):
                    continue  # neighbouring edges share a corner
                if _segments_cross(pts[a], pts[(a + 1) % n], pts[b], pts[(b + 1) % n]):
                    raise MaskError(f"{w}: edges {a}-{a + 1} and {b}-{(b + 1) % n} cross: draw the outline once "
                                    "round, without crossing itself")
        area = 0.5 * abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(pts, pts[1:] + pts[:1])))
        if area < 1e-6:
            raise MaskError(f"{w}: the points enclose no area")
        out.append(tuple(pts))
    return tuple(out)


class Masks:
    def __init__(self, polygons=()):
        self.polygons = [np.asarray(p, np.float64) for p in polygons]
        self.dropped = 0  # faces dropped so far (the self-test and the stats say how many)

    def __bool__(self) -> bool:
        return bool(self.polygons)

    def covers(self, centres: np.ndarray) -> np.ndarray:
        """[N] bool: which of the [N, 2] points (fractions of the frame) lie inside a mask (even-odd rule)."""
        inside = np.zeros(len(centres), bool)
        if not len(centres):
            return inside
        x, y = centres[:, 0:1], centres[:, 1:2]
        for p in self.polygons:
            x1, y1 = p[:, 0], p[:, 1]
            x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
            crosses = ((y1 > y) != (y2 > y)) & (x < (x2 - x1) * (y - y1) / np.where(y2 == y1, 1e-12, y2 - y1) + x1)
            inside |= crosses.sum(axis=1) % 2 == 1
        return inside

    def keep(self, boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """The boxes ([N, >=4] x, y, w, h in main pixels) whose centre is outside every mask."""
        if not self.polygons or not len(boxes):
            return boxes
        w, h = frame_size
        centres = np.stack([(boxes[:, 0] + boxes[:, 2] / 2) / w, (boxes[:, 1] + boxes[:, 3] / 2) / h], axis=1)
        masked = self.covers(centres)
        self.dropped += int(masked.sum())
        return boxes[~masked]

    def pixels(self, frame_size: tuple[int, int]) -> list[np.ndarray]:
        """The polygons in pixels of a frame of that size, for drawing."""
        w, h = frame_size
        return [np.round(p * (w, h)).astype(np.int32) for p in self.polygons]
