"""Batched, stateless (seeded) augmentation for 48x48 grayscale faces in 0..255 float.

Stateless ops keyed by (seed, global step) make a run reproducible and a resumed run
see the same augmentations it would have seen uninterrupted.
"""
from __future__ import annotations

import math

import tensorflow as tf


def _affine(n, seed, max_rot_deg, max_shift, zoom):
    """Per-image projective transforms (output -> input mapping) about the image centre."""
    s = tf.random.stateless_uniform
    ang = s([n], seed=seed, minval=-1.0, maxval=1.0) * (max_rot_deg * math.pi / 180)
    scale = s([n], seed=seed + [0, 1], minval=1.0 - zoom, maxval=1.0 + zoom)
    tx = s([n], seed=seed + [0, 2], minval=-max_shift, maxval=max_shift) * 48.0
    ty = s([n], seed=seed + [0, 3], minval=-max_shift, maxval=max_shift) * 48.0
    c = 23.5
    cos, sin = tf.cos(ang) / scale, tf.sin(ang) / scale
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = c - a0 * c - a1 * c + tx
    b2 = c - b0 * c - b1 * c + ty
    z = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, z, z], axis=1)


# "light" keeps the geometry (Haar crops jitter by that much at run time) and the lighting
# (camera vs web photo), and halves the occlusion, the strongest regulariser of the set.
LEVELS = {
    "full": {"max_rot_deg": 15.0, "erase_p": 0.5, "erase_max": 12.0},
    "light": {"max_rot_deg": 10.0, "erase_p": 0.25, "erase_max": 8.0},
}


def augment(x, seed, max_rot_deg: float = 15.0, erase_p: float = 0.5, erase_max: float = 12.0):
    """x: float32 [N,48,48,1] in 0..255; seed: int32 [2] tensor."""
    n = tf.shape(x)[0]
    seed = tf.cast(seed, tf.int32)
    s = tf.random.stateless_uniform
    flip = s([n, 1, 1, 1], seed=seed + [0, 10]) < 0.5
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    t = _affine(n, seed + [0, 20], max_rot_deg=max_rot_deg, max_shift=0.1, zoom=0.12)
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=t, output_shape=[48, 48], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    # Lighting: a camera face differs from a web photo mostly in contrast and exposure.
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = s([n, 1, 1, 1], seed=seed + [0, 30], minval=0.7, maxval=1.3)
    bright = s([n, 1, 1, 1], seed=seed + [0, 31], minval=-25.0, maxval=25.0)
    x = (x - mean) * contrast + mean + bright
    gamma = tf.exp(s([n, 1, 1, 1], seed=seed + [0, 32], minval=-0.3, maxval=0.3))
    x = 255.0 * tf.pow(tf.clip_by_value(x, 0.0, 255.0) / 255.0, gamma)
    # Random erasing: occlusion robustness (hands, glasses), and a regulariser.
    cy = s([n, 1, 1, 1], seed=seed + [0, 40], minval=0.0, maxval=48.0)
    cx = s([n, 1, 1, 1], seed=seed + [0, 41], minval=0.0, maxval=48.0)
    hh = s([n, 1, 1, 1], seed=seed + [0, 42], minval=4.0, maxval=erase_max)
    hw = s([n, 1, 1, 1], seed=seed + [0, 43], minval=4.0, maxval=erase_max)
    on = tf.cast(s([n, 1, 1, 1], seed=seed + [0, 44]) < erase_p, tf.float32)
    yy = tf.reshape(tf.range(48, dtype=tf.float32), [1, 48, 1, 1])
    xx = tf.reshape(tf.range(48, dtype=tf.float32), [1, 1, 48, 1])
    box = tf.cast((tf.abs(yy - cy) < hh) & (tf.abs(xx - cx) < hw), tf.float32) * on
    fill = s([n, 1, 1, 1], seed=seed + [0, 45], minval=0.0, maxval=255.0)
    x = x * (1.0 - box) + fill * box
    return tf.clip_by_value(x, 0.0, 255.0)
