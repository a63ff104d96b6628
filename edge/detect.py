"""Haar frontal-face detection on the small grayscale plane."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

CASCADE_NAME = "haarcascade_frontalface_default.xml"
# A differently trained cascade: texture that fools one rarely fools both.
CONFIRM_NAME = "haarcascade_frontalface_alt.xml"
# Raspberry Pi OS's python3-opencv keeps the cascades here instead of in cv2.data.
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


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
    c = cv2.CascadeClassifier(str(path))
    if c.empty():
        raise DetectorError(f"{path}: not a valid Haar cascade")
    return c


class HaarDetector:
    def __init__(self, cascade: str = "", scale_factor: float = 1.2, min_neighbors: int = 5, min_size: int = 40,
                 confirm_below: float = 0.0):
        self.path = find_cascade(cascade)
        self.cascade = _load(self.path)
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size
        self.confirm_below = confirm_below
        self.confirm_path = find_cascade("", CONFIRM_NAME) if confirm_below > 0 else None
        self.confirmer = _load(self.confirm_path) if self.confirm_path else None  # None: no second check
        self.rejected = 0  # boxes the second cascade did not confirm, for the log and tests

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Boxes ``[N, 4]`` (x, y, w, h) in ``gray`` coordinates, largest first."""
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size))
        boxes = np.asarray(found, dtype=np.int32).reshape(-1, 4)
        if self.confirmer is not None and len(boxes):
            small = boxes[:, 2] < self.confirm_below * gray.shape[1]
            if small.any():
                keep = np.ones(len(boxes), bool)
                keep[small] = [self._confirmed(gray, b) for b in boxes[small]]
                dropped = len(boxes) - int(keep.sum())
                if dropped:
                    self.rejected += dropped
                    log.debug("second cascade rejected %d small box(es)", dropped)
                boxes = boxes[keep]
        if len(boxes) > 1:
            boxes = boxes[np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")]
        return boxes

    def _confirmed(self, gray: np.ndarray, box) -> bool:
        """Does the second cascade find a face of about the same size around this box?"""
        x, y, w, h = (int(v) for v in box)
        m = w // 4  # the two cascades frame faces slightly differently
        roi = gray[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
        found = self.confirmer.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=2,
                                                minSize=(int(0.6 * w),) * 2, maxSize=(int(1.5 * w) + 1,) * 2)
        return len(found) > 0
