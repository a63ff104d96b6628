"""The Raspberry Pi camera through picamera2 (imported here only, and only when used).

One configuration, two streams: ``main`` (BGR, what the preview shows and what annotated
output is drawn on) and ``lores`` (YUV420), whose Y plane is the detector's grayscale
for free: no colour conversion, no resize.
"""
from __future__ import annotations

import errno
import logging
import threading
import time

import numpy as np

from ..config import CameraConfig
from .base import MAX_CONSECUTIVE_BAD, Frame, FrameSource, SourceError

log = logging.getLogger(__name__)

# What to do when a desktop holds the screen: the service (a system user) cannot join the desktop's session.
DESKTOP_HINT = ("a desktop holding the screen? boot to the console (sudo raspi-config nonint do_boot_behaviour B1) "
                "for the preview, or use [display] http; preview = \"none\" skips it")

# The main stream's format: 32-bit, because picamera2's QtGL preview refuses 24-bit formats
# (previews/q_gl_picamera2.py, Buffer.FMT_MAP) and its DRM preview takes both. XRGB8888 is [B, G, R, 255] in
# memory, so its first three channels are OpenCV's BGR without a conversion.
MAIN_FORMAT = "XRGB8888"
# How often a blocked capture looks at the stop event: SIGTERM is seen within this, whatever the camera does.
POLL_S = 0.2
# How long stopping and closing the camera may take before we give up on it (the process exit frees it).
STOP_TIMEOUT_S = 3.0


def choose_sensor_mode(modes: list[dict], size: tuple[int, int], fps: float) -> dict | None:
    """The sensor mode for a room: the whole field of view, the smallest such mode that keeps up with
    ``fps`` and is at least the main picture's size (binned, so it is also the least work for the ISP).

    Left to picamera2, the mode is scored against the main stream's size: a 640x480 main stream runs
    imx219's 640x480 mode and imx477's 1332x990 one, both crops of the middle of the sensor.
    ``modes`` are picamera2's ``sensor_modes``; a webcam has no such modes (None)."""
    modes = [m for m in modes if "size" in m and m.get("crop_limits")]
    if not modes:
        return None

    def area(r):
        return r[0] * r[1]

    widest = max(area(m["crop_limits"][2:]) for m in modes)
    full = [m for m in modes if area(m["crop_limits"][2:]) == widest]
    big = [m for m in full if m["size"][0] >= size[0] and m["size"][1] >= size[1]] or full
    # Fast enough first, then the smallest; among equals the deeper bit depth.
    return min(big, key=lambda m: (m.get("fps", 0) < fps - 0.5, area(m["size"]), -m.get("bit_depth", 0)))


def field_of_view(mode: dict | None, array: tuple[int, int] | None) -> str:
    """How much of the sensor a mode sees, in words for the self-test."""
    if not mode or not array:
        return "field of view unknown"
    x, y, w, h = mode["crop_limits"]
    if (w, h) == tuple(array):
        return "full field of view"
    return f"a {w}x{h} crop of the {array[0]}x{array[1]} sensor ({100 * w / array[0]:.0f} % of its width)"


def is_pi_camera(info: dict) -> bool:
    """A camera on the Pi's CSI connector, not a USB (UVC) webcam: libcamera lists both, and picamera2's
    ``global_camera_info`` marks USB ones by "/usb" in their Id (and sorts them last)."""
    return "/usb" not in str(info.get("Id", ""))


def pi_cameras() -> list[dict]:
    """The Raspberry Pi cameras picamera2 sees; empty when picamera2 is missing or broken."""
    try:
        from picamera2 import Picamera2
    except Exception:  # ImportError off a Pi; libcamera errors on a broken install
        return []
    try:
        return [c for c in Picamera2.global_camera_info() if is_pi_camera(c)]
    except Exception:
        return []


def available() -> bool:
    """True when picamera2 imports and sees at least one Raspberry Pi camera (USB webcams go the webcam way)."""
    return bool(pi_cameras())


def _is_busy(e: BaseException) -> bool:
    """picamera2 wraps libcamera's "Failed to acquire camera: Device or resource busy" in a generic
    "Camera __init__ sequence did not complete." (picamera2.py __init__): look down the chain."""
    while e is not None:
        text = str(e).lower()
        if "busy" in text or getattr(e, "errno", None) == errno.EBUSY:
            return True
        e = e.__cause__ or e.__context__
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
    has_preview = True

    def __init__(self, cam: CameraConfig = CameraConfig(), want_main: bool = False, camera_num: int = 0,
                 interrupt: threading.Event | None = None):
        super().__init__()
        width, height, lores_width, lores_height = cam.width, cam.height, cam.lores_width, cam.lores_height
        fps, luma_range, self.capture_timeout = cam.fps, cam.luma_range, cam.capture_timeout
        # Set by the app to its stop event: a capture waiting for a frame gives up when it is set.
        self.interrupt = interrupt or threading.Event()
        self.preview = None  # (kind, kwargs) attached before start, or None
        self.preview_failed: str | None = None
        self.size, self.lores = (width, height), (lores_width, lores_height)
        self.fps, self.luma_range, self.want_main, self.camera_num = fps, luma_range, want_main, camera_num
        self.description = f"Pi camera {camera_num} (main {width}x{height}, lores {lores_width}x{lores_height})"
        self.picam2 = None
        self._lut = None
        self.info: dict = {}  # picamera2's global_camera_info entry for this camera
        self.sensor_mode: dict | None = None
        self.sensor_modes: list[dict] = []

    def open(self):
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise SourceError(f"picamera2 is not available ({e}); on Raspberry Pi OS: apt install python3-picamera2 "
                              "and create the venv with --system-site-packages") from None
        # picamera2 numbers cameras in the order of its own sorted list (Pi cameras first), the same list
        # global_camera_info returns; libcamera's own index ("Num") is another order.
        try:
            cameras = Picamera2.global_camera_info()
        except Exception as e:
            raise SourceError(f"libcamera cannot list cameras: {e}") from None
        if not 0 <= self.camera_num < len(cameras):
            found = ", ".join(f"{i} {c.get('Model', '?')}" for i, c in enumerate(cameras)) or "none"
            raise SourceError(f"no Pi camera {self.camera_num} ({len(cameras)} found: {found}); "
                              "check the ribbon cable and `rpicam-hello --list-cameras`")
        self.info = dict(cameras[self.camera_num])
        try:
            self.picam2 = Picamera2(self.camera_num)
        except Exception as e:
            if _is_busy(e):
                raise SourceError(f"Pi camera {self.camera_num} is in use by another process (libcamera allows one "
                                  "user per camera): is the emotion-edge service running? "
                                  "`sudo systemctl stop emotion-edge` first") from None
            raise SourceError(f"cannot open Pi camera {self.camera_num}: {e}") from None
        try:
            # Reading the modes configures the camera once per mode (picamera2.py sensor_modes) and leaves
            # the last of those in place: read them first, then configure ours.
            self.sensor_modes = list(self.picam2.sensor_modes)
        except Exception as e:
            self._close()
            raise SourceError(f"cannot read the Pi camera's sensor modes: {e}") from None
        self.sensor_mode = choose_sensor_mode(self.sensor_modes, self.size, self.fps)
        self._configure()

    def _configure(self) -> None:
        mode = self.sensor_mode
        sensor = {"output_size": tuple(mode["size"]), "bit_depth": mode["bit_depth"]} if mode else {}
        try:
            config = self.picam2.create_preview_configuration(
                main={"size": self.size, "format": MAIN_FORMAT},
                lores={"size": self.lores, "format": "YUV420"},
                controls={"FrameRate": float(self.fps)},
                buffer_count=4,
                sensor=sensor,
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
        array = self.picam2.camera_properties.get("PixelArraySize")
        self.field = field_of_view(mode, array)
        log.info("Pi camera %s: sensor mode %s, %s; main %dx%d, lores %dx%d (stride %d), luma %s range",
                 self.info.get("Model", "?"), "x".join(map(str, mode["size"])) if mode else "(camera's own)",
                 self.field, *self.size, *self.lores, self.stride, "full" if full else "limited")

    def attach_preview(self, preview, **window) -> None:
        """Between open and start: picamera2 wants start_preview before start. Errors the preview raises
        here (DRM card not accessible, ...) reach the caller; those it raises later on its own thread are
        caught by the first capture's timeout."""
        if self._started:
            raise SourceError("the preview must be attached before the camera starts")
        self.picam2.start_preview(preview, **window)
        self.preview = (preview, window)

    def set_overlay(self, rgba) -> None:
        self.picam2.set_overlay(rgba)

    def start(self):
        if self._started:
            return
        if self.picam2 is None:
            self.open()
        try:
            self.picam2.start()
        except Exception as e:
            raise SourceError(f"cannot start the Pi camera: {e}") from None
        self._started = True

    def _capture(self, timeout: float):
        """The next request, or None when the stop event was set; TimeoutError after ``timeout`` s.

        One job is queued and waited on in slices (picamera2.py capture_request(wait=False) and
        wait(job, timeout)), so a stop is seen within POLL_S and no second request is queued behind a
        late one."""
        job = self.picam2.capture_request(wait=False)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.picam2.wait(job, timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                if self.interrupt.is_set():
                    return None
                if time.monotonic() >= deadline:
                    raise

    def _without_preview(self) -> None:
        """The preview died on picamera2's thread (DRM planes taken by a desktop, a format it refuses):
        its event loop is gone with it, so the camera is opened again with the invisible null preview."""
        kind = getattr(self.preview[0], "name", str(self.preview[0]))
        self.preview_failed = (f"no frame within {self.capture_timeout:g} s after the {kind} preview started: it "
                               f"failed on its own thread ({DESKTOP_HINT}); running without a preview")
        log.error("%s", self.preview_failed)
        self.preview = None
        self._release()
        self.open()
        self.start()

    def read(self):
        if not self._started:
            self.start()
        for _ in range(MAX_CONSECUTIVE_BAD):
            try:
                request = self._capture(self.capture_timeout)
                self._frames_seen = True
            except TimeoutError:
                if self.preview is not None and not self._frames_seen:
                    self._without_preview()
                    continue
                text = (f"Pi camera: no frame for {self.capture_timeout:g} s (camera hung or disconnected? check the "
                        "ribbon cable and `rpicam-hello --list-cameras`)")
                # Said now: what follows (stopping a hung camera) is where a process used to hang.
                log.error("%s", text)
                self._release()
                raise SourceError(text) from None
            except Exception as e:
                raise SourceError(f"Pi camera stopped: {e}") from None
            if request is None:
                return None
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
        # Without an output that draws on it, the main image (a 1.2 MB copy) is made only while the pipeline
        # wants it for a small face.
        main = request.make_array("main")[:, :, :3] if self.want_main or self.main_wanted else None
        return Frame(seq=self._next_seq(), t_capture=t, wall_time=time.time(), gray=gray, main=main,
                     main_size=self.size, meta={"sensor": meta})

    _started = False
    _frames_seen = False

    def _close(self):
        if self.picam2 is not None:
            try:
                self.picam2.close()
            except Exception:
                pass
            self.picam2 = None

    def _release(self) -> None:
        """Stop and close the camera, bounded. Not through Picamera2.stop(): while a preview's event loop
        runs, stop() queues a job for it and waits without a timeout, behind any capture job that timed
        out (jobs run strictly in order), and for ever when that loop died with the preview.
        Picamera2.close() stops the preview first (joining its thread, dead or alive) and then the camera
        directly; cancel_all_and_flush() before it ends the abandoned capture job. Bounded all the same:
        what still blocks is left to the process exit."""
        cam, self.picam2, self._started = self.picam2, None, False
        if cam is None:
            return

        def close():
            _quiet(cam.cancel_all_and_flush)
            _quiet(cam.close)

        closer = threading.Thread(target=close, name="picamera2-close", daemon=True)
        closer.start()
        closer.join(STOP_TIMEOUT_S)
        if closer.is_alive():
            log.warning("Pi camera did not stop within %g s; it is released when the process ends", STOP_TIMEOUT_S)

    def stop(self):
        self._release()


def _quiet(fn) -> None:
    try:
        fn()
    except Exception:
        pass
