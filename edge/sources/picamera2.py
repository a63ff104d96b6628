"""The Raspberry Pi camera through picamera2 (imported here only, and only when used).

One configuration, two streams: ``main`` (BGR, what the preview shows and what annotated
output is drawn on) and ``lores`` (YUV420), whose Y plane is the detector's grayscale
for free: no colour conversion, no resize.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .base import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_BAD = 25


def available() -> bool:
    """True when picamera2 imports and sees at least one camera."""
    try:
        from picamera2 import Picamera2
    except Exception:  # ImportError off a Pi; libcamera errors on a broken install
        return False
    try:
        return len(Picamera2.global_camera_info()) > 0
    except Exception:
        return False


def limited_to_full_lut() -> np.ndarray:
    """Maps limited-range luma 16..235 onto 0..255, so faces look like the full-range
    photos the model was trained on."""
    x = np.arange(256, dtype=np.float32)
    return np.clip(np.round((x - 16.0) * 255.0 / 219.0), 0, 255).astype(np.uint8)


def is_full_range(colour_space) -> bool:
    rng = getattr(colour_space, "range", None)
    if rng is not None:
        return "full" in str(rng).lower()
    # libcamera's ColorSpace prints e.g. "sYCC" (full range) or "Rec709" / "SMPTE170M" (limited).
    return "sycc" in str(colour_space).lower()


class Picamera2Source(FrameSource):
    live = True

    def __init__(self, width=640, height=480, lores_width=320, lores_height=240, fps=30.0, luma_range="auto",
                 want_main: bool = False, camera_num: int = 0):
        super().__init__()
        self.size, self.lores = (width, height), (lores_width, lores_height)
        self.fps, self.luma_range, self.want_main, self.camera_num = fps, luma_range, want_main, camera_num
        self.description = f"Pi camera {camera_num} (main {width}x{height}, lores {lores_width}x{lores_height})"
        self.picam2 = None
        self._lut = None

    def start(self):
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise SourceError(f"picamera2 is not available ({e}); on Raspberry Pi OS: apt install python3-picamera2 "
                              "and create the venv with --system-site-packages") from None
        try:
            self.picam2 = Picamera2(self.camera_num)
            config = self.picam2.create_preview_configuration(
                main={"size": self.size, "format": "RGB888"},  # picamera2's RGB888 is B,G,R in memory: OpenCV order
                lores={"size": self.lores, "format": "YUV420"},
                controls={"FrameRate": float(self.fps)},
                buffer_count=4,
            )
            self.picam2.configure(config)
        except Exception as e:
            self._close()
            raise SourceError(f"cannot configure the Pi camera: {e}") from None
        lores_cfg = self.picam2.stream_configuration("lores")
        self.lores = tuple(lores_cfg["size"])  # libcamera may align the requested size
        self.stride = int(lores_cfg.get("stride") or self.lores[0])
        self.size = tuple(self.picam2.stream_configuration("main")["size"])
        full = True
        if self.luma_range == "limited":
            full = False
        elif self.luma_range == "auto":
            cs = self.picam2.camera_configuration().get("colour_space")
            full = cs is None or is_full_range(cs)
        self._lut = None if full else limited_to_full_lut()
        log.info("Pi camera: main %dx%d, lores %dx%d (stride %d), luma %s range", *self.size, *self.lores,
                 self.stride, "full" if full else "limited")

    def attach_preview(self, preview) -> None:
        """Called by the display before start: picamera2 wants start_preview before start."""
        self.picam2.start_preview(preview)

    def run(self):
        try:
            self.picam2.start()
        except Exception as e:
            raise SourceError(f"cannot start the Pi camera: {e}") from None

    def read(self):
        if self.picam2 is None:
            self.start()
        if not self._started:
            self.run()
            self._started = True
        for _ in range(MAX_CONSECUTIVE_BAD):
            try:
                request = self.picam2.capture_request()
            except Exception as e:
                raise SourceError(f"Pi camera stopped: {e}") from None
            try:
                return self._frame(request)
            except Exception:
                self.bad_frames += 1
                log.warning("bad frame from the Pi camera, skipped", exc_info=log.isEnabledFor(logging.DEBUG))
            finally:
                request.release()
        raise SourceError(f"Pi camera: {MAX_CONSECUTIVE_BAD} bad frames in a row")

    def _frame(self, request) -> Frame:
        t = time.monotonic()
        meta = request.get_metadata() or {}
        ts = meta.get("SensorTimestamp")
        if ts:
            # libcamera stamps frames on CLOCK_MONOTONIC (ns); use it when it is plausible.
            st = ts / 1e9
            if 0 <= t - st < 2.0:
                t = st
        yuv = request.make_array("lores")
        w, h = self.lores
        # The YUV420 buffer is (h*3/2) rows of `stride` bytes; Y is the first h rows, padded on the right.
        gray = np.ascontiguousarray(yuv[:h, :w])
        if self._lut is not None:
            gray = self._lut[gray]
        main = request.make_array("main")[:, :, :3] if self.want_main else None
        return Frame(seq=self._next_seq(), t_capture=t, wall_time=time.time(), gray=gray, main=main,
                     main_size=self.size, meta={"sensor": meta})

    _started = False

    def _close(self):
        if self.picam2 is not None:
            try:
                self.picam2.close()
            except Exception:
                pass
            self.picam2 = None

    def stop(self):
        if self.picam2 is not None:
            try:
                self.picam2.stop()
            except Exception:
                pass
        self._close()
