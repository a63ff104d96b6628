"""The one face -> model-input function, shared by the runtime and ``model.evaluate``.

Keeping a single implementation is what makes FER2013 numbers mean something for the
live camera: a test holds the two paths equal on real FER2013 faces.
"""
from __future__ import annotations

import cv2
import numpy as np

SIDE = 48


def face_patch(gray: np.ndarray, box, margin: float) -> np.ndarray:
    """48x48 uint8 grayscale face from a plane and a box (plane coordinates).

    Parts of the crop outside the plane are filled by replicating the border, so a face at
    the edge keeps its geometry instead of being stretched.
    """
    x, y, w, h = (float(v) for v in box)
    dx, dy = w * margin, h * margin
    x0, y0 = int(round(x - dx)), int(round(y - dy))
    x1, y1 = int(round(x + w + dx)), int(round(y + h + dy))
    H, W = gray.shape[:2]
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty face box {box!r}")
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"face box {box!r} lies outside the {W}x{H} plane")
    crop = gray[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        crop = cv2.copyMakeBorder(crop, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE)
    if crop.shape == (SIDE, SIDE):
        return np.ascontiguousarray(crop)
    shrinking = crop.shape[0] > SIDE
    return cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def quantize(patches: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """uint8 faces [N,48,48] -> model input [N,48,48,1] with the model's own scale/zero point.

    A float model (scale 0) gets the raw pixels as float32.
    """
    x = np.asarray(patches, dtype=np.float32)[..., None]
    if not scale:
        return x
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def model_input(gray: np.ndarray, boxes, margin: float, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Crop every box of a frame and quantize them as one batch."""
    patches = np.stack([face_patch(gray, b, margin) for b in boxes]) if len(boxes) else np.zeros((0, SIDE, SIDE), np.uint8)
    return quantize(patches, scale, zero_point, dtype)
