"""The frame-source interface every camera, file and demo source implements."""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field

import cv2
import numpy as np


class SourceError(RuntimeError):
    """The source cannot be opened or died while running."""


# A decoder or camera that fails this many frames in a row is treated as dead, not as glitches.
MAX_CONSECUTIVE_BAD = 25


@dataclass
class Frame:
    seq: int
    t_capture: float  # time.monotonic() at capture; latency is measured against it
    wall_time: float  # time.time() at capture, for the event's ISO timestamp
    gray: np.ndarray  # the detector's plane, uint8 [h, w]
    main: np.ndarray | None  # BGR [H, W, 3] when the source has it cheaply or it was asked for
    main_size: tuple[int, int]  # (W, H) of the main frame: boxes are reported in these coordinates
    name: str | None = None  # file name, for folder-of-images sources
    meta: dict = field(default_factory=dict)

    @property
    def scale(self) -> tuple[float, float]:
        """Multipliers from gray-plane to main-frame coordinates."""
        return self.main_size[0] / self.gray.shape[1], self.main_size[1] / self.gray.shape[0]


class FrameSource(abc.ABC):
    """``read()`` returns the next Frame, or None when a recorded source has ended.

    Live sources return the newest frame and drop older ones; recorded sources return every
    frame in order. A dead device raises SourceError. ``bad_frames`` counts frames that were
    skipped because they could not be decoded.
    """

    live: bool = False
    #: Frames are unrelated pictures (a folder of photos): no tracking or smoothing across them.
    independent: bool = False
    description: str = "source"
    #: Frames a recorded source will give (for progress lines), or None when unknown or endless.
    total: int | None = None
    #: A live source that is a clip played as a camera: its end is normal, where a camera's or stream's is a failure.
    replayed: bool = False
    #: Set by the pipeline (on the thread that reads) while a tracked face is small on the detection plane: a
    #: source that copies its main image only on request (the Pi camera's, when no output draws on it) copies it
    #: for the next frames, so the face is cut from there, twice as sharp. Sources that always have it ignore it.
    main_wanted: bool = False

    def __init__(self):
        self.bad_frames = 0
        self.dropped = 0  # live sources: frames that came while the pipeline was busy, replaced by newer ones
        self._seq = 0

    # The lifecycle: open -> (attach_preview) -> start -> read ... -> stop. ``open`` takes the device or file
    # (where "busy", "missing" and "cannot decode" are found); a preview, when the source has one, is attached
    # between open and start, as picamera2 requires; ``start`` begins the frames. Recorded sources need no
    # start, and ``read`` opens a source nobody opened.

    def open(self) -> None:
        pass

    #: Whether attach_preview works (only the Pi camera shows its frames on the attached display).
    has_preview: bool = False

    def attach_preview(self, preview, **window) -> None:
        raise SourceError(f"{self.description} has no preview")

    def set_overlay(self, rgba) -> None:
        """Boxes and labels over the preview (an RGBA image the size of the main stream)."""
        raise SourceError(f"{self.description} has no preview")

    def start(self) -> None:
        pass

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    def stop(self) -> None:
        pass

    def __enter__(self):
        self.open()
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq


def plane_width(w: int, h: int, max_width: int, aspect: float) -> int:
    """The width a file's frame is searched at: as many pixels as a plane ``max_width`` wide of the usual shape
    (``aspect`` = height / width: 3/4 for photos, 9/16 for video), never enlarged. A scan's cost follows the
    pixel count, and a phone's portrait and landscape pictures get the same scale; a panorama squeezed to
    ``max_width`` would shrink its faces under the detector's smallest window."""
    s = min(1.0, (max_width * max_width * aspect / (w * h)) ** 0.5)
    return max(1, round(w * s))


def gray_plane(bgr: np.ndarray, max_w: int, max_h: int | None = None) -> np.ndarray:
    """Downscale first, then convert: one cheap cvtColor on the small copy."""
    h, w = bgr.shape[:2]
    s = min(1.0, max_w / w, (max_h / h) if max_h else 1.0)
    small = bgr if s >= 1.0 else cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))),
                                            interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        return small
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


def make_frame(seq: int, bgr: np.ndarray, max_w: int, max_h: int | None = None, name: str | None = None,
               t_capture: float | None = None) -> Frame:
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    elif bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    return Frame(seq=seq, t_capture=time.monotonic() if t_capture is None else t_capture, wall_time=time.time(),
                 gray=gray_plane(bgr, max_w, max_h), main=bgr, main_size=(bgr.shape[1], bgr.shape[0]), name=name)
