"""What a small camera does to a face, in numpy and OpenCV: the fixed conditions of the evaluation's
camera suite, and the random mix of the same degradations that training sees.

Both work on uint8 48x48 faces *before* the model's photometric step (``edge.preprocess.photometric``),
as a camera's face reaches the runtime: blurred, noisy, compressed, under- or over-exposed, small.
"""
from __future__ import annotations

import cv2
import numpy as np


def gaussian_blur(face: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(face, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def motion_blur(face: np.ndarray, length: int, angle_deg: float = 0.0) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    if angle_deg:
        m = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
        k = cv2.warpAffine(k, m, (length, length))
    return cv2.filter2D(face, -1, k / k.sum(), borderType=cv2.BORDER_REPLICATE)


def noise(face: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(face + rng.normal(0.0, sigma, face.shape), 0, 255).astype(np.uint8)


def jpeg(face: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def seen_at(face: np.ndarray, side: int) -> np.ndarray:
    """The face as a camera sees it ``side`` pixels wide, enlarged back to 48 as the runtime does."""
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, face.shape[::-1], interpolation=cv2.INTER_LINEAR)


def exposure(face: np.ndarray, gain: float) -> np.ndarray:
    """Scaled grey levels, clipped at 255 as a sensor saturates."""
    return np.clip(face.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)


# The camera suite: name -> f(face, rng). Fixed parameters; the noise drawn from a seeded generator.
CONDITIONS = {
    "clean": lambda f, rng: f,
    "blur σ1": lambda f, rng: gaussian_blur(f, 1.0),
    "motion 3px": lambda f, rng: motion_blur(f, 3),
    "noise σ10": lambda f, rng: noise(f, 10.0, rng),
    "JPEG q30": lambda f, rng: jpeg(f, 30),
    "seen at 32px": lambda f, rng: seen_at(f, 32),
    "low light": lambda f, rng: noise(exposure(f, 0.3), 5.0, rng),
}


def condition(faces: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Every face of ``faces`` [N,48,48] uint8 under one of ``CONDITIONS``."""
    fn = CONDITIONS[name]
    rng = np.random.default_rng(seed)
    return np.stack([fn(f, rng) for f in faces]) if len(faces) else faces


def degrade(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random camera for each face, in the order light meets a camera: optics and motion, the
    sensor's resolution, its exposure, its noise, then the encoder. About one face in six is left clean."""
    out = np.empty_like(faces)
    for i, f in enumerate(faces):
        if rng.random() < 0.25:
            f = gaussian_blur(f, rng.uniform(0.4, 1.6))
        elif rng.random() < 0.15:
            f = motion_blur(f, int(rng.choice((3, 5))), float(rng.choice((0, 45, 90, 135))))
        if rng.random() < 0.3:
            f = seen_at(f, int(rng.integers(20, 45)))
        if rng.random() < 0.3:
            f = exposure(f, rng.uniform(0.2, 0.6) if rng.random() < 0.65 else rng.uniform(1.3, 2.2))
        if rng.random() < 0.4:
            f = noise(f, rng.uniform(2.0, 12.0), rng)
        if rng.random() < 0.25:
            f = jpeg(f, int(rng.integers(25, 91)))
        out[i] = f
    return out
