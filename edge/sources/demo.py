"""The built-in demo clip: the astronaut photo (NASA, public domain; the copy scikit-image ships), panned and
zoomed at run time.

It makes ``emotion-edge run`` work on any machine, camera or not, with nothing downloaded and no extra
installed: the 68 KB photo is part of the package.
"""
from __future__ import annotations

import math
from importlib import resources

import cv2
import numpy as np

from ..config import CameraConfig
from .base import FrameSource, SourceError, make_frame


def astronaut_bgr() -> np.ndarray:
    path = resources.files(__package__) / "astronaut.jpg"
    img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"{path}: the demo photo is missing or damaged (reinstall emotion-edge)")
    return img


def demo_frame(photo: np.ndarray, i: int, n: int, size=(640, 480)) -> np.ndarray:
    """Frame ``i`` of ``n``: a window gliding over the photo and zooming in and out, so the face
    moves, changes size and, for a few frames, leaves the picture."""
    H, W = photo.shape[:2]
    t = i / max(1, n - 1)
    zoom = 1.0 + 0.8 * math.sin(math.pi * t)  # 1 -> 1.8 -> 1: the face grows and shrinks
    ww = W / zoom
    wh = ww * size[1] / size[0]
    # The window follows a path around the face (about (215, 100) in the photo) so the face
    # drifts across the frame and, near the turning points, touches its edge.
    fx, fy = 0.42 * W, 0.20 * H
    cx = fx + 0.30 * ww * math.sin(2 * math.pi * t)
    cy = fy + 0.18 * wh + 0.08 * wh * math.cos(2 * math.pi * t)
    x0 = cx - ww / 2
    y0 = cy - wh / 2
    m = np.float32([[size[0] / ww, 0, -x0 * size[0] / ww], [0, size[1] / wh, -y0 * size[1] / wh]])
    return cv2.warpAffine(photo, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(40, 40, 40))


class DemoSource(FrameSource):
    """A recorded source of ``frames`` frames (a few seconds); ends with None."""

    def __init__(self, frames: int = 150, cam: CameraConfig = CameraConfig()):
        super().__init__()
        self.n, self.loop = frames, cam.loop
        self.size, self.lores = (cam.width, cam.height), (cam.lores_width, cam.lores_height)
        self.description = f"demo clip ({frames} frames of the astronaut photo)"
        self.fps = 30.0  # its nominal rate: annotated copies and timelines play it as a 30-fps clip
        self.total = None if self.loop else frames
        self.photo = None
        self._i = 0

    def open(self):
        self.photo = astronaut_bgr()

    def read(self):
        if self.photo is None:
            self.open()
        if self._i >= self.n:
            if not self.loop:
                return None
            self._i = 0
        img = demo_frame(self.photo, self._i, self.n, self.size)
        self._i += 1
        return make_frame(self._next_seq(), img, *self.lores)


def write_demo_video(path, frames: int = 90, fps: float = 30.0, size=(640, 480)) -> None:
    """Write the demo clip as a video file (used by tests and the README picture)."""
    photo = astronaut_bgr()
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not vw.isOpened():
        raise SourceError(f"{path}: cannot write video")
    for i in range(frames):
        vw.write(demo_frame(photo, i, frames, size))
    vw.release()
