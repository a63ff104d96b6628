"""A video file or the demo clip played as a camera delivers frames (``[camera] replay = "live"``, ``--live``):
paced at the clip's rate on a thread of its own, the newest frame only when the pipeline falls behind, the
others dropped and counted. What runs on it is exactly the live path, so it is how the camera path is
measured and tested without a camera."""
from __future__ import annotations

import threading
import time

from .base import FrameSource, SourceError


class LiveReplaySource(FrameSource):
    live = True
    replayed = True

    def __init__(self, inner: FrameSource, fps: float, interrupt: threading.Event | None = None):
        super().__init__()
        self.inner = inner
        self.fps = fps if fps and fps > 0 else 30.0
        self.description = f"{inner.description}, replayed live at {self.fps:g} fps"
        self.interrupt = interrupt or threading.Event()
        self.cpu_s = 0.0  # CPU time spent decoding, which a camera's ISP would do: the bench leaves it out
        self._cond = threading.Condition()
        self._latest = None
        self._made = self._taken = 0
        self._ended = False
        self._error: str | None = None
        self._running = False
        self._thread: threading.Thread | None = None

    def open(self):
        self.inner.open()

    def start(self):
        if self._thread is not None:
            return
        self._running = True
        # Decoding happens on this thread, as a Pi camera's frames come out of its ISP: the frame work the
        # pipeline is measured by starts from a delivered frame.
        self._thread = threading.Thread(target=self._pump, name="replay", daemon=True)
        self._thread.start()

    def _pump(self):
        period = 1.0 / self.fps
        next_t = time.monotonic()
        c0 = time.thread_time()
        try:
            while self._running:
                frame = self.inner.read()
                self.cpu_s = time.thread_time() - c0
                if frame is None:
                    break
                wait = next_t - time.monotonic()
                if wait > 0 and self.interrupt.wait(wait):
                    break
                frame.t_capture, frame.wall_time = time.monotonic(), time.time()
                with self._cond:
                    self._latest = frame
                    self._made += 1
                    self._cond.notify_all()
                # A decoder that fell behind does not catch up in a burst: a camera never delivers early.
                next_t = max(next_t + period, time.monotonic() - period)
        except SourceError as e:
            with self._cond:
                self._error = str(e)
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def read(self):
        if self._thread is None:
            self.open()
            self.start()
        with self._cond:
            while not self._cond.wait_for(lambda: self._made > self._taken or self._ended, timeout=0.2):
                if self.interrupt.is_set():
                    return None
            if self._made == self._taken:  # ended, and every delivered frame was taken or dropped
                if self._error:
                    raise SourceError(self._error)
                return None
            self.dropped += self._made - self._taken - 1
            self._taken = self._made
            frame = self._latest
        self.bad_frames = self.inner.bad_frames
        return frame

    def stop(self):
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.inner.stop()
