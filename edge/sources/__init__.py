"""Frame sources and the one factory that turns a ``--source`` spec into one.

Specs: ``auto`` | ``picamera2[:N]`` | ``webcam[:N]`` | ``demo[:FRAMES]`` | ``rtsp://…`` (any URL OpenCV
opens) | a video file | an image file | a folder of images.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..config import CameraConfig
from .base import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)

__all__ = ["Frame", "FrameSource", "SourceError", "open_source", "describe_auto"]

URL_RE = re.compile(r"^(rtsps?|rtmp|https?|udp|tcp|srt)://", re.I)


V4L_SYSFS = "/sys/class/video4linux"


def uvc_index(sysfs: str = V4L_SYSFS) -> int | None:
    """The first USB (UVC) video device's number. On a Pi, /dev/video0.. are mostly the camera's own
    unicam/ISP/codec nodes, which OpenCV cannot read: a webcam is recognised by its USB parent device.
    A UVC camera makes two nodes (capture, metadata); the lower number is the capture one."""
    found = []
    try:
        names = os.listdir(sysfs)
    except OSError:
        return None
    for name in names:
        m = re.fullmatch(r"video(\d+)", name)
        if m and "/usb" in os.path.realpath(os.path.join(sysfs, name, "device")):
            found.append(int(m.group(1)))
    return min(found) if found else None


def _webcam_present(index: int = 0) -> bool:
    return os.path.exists(f"/dev/video{index}") and _webcam_delivers(index)


def _webcam_delivers(index: int) -> bool:
    import cv2

    cap = cv2.VideoCapture(index, cv2.CAP_V4L2)
    try:
        return cap.isOpened() and cap.read()[0]
    finally:
        cap.release()


def describe_auto() -> str:
    """Which source ``auto`` picks on this machine: picamera2, webcam:0 or demo."""
    from . import picamera2 as pc

    if pc.available():
        return "picamera2"
    usb = uvc_index()
    if usb is not None and _webcam_present(usb):
        return f"webcam:{usb}"
    if usb is None and _webcam_present(0):
        return "webcam:0"
    return "demo"


class SourceArgumentError(SourceError, ValueError):
    """A source spec that cannot be right whatever the machine: a bad argument (exit status 2)."""


def _index(spec: str, default: int = 0, limit: int = 100_000) -> int:
    _, _, n = spec.partition(":")
    if not n:
        return default
    if not (n.isascii() and n.isdigit()) or int(n) > limit:
        raise SourceArgumentError(f"--source {spec!r}: expected a number from 0 to {limit} after ':'")
    return int(n)


def open_source(spec: str, cam: CameraConfig, want_main: bool = False, interrupt=None) -> FrameSource:
    spec = (spec or "auto").strip()
    low = spec.lower()
    if low == "auto":
        spec = low = describe_auto()
        if low == "demo" and os.environ.get("INVOCATION_ID"):
            # A service playing a demo clip would look healthy while watching nothing.
            raise SourceError("source auto: no Pi camera or webcam found (check the ribbon cable, "
                              "`rpicam-hello --list-cameras`, or set [camera] source)")
        log.info("source auto: %s", spec)
    if low.startswith("picamera2"):
        from .picamera2 import Picamera2Source

        return Picamera2Source(cam, want_main=want_main, camera_num=_index(low, limit=63), interrupt=interrupt)
    if low.startswith("webcam"):
        from .opencv import LiveCaptureSource

        return LiveCaptureSource(_index(low, limit=255), cam, interrupt=interrupt)
    if low == "demo" or low.startswith("demo:"):
        from .demo import DemoSource

        demo = DemoSource(_index(low, 150) or 150, cam)
        return _replayed(demo, cam, interrupt)
    if URL_RE.match(spec):
        from .opencv import LiveCaptureSource

        return LiveCaptureSource(spec, cam, interrupt=interrupt)
    p = Path(spec).expanduser()
    if not p.exists():
        raise SourceError(f"--source {spec!r}: no such file or folder (and not auto, picamera2, webcam:N, demo "
                          "or a stream URL)")
    from ..media import CONVERT_HINT, is_image_path, is_unreadable_image
    from .images import ImageSource

    if p.is_file() and is_unreadable_image(p):
        raise SourceError(f"{p}: {CONVERT_HINT}")
    if p.is_dir() or is_image_path(p):
        return ImageSource(p, cam.still_max_width, cam.max_pixels)
    from .opencv import VideoFileSource

    if cam.replay == "live":  # the detector's plane a camera's lores stream would give
        video = VideoFileSource(p, cam.lores_width, cam.lores_height, loop=cam.loop, max_pixels=cam.max_pixels)
        return _replayed(video, cam, interrupt)
    return VideoFileSource(p, max(cam.lores_width, cam.video_max_width), None, loop=cam.loop, max_pixels=cam.max_pixels)


def _replayed(src: FrameSource, cam: CameraConfig, interrupt) -> FrameSource:
    if cam.replay != "live":
        return src
    from .replay import LiveReplaySource

    return LiveReplaySource(src, getattr(src, "fps", 0.0) or cam.fps, interrupt=interrupt)
