"""Haar frontal-face detection on the small grayscale plane."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

CASCADE_NAME = "haarcascade_frontalface_default.xml"
# Raspberry Pi OS's python3-opencv keeps the cascades here instead of in cv2.data.
SYSTEM_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")


class DetectorError(RuntimeError):
    pass


def find_cascade(path: str = "") -> Path:
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
        p = Path(d) / CASCADE_NAME
        if p.is_file():
            return p
    raise DetectorError(f"{CASCADE_NAME} not found in {', '.join(dirs)}")


class HaarDetector:
    def __init__(self, cascade: str = "", scale_factor: float = 1.2, min_neighbors: int = 5, min_size: int = 40):
        self.path = find_cascade(cascade)
        self.cascade = cv2.CascadeClassifier(str(self.path))
        if self.cascade.empty():
            raise DetectorError(f"{self.path}: not a valid Haar cascade")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Boxes ``[N, 4]`` (x, y, w, h) in ``gray`` coordinates, largest first."""
        found = self.cascade.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size))
        boxes = np.asarray(found, dtype=np.int32).reshape(-1, 4)
        if len(boxes) > 1:
            boxes = boxes[np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")]
        return boxes
