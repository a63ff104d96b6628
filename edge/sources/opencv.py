"""OpenCV capture: webcams (``webcam:N``), network streams (rtsp/http URLs) and video files."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2

from ..config import CameraConfig
from ..redact import redact
from .base import MAX_CONSECUTIVE_BAD, FrameSource, SourceError, make_frame, plane_width

log = logging.getLogger(__name__)



class VideoFileSource(FrameSource):
    """Recorded: every frame in order; ends with None (or loops). The detector's plane is at most
    ``lores_width`` × ``lores_height`` (a camera's lores stream, for replay), or with ``lores_height`` None
    as many pixels as a 16:9 frame ``lores_width`` wide (``plane_width``)."""

    def __init__(self, path: str | Path, lores_width: int = 320, lores_height: int | None = 240, loop: bool = False,
                 max_pixels: int = 64_000_000):
        super().__init__()
        self.max_pixels = max_pixels
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file")
        self.lores = (lores_width, lores_height)
        self._plane = self.lores  # the detector plane's bounds, set from the first frame without a height
        self.loop = loop
        self.description = f"video {self.path}"
        self.cap = None
        # The outputs are made before the source starts (model and cascade fail first), and an annotated
        # clip must be written at the clip's own rate: read it now from a short-lived probe.
        probe = cv2.VideoCapture(str(self.path))
        self.fps = (probe.get(cv2.CAP_PROP_FPS) or 0.0) if probe.isOpened() else 0.0
        probe.release()

    def open(self):
        self.cap = cv2.VideoCapture(str(self.path))
        if not self.cap.isOpened():
            raise SourceError(f"{self.path}: not a video OpenCV can decode")
        # A phone's portrait clip stores landscape frames plus a 90-degree display matrix: without honouring it
        # every face lies on its side. Asked for explicitly because some OpenCV 4.11 builds turned it off
        # by default (opencv/opencv#26795).
        self.cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if w * h > self.max_pixels:
            self.cap.release()
            raise SourceError(f"{self.path}: {w}x{h} frames are over the {self.max_pixels / 1e6:g} MP limit "
                              "([camera] max_pixels)")
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = self.frame_count if self.frame_count > 0 and not self.loop else None
        self._read_any = False
        self._furthest = -1.0  # the furthest position delivered: frames only ever go forward
        self._warned_early = False

    def read(self):
        if self.cap is None:
            self.open()
        attempts = 0  # reads since the last new frame: bounded, whatever the decoder does
        while True:
            ok, img = self.cap.read()
            pos = self.cap.get(cv2.CAP_PROP_POS_FRAMES)  # after a read: the index of the next frame
            if ok and img is not None and img.size:
                if pos <= self._furthest:
                    # A frame already delivered: after a skip, the decoder went back to a key frame. A clip cut
                    # short (a copy that broke off) did this for ever, replaying its last good second.
                    attempts += 1
                    if attempts > MAX_CONSECUTIVE_BAD:
                        return self._ended_early()
                    continue
                self._furthest = pos
                if not self._read_any and self.lores[1] is None:
                    # Once per clip, from its first frame as turned upright: the header's size is the stored one.
                    self._plane = (plane_width(img.shape[1], img.shape[0], self.lores[0], 9 / 16), None)
                self._read_any = True
                return make_frame(self._next_seq(), img, *self._plane)
            # At the real end read() fails too: tell end from damage by the position the header promises.
            attempts += 1
            if self.frame_count and pos < self.frame_count - 1 and attempts <= MAX_CONSECUTIVE_BAD:
                self.bad_frames += 1
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, pos + 1)  # a damaged frame: skip it, count it
                continue
            if not self._read_any:
                raise SourceError(f"{self.path}: no decodable frames (corrupt or unsupported video)")
            if self.frame_count and pos < self.frame_count - 1:
                return self._ended_early()
            if self.loop:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._furthest = -1.0
                attempts = 0
                continue
            return None

    def _ended_early(self):
        """The clip stops decoding before the frame count its header gives: end it (looping, start again)."""
        if not self._warned_early:
            self._warned_early = True
            log.warning("%s: the clip stops decoding at frame %d of the %d its header gives (cut short or damaged); "
                        "%d damaged frames skipped", self.path, int(self._furthest), self.frame_count, self.bad_frames)
        if self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._furthest = -1.0
            return self.read()
        return None

    def stop(self):
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class LiveCaptureSource(FrameSource):
    """Webcam or network stream. A reader thread keeps only the newest frame, so a slow
    pipeline sees fresh frames (latency one frame) instead of an ever older backlog."""

    live = True

    def __init__(self, spec: str | int, cam: CameraConfig = CameraConfig(), interrupt: threading.Event | None = None,
                 stall_timeout: float = 10.0, open_timeout: float = 15.0):
        super().__init__()
        # The app's stop event: opening a silent stream blocks inside OpenCV for up to its own timeout, and
        # SIGTERM must end the run within a few seconds whatever the source is doing.
        self.interrupt = interrupt or threading.Event()
        self.open_timeout = open_timeout
        self.spec, self.fps = spec, cam.fps
        self.size, self.lores = (cam.width, cam.height), (cam.lores_width, cam.lores_height)
        self.stall_timeout = stall_timeout
        self.description = f"webcam {spec}" if isinstance(spec, int) else f"stream {redact(spec)}"
        self._cond = threading.Condition()
        self._latest = None
        self._latest_t = 0.0
        self._taken = 0
        self._count = 0
        self._error: str | None = None
        self._running = False
        self.cap = None
        self._thread = None

    def _open(self):
        if isinstance(self.spec, int):
            cap = cv2.VideoCapture(self.spec, cv2.CAP_V4L2)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            return cap
        ms = int(self.open_timeout * 1000)
        return cv2.VideoCapture(self.spec, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])

    def open(self):
        # Opened on a helper thread, watched in slices: a stop while a stream is still connecting returns at
        # once; the helper finishes (and releases what it opened) on its own.
        box: list = []
        opener = threading.Thread(target=lambda: box.append(self._open()), name="capture-open", daemon=True)
        opener.start()
        deadline = time.monotonic() + self.open_timeout + 2.0
        while opener.is_alive() and time.monotonic() < deadline:
            if self.interrupt.wait(0.2):
                raise SourceError(f"stopped while opening {self.description}")
            opener.join(0.0)
        if not box:
            raise SourceError(f"cannot open {self.description}: no answer within {self.open_timeout:g} s")
        cap = box[0]
        if not cap.isOpened():
            raise SourceError(f"cannot open {self.description}")
        self.cap = cap
        self._running = True
        self._thread = threading.Thread(target=self._reader, name="capture", daemon=True)
        self._thread.start()

    def _reader(self):
        bad = 0
        while self._running:
            ok, img = self.cap.read()
            t = time.monotonic()
            with self._cond:
                if ok and img is not None and img.size:
                    bad = 0
                    self._latest, self._latest_t = img, t
                    self._count += 1
                    self._cond.notify_all()
                    continue
                bad += 1
                self.bad_frames += 1
                if bad >= MAX_CONSECUTIVE_BAD:
                    self._error = f"{self.description}: stopped delivering frames"
                    self._cond.notify_all()
                    return
            time.sleep(0.01)

    def read(self):
        if self._thread is None:
            self.open()
        deadline = time.monotonic() + self.stall_timeout
        with self._cond:
            while True:
                ok = self._cond.wait_for(lambda: self._count > self._taken or self._error, timeout=0.2)
                if self._error:
                    raise SourceError(self._error)
                if ok:
                    break
                if self.interrupt.is_set():
                    return None
                if time.monotonic() >= deadline:
                    raise SourceError(f"{self.description}: no frame for {self.stall_timeout:.0f} s")
            self.dropped += self._count - self._taken - 1
            self._taken = self._count
            img, t = self._latest, self._latest_t
        return make_frame(self._next_seq(), img, *self.lores, t_capture=t)

    def stop(self):
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.cap is not None:
            self.cap.release()
            self.cap = None
