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

    ``box`` is x, y, w, h, optionally followed by the face's roll in degrees (counter-clockwise, as the
    detector reports it): a rolled face is turned upright first, since FER2013's faces are upright.
    Parts of the crop outside the plane are filled by replicating the border, so a face at
    the edge keeps its geometry instead of being stretched.
    """
    if len(box) > 4 and box[4]:
        return _upright_patch(gray, box, margin)
    x, y, w, h = (float(v) for v in box[:4])
    dx, dy = w * margin, h * margin
    x0, y0 = int(round(x - dx)), int(round(y - dy))
    x1, y1 = int(round(x + w + dx)), int(round(y + h + dy))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty face box {box!r}")
    crop = _crop(gray, x0, y0, x1, y1, box)
    if crop.shape == (SIDE, SIDE):
        return np.ascontiguousarray(crop)
    shrinking = crop.shape[0] > SIDE
    return cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _upright_patch(gray: np.ndarray, box, margin: float) -> np.ndarray:
    """Turn a square around the rolled face upright, then crop it like an upright face.

    The square is cut out first (about 1.5x the crop), so only it is rotated, at full resolution: the
    final resize can then average pixels (INTER_AREA) instead of sampling a rotated grid sparsely.
    """
    x, y, w, h, roll = (float(v) for v in box[:5])
    cx, cy = x + w / 2, y + h / 2
    half = int(np.ceil(max(w, h) * (1 + 2 * max(margin, 0.0)) * 0.75)) + 1
    x0, y0 = round(cx) - half, round(cy) - half
    region = _crop(gray, x0, y0, x0 + 2 * half, y0 + 2 * half, box)
    # Keep the sub-pixel rest of the centre, so the face is turned about its own centre.
    rx, ry = cx - x0, cy - y0
    m = cv2.getRotationMatrix2D((rx, ry), -roll, 1.0)
    upright = cv2.warpAffine(region, m, (2 * half, 2 * half), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return face_patch(upright, (rx - w / 2, ry - h / 2, w, h), margin)


def _crop(gray: np.ndarray, x0: int, y0: int, x1: int, y1: int, box) -> np.ndarray:
    """``gray[y0:y1, x0:x1]``, the border replicated where the rectangle leaves the plane."""
    H, W = gray.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"face box {box!r} lies outside the {W}x{H} plane")
    crop = gray[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        crop = cv2.copyMakeBorder(crop, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE)
    return crop


# A face narrower than this on the detection plane is cropped from the main image instead, when the frame has
# one: the 320-px lores plane holds a 40-px face that the 640-px main stream holds at 80.
SHARP_BELOW = 2 * SIDE


def cut_from_main(width: float, scale) -> bool:
    """Whether a face ``width`` pixels wide on the detection plane is cut from the main image (``scale`` = main
    pixels per plane pixel, x and y): small there, and the main image is larger."""
    return width < SHARP_BELOW and min(scale) > 1.0


def sharper_patches(gray: np.ndarray, boxes, margin: float, main: np.ndarray | None, scale) -> np.ndarray:
    """Like ``patches``, but a face smaller than SHARP_BELOW on ``gray`` is cut from ``main`` (BGR, ``scale`` =
    main pixels per plane pixel, x and y) when the main image is larger: only the face's square is turned grey,
    so the cost is a few hundred microseconds per small face, not a conversion of the frame."""
    if main is None or not len(boxes):
        return patches(gray, boxes, margin)
    out = []
    for b in boxes:
        b = np.asarray(b, dtype=np.float64)
        if not cut_from_main(b[2], scale):
            out.append(face_patch(gray, b, margin))
            continue
        m = b.copy()
        m[[0, 2]] *= scale[0]
        m[[1, 3]] *= scale[1]
        # The square around the face (room for margin and roll), in main pixels, clipped to the image.
        half = max(m[2], m[3]) * (1 + 2 * max(margin, 0.0))
        cx, cy = m[0] + m[2] / 2, m[1] + m[3] / 2
        H, W = main.shape[:2]
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(W, int(np.ceil(cx + half))), min(H, int(np.ceil(cy + half)))
        if x1 <= x0 or y1 <= y0:
            out.append(face_patch(gray, b, margin))
            continue
        roi = cv2.cvtColor(np.ascontiguousarray(main[y0:y1, x0:x1]), cv2.COLOR_BGR2GRAY)
        m[0] -= x0
        m[1] -= y0
        out.append(face_patch(roi, m, margin))
    return np.stack(out)


def quantize(patches: np.ndarray, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """uint8 faces [N,48,48] -> model input [N,48,48,1] with the model's own scale/zero point.

    A float model (scale 0) gets the raw pixels as float32.
    """
    x = np.asarray(patches, dtype=np.float32)[..., None]
    if not scale:
        return x
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def patches(gray: np.ndarray, boxes, margin: float) -> np.ndarray:
    """Every box of a frame as a 48x48 face, ``[N, 48, 48]`` uint8."""
    if not len(boxes):
        return np.zeros((0, SIDE, SIDE), np.uint8)
    return np.stack([face_patch(gray, b, margin) for b in boxes])


# The photometric step a model was trained with, applied to every 48x48 face before quantization.
# A model records its own (the ``.json`` beside it); training, evaluation and the runtime call ``photometric``.
METHODS = ("none", "stretch", "equalize", "denoise-equalize")

# Equalisation spreads a dark face's few grey levels over 0..255 and its sensor noise with them: a face at a
# third of the light with noise sigma 5 comes out as noisy as sigma 16 on a well-lit one. A face whose noise,
# measured against its own spread, would show above NOISY grey levels is blurred by DENOISE_SIGMA first. Both
# chosen on PublicTest with the shipped models (low light +1.6 / +0.6 points, clean faces unchanged; below
# sigma 0.5 the noise stays, above 0.8 the blur costs the noisy but well-lit faces).
NOISY = 14.0
DENOISE_SIGMA = 0.6


def photometric(faces: np.ndarray, method: str) -> np.ndarray:
    """uint8 faces ``[N,48,48]`` through one of ``METHODS``; returns uint8 faces of the same shape."""
    if method == "none":
        return np.asarray(faces, dtype=np.uint8)
    if method == "stretch":
        return stretch(faces)
    if method == "equalize":
        return equalize(faces)
    if method == "denoise-equalize":
        return equalize(denoise(faces))
    raise ValueError(f"unknown preprocessing {method!r} (known: {', '.join(METHODS)})")


def equalize(faces: np.ndarray) -> np.ndarray:
    """Each face's histogram equalised (OpenCV's ``equalizeHist``): a face in shadow, backlight or a
    washed-out exposure gets the same spread of grey levels as a well-lit one, and one bright or dark
    outlier pixel cannot squeeze the rest, as it does to a min-max stretch."""
    f = np.ascontiguousarray(faces, dtype=np.uint8)
    out = np.empty_like(f)
    for i in range(len(f)):
        out[i] = cv2.equalizeHist(f[i])
    return out


def noise_after_spread(faces: np.ndarray) -> np.ndarray:
    """Per face, its noise (Immerkaer's estimate from the Laplacian-like residual) in grey levels of the face
    once its 1st..99th percentile spread is stretched to 0..255, which is about what equalisation does."""
    f = np.asarray(faces, dtype=np.float32)
    if not len(f):
        return np.zeros(0, np.float32)
    r = (f[:, :-2, :-2] - 2 * f[:, :-2, 1:-1] + f[:, :-2, 2:]
         - 2 * f[:, 1:-1, :-2] + 4 * f[:, 1:-1, 1:-1] - 2 * f[:, 1:-1, 2:]
         + f[:, 2:, :-2] - 2 * f[:, 2:, 1:-1] + f[:, 2:, 2:])
    sigma = np.sqrt(np.pi / 2) * np.abs(r).mean(axis=(1, 2)) / 6
    # The 1st and 99th percentiles from one histogram per face (a sort or partition costs 10x as much).
    n, area = len(f), f[0].size
    hist = np.bincount((np.asarray(faces, np.int64).reshape(n, -1) + 256 * np.arange(n)[:, None]).ravel(),
                       minlength=256 * n).reshape(n, 256).cumsum(axis=1)
    k = area // 100
    lo = (hist <= k).sum(axis=1)
    hi = (hist <= area - 1 - k).sum(axis=1)
    return sigma / np.maximum(hi - lo, 1.0) * 255


def denoise(faces: np.ndarray) -> np.ndarray:
    """The faces whose noise would show after equalisation (``noise_after_spread`` > NOISY) blurred slightly;
    the others untouched."""
    f = np.array(faces, dtype=np.uint8)
    for i in np.flatnonzero(noise_after_spread(f) > NOISY):
        f[i] = cv2.GaussianBlur(f[i], (0, 0), DENOISE_SIGMA)
    return f


def stretch(faces: np.ndarray) -> np.ndarray:
    """Each face's darkest pixel to 0 and brightest to 255: a camera's face in shadow or backlight may
    span 20..90. A flat face is left as it is."""
    f = np.asarray(faces, dtype=np.float32)
    if not len(f):
        return np.asarray(faces, dtype=np.uint8)
    lo = f.min(axis=(1, 2), keepdims=True)
    span = f.max(axis=(1, 2), keepdims=True) - lo
    out = np.where(span > 0, (f - lo) * (255.0 / np.maximum(span, 1.0)), f)
    return np.round(out).astype(np.uint8)
