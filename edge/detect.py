"""Haar frontal-face detection on the small grayscale plane."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .config import DetectorConfig

log = logging.getLogger(__name__)

CASCADE_NAME = "haarcascade_frontalface_default.xml"
# A differently trained cascade: texture that fools one rarely fools both.
CONFIRM_NAME = "haarcascade_frontalface_alt.xml"
# Raspberry Pi OS's python3-opencv keeps the cascades here instead of in cv2.data.
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")
# detect_padded: the border per side as a fraction of the picture (chosen by measurement: README), the
# largest side it searches, and the smallest face it reports as a fraction of the picture's shorter side.
PAD_BORDER = 0.25
PAD_SIDE = 400
PAD_MIN_FILL = 0.4
# detect_near (the searches between full scans): the window reaches this fraction of the face's side beyond its
# box on every side, sizes within this factor of the face's, scanned in finer steps than a full scan (the range
# is narrow, so it stays cheap, and the box follows the face closely), on the window shrunk so the face is
# WINDOW_SIDE px.
WINDOW_REACH = 0.5
WINDOW_SCALES = 1.3
WINDOW_STEP = 1.1
WINDOW_SIDE = 36
# Fewer merged detections than a full scan asks for: the window holds a face that was there a frame ago, and a
# face at 36 px gathers fewer neighbours than at full size (a face-frame each time it is missed: README).
WINDOW_NEIGHBORS = 3


class DetectorError(RuntimeError):
    pass


def find_cascade(path: str = "", name: str = CASCADE_NAME) -> Path:
    if path:
        p = Path(path)
        if not p.is_file():
            raise DetectorError(f"{p}: cascade file not found")
        return p
    dirs = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        dirs.append(data.haarcascades)
    dirs.extend(SYSTEM_DIRS)
    for d in dirs:
        p = Path(d) / name
        if p.is_file():
            return p
    raise DetectorError(f"{name} not found in {', '.join(dirs)}")


def _load(path: Path) -> cv2.CascadeClassifier:
    try:
        c = cv2.CascadeClassifier(str(path))
    except (cv2.error, SystemError):  # OpenCV raises from its XML parser on a file that is not a cascade
        raise DetectorError(f"{path}: not a valid Haar cascade") from None
    if c.empty():
        raise DetectorError(f"{path}: not a valid Haar cascade")
    return c


class HaarDetector:
    def __init__(self, cfg: DetectorConfig = DetectorConfig()):
        self.path = find_cascade(cfg.cascade)
        self.cascade = _load(self.path)
        self.scale_factor, self.min_neighbors, self.min_size = cfg.scale_factor, cfg.min_neighbors, cfg.min_size
        self.confirm_below = cfg.confirm_below
        self.confirm_path = find_cascade("", CONFIRM_NAME) if cfg.confirm_below > 0 else None
        self.confirmer = _load(self.confirm_path) if self.confirm_path else None  # None: no second check
        self.rejected = 0  # boxes the second cascade did not confirm, for the log and tests
        # The frontal cascade finds faces rolled up to about 12 degrees; ``detect(..., tilted=True)`` also
        # searches the plane turned by -tilt and +tilt, so heads leaning up to about 30 degrees are found.
        self.tilt = float(cfg.tilt)

    def detect(self, gray: np.ndarray, tilted: bool = False) -> np.ndarray:
        """Faces ``[N, 5]`` float32, largest first: x, y, w, h of the upright face box in ``gray`` coordinates
        and its roll in degrees (counter-clockwise on screen; 0 for faces found upright).

        A rolled face's box is the square the cascade saw, centred on the face and turned by the roll; its x, y,
        w, h are that square unrotated about its centre, so crops and overlaps can treat it like any other box.
        """
        boxes, counts = self._search(gray)
        rolls = np.zeros(len(boxes), np.float32)
        if tilted and self.tilt > 0:
            found = [(boxes.astype(np.float32), counts, rolls)]
            for angle in (-self.tilt, self.tilt):
                # Turning the plane by ``angle`` makes a face rolled by ``-angle`` upright. Same size, so the
                # cost is one more upright search per angle; the corners it cuts off were searched upright.
                turned, m = _turn(gray, angle)
                b, n = self._search(turned, strict=True)
                if not len(b):
                    continue
                found.append((_unturn(b.astype(np.float32), m), n, np.full(len(b), -angle, np.float32)))
            boxes, counts, rolls = (np.concatenate(a) for a in zip(*found))
            keep = _strongest(boxes, counts, rolls)
            boxes, rolls = boxes[keep], rolls[keep]
        out = np.column_stack([boxes.astype(np.float32).reshape(-1, 4), rolls]).astype(np.float32)
        if len(out) > 1:
            out = out[np.argsort(-(out[:, 2] * out[:, 3]), kind="stable")]
        return out

    def detect_padded(self, gray: np.ndarray, border: float = PAD_BORDER, tilted: bool = False) -> np.ndarray:
        """Faces that fill the picture (ID and profile photos, crops), which the cascade misses for want of
        context around them: ``detect`` on the plane framed by a border of its own mean grey, ``border`` times
        its size on every side, shrunk first to at most PAD_SIDE px (a face that fills the picture is large
        there too, and the search costs a fraction of the full one). Only boxes at least PAD_MIN_FILL of the
        picture's shorter side are kept: that is what this search is for, and small ones would be texture.
        Boxes are in ``gray`` coordinates and may reach past its edges; the caller clips what it reports and
        crops with the edge replicated."""
        h, w = gray.shape[:2]
        s = min(1.0, PAD_SIDE / max(h, w))
        small = gray if s >= 1.0 else cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        py, px = int(round(sh * border)), int(round(sw * border))
        framed = cv2.copyMakeBorder(small, py, py, px, px, cv2.BORDER_CONSTANT, value=int(round(float(small.mean()))))
        boxes = self.detect(framed, tilted=tilted)
        if not len(boxes):
            return boxes
        boxes[:, 0] -= px
        boxes[:, 1] -= py
        boxes[:, :4] /= s
        cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
        keep = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h) & (boxes[:, 2] >= PAD_MIN_FILL * min(h, w))
        return boxes[keep]

    def wants_padded(self, boxes: np.ndarray, shape) -> bool:
        """Is a face filling the picture possible, given what ``detect`` found? Nothing, or only faces much
        smaller than the picture (a 1000-px ID photo can hold a 50-px false face and no found real one)."""
        return not len(boxes) or float(boxes[:, 2].max()) < PAD_MIN_FILL * min(shape[:2])

    def detect_near(self, gray: np.ndarray, boxes: np.ndarray, reach: float = WINDOW_REACH,
                    scale_range: float = WINDOW_SCALES) -> np.ndarray:
        """The faces of ``boxes`` (``[N, 5]``, last positions on this plane) looked for again, each only in a
        window around its box and only at sizes within ``scale_range`` of it: a fraction of a full scan, for
        the frames between full scans. Row i is face i's new box and roll (a leaning face is looked for at its
        roll), or NaN where it was not found there. Upright faces skip the second cascade: they were confirmed
        when the full scan found them."""
        out = np.full((len(boxes), 5), np.nan, np.float32)
        H, W = gray.shape[:2]
        for i, (x, y, w, h, roll) in enumerate(np.asarray(boxes, np.float32).reshape(-1, 5)):
            m = reach * max(w, h)
            x0, y0 = int(max(0, x - m)), int(max(0, y - m))
            x1, y1 = int(min(W, x + w + m)), int(min(H, y + h + m))
            # The window shrunk until the face is WINDOW_SIDE px: the cascade's cost grows with the window
            # positions at each scale, and a face near its 24-px base size leaves few of them.
            s = min(1.0, WINDOW_SIDE / max(w, h, 1.0))
            roi = gray[y0:y1, x0:x1]
            if s < 1.0:
                roi = cv2.resize(roi, (max(1, round(roi.shape[1] * s)), max(1, round(roi.shape[0] * s))),
                                 interpolation=cv2.INTER_AREA)
            side = max(w, h) * s
            lo, hi = max(24, int(side / scale_range)), int(side * scale_range) + 1
            if min(roi.shape[:2]) < lo:
                continue
            roll = 0.0 if np.isnan(roll) else float(roll)
            if roll:
                # A face found leaning is looked for leaning the same way: the window turned upright, as the
                # full scan's turned planes do, instead of an upright search that misses it and costs a
                # full scan on the next frame.
                roi, turn = _turn(roi, -roll)
            found = self.cascade.detectMultiScale(roi, scaleFactor=WINDOW_STEP,
                                                  minNeighbors=min(self.min_neighbors, WINDOW_NEIGHBORS),
                                                  minSize=(lo, lo), maxSize=(hi, hi))
            found = np.asarray(found, np.float32).reshape(-1, 4)
            if roll and self.confirmer is not None:
                # As on the full scan's turned planes, a leaning box must satisfy the second cascade too:
                # texture seen turned (grass, gravel) would otherwise be followed from window to window.
                found = np.asarray([b for b in found if self._confirmed(roi, b, 4)], np.float32).reshape(-1, 4)
            if not len(found):
                continue
            if roll:
                found = _unturn(found, turn)
            found /= s
            found[:, 0] += x0
            found[:, 1] += y0
            # The one nearest where the face was: a second face inside the window is the full scan's to find.
            c = found[:, :2] + found[:, 2:] / 2
            k = int(np.argmin(np.hypot(c[:, 0] - (x + w / 2), c[:, 1] - (y + h / 2))))
            out[i, :4], out[i, 4] = found[k], roll
        return out

    def _search(self, gray: np.ndarray, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Upright boxes ``[N, 4]`` int32 and how many raw detections each merged (its strength).

        ``strict`` (the turned planes): every box, not only small ones, must satisfy the second cascade (when
        there is one: ``confirm_below`` > 0), and more firmly. Each turned search meets texture anew: on
        scikit-image's texture and object images at 2048 px the two turned searches added 24 false faces
        unchecked and 7 this way, while faces found in photos rolled by 12-30 degrees (272 faces, 50-220 px)
        went from 240 to 239.
        """
        found, counts = self.cascade.detectMultiScale2(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size))
        boxes = np.asarray(found, dtype=np.int32).reshape(-1, 4)
        counts = np.asarray(counts, dtype=np.int32).reshape(-1)
        if self.confirmer is not None and len(boxes):
            check = np.ones(len(boxes), bool) if strict else boxes[:, 2] < self.confirm_below * gray.shape[1]
            if check.any():
                keep = np.ones(len(boxes), bool)
                keep[check] = [self._confirmed(gray, b, 4 if strict else 2) for b in boxes[check]]
                dropped = len(boxes) - int(keep.sum())
                if dropped:
                    self.rejected += dropped
                    log.debug("second cascade rejected %d box(es)", dropped)
                boxes, counts = boxes[keep], counts[keep]
        return boxes, counts

    def _confirmed(self, gray: np.ndarray, box, neighbours: int = 2) -> bool:
        """Does the second cascade find a face of about the same size around this box?"""
        x, y, w, h = (int(v) for v in box)
        m = w // 4  # the two cascades frame faces slightly differently
        roi = gray[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
        found = self.confirmer.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=neighbours,
                                                minSize=(int(0.6 * w),) * 2, maxSize=(int(1.5 * w) + 1,) * 2)
        return len(found) > 0


def _turn(gray: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``gray`` turned by ``angle`` degrees about its centre, same size, edges replicated, and the matrix."""
    h, w = gray.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    return cv2.warpAffine(gray, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), m


def _unturn(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Boxes ``[N, 4]`` float32 found on a plane turned by ``m``, moved back: each keeps its size, its centre
    goes where it was before the turn."""
    c = np.column_stack([boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2, np.ones(len(boxes), np.float32)])
    back = c @ cv2.invertAffineTransform(m).T.astype(np.float32)
    boxes[:, 0], boxes[:, 1] = back[:, 0] - boxes[:, 2] / 2, back[:, 1] - boxes[:, 3] / 2
    return boxes


def with_roll(boxes) -> np.ndarray:
    """``[N, 5]`` float32 (x, y, w, h, roll); boxes given without a roll are upright."""
    b = np.asarray(boxes, dtype=np.float32)
    if b.size == 0:
        return np.zeros((0, 5), np.float32)
    b = b.reshape(len(b), -1)
    return b if b.shape[1] == 5 else np.column_stack([b[:, :4], np.zeros(len(b), np.float32)])


def _strongest(boxes: np.ndarray, counts: np.ndarray, rolls: np.ndarray) -> np.ndarray:
    """Indices of the detections to keep when the same face was found at several rolls: the one the cascade
    was surest of (most merged detections; the upright one on a tie), the others dropped when their centres
    lie inside its box and their sizes are within a factor of two."""
    order = sorted(range(len(boxes)), key=lambda i: (-int(counts[i]), abs(float(rolls[i]))))
    centres = boxes[:, :2] + boxes[:, 2:4] / 2
    kept: list[int] = []
    for i in order:
        duplicate = any(
            np.all(np.abs(centres[i] - centres[k]) < boxes[k, 2:4] / 2) and 0.5 < boxes[i, 2] / boxes[k, 2] < 2.0
            for k in kept)
        if not duplicate:
            kept.append(i)
    return np.asarray(sorted(kept), dtype=np.int64)
