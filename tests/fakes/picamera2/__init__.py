"""A strict stand-in for picamera2, used only at the hardware boundary, by tests.

Every rule it enforces is taken from raspberrypi/picamera2 and cited by file and function, so that a
test passing here fails for the same reason on a Pi. Frames are the demo clip (the astronaut photo).

Threads as in the real library: ``start()`` runs an event loop on its own thread (picamera2.py
``start_preview`` -> previews/null_preview.py ``NullPreview.start``/``thread_func``), which renders each
frame into the preview and completes the pending capture jobs. An error while rendering kills that
thread, and every later ``capture_request()`` then waits for ever, or for ``wait`` seconds.

Environment knobs (the tests also run the CLI as a subprocess):
  FAKE_PICAMERA2_CAMERAS   number of Raspberry Pi cameras (default 1)
  FAKE_PICAMERA2_UVC       1: also list a USB (UVC) webcam, as libcamera does on a Pi
  FAKE_PICAMERA2_FRAMES    frames before the camera hangs (default: never)
  FAKE_PICAMERA2_LOG       append one JSON line per notable call to this file
  FAKE_PICAMERA2_DRM_BUSY  "card": the DRM preview fails in its constructor (no access to the card);
                           "1"/"plane": it fails on the event-loop thread at the first frame, as when
                           a desktop holds the display's planes
  FAKE_PICAMERA2_RANGE     "limited" to deliver 16..235 luma whatever the colour space
  FAKE_PICAMERA2_LOCKDIR   a folder for cross-process camera locks (one user per camera, as libcamera)
"""
from __future__ import annotations

import concurrent.futures
import enum
import fcntl
import importlib.util
import json
import os
import threading
import time

import cv2
import numpy as np

_USB_ID = "/base/axi/pcie@120000/rp1/usb@200000-1:1.0-046d:0825"


def _log(**kw):
    path = os.environ.get("FAKE_PICAMERA2_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(kw) + "\n")


class ColorSpace:
    def __init__(self, name: str, full: bool):
        self.name, self.full = name, full
        self.range = "Range.Full" if full else "Range.Limited"

    @staticmethod
    def Sycc():
        return ColorSpace("sYCC", True)

    @staticmethod
    def Rec709():
        return ColorSpace("Rec709", False)

    def __str__(self):
        return self.name


# --- previews -------------------------------------------------------------------------------------

class _NullPreview:
    """previews/null_preview.py NullPreview: any format, overlays ignored; x/y/width/height accepted
    and meaningless."""

    kind = "NULL"
    formats = None  # any

    def __init__(self, x=None, y=None, width=None, height=None, transform=None):
        self.window = (x, y, width, height)
        self.overlays = 0

    def start(self, picam2):
        picam2._attach(self)

    def render(self, picam2, fmt):
        pass

    def set_overlay(self, overlay):
        self.overlays += 1


class _DrmPreview(_NullPreview):
    """previews/drm_preview.py DrmPreview."""

    kind = "DRM"
    # DrmPreview.FMT_MAP; render_drm raises "Format X not supported by DRM preview" for any other.
    formats = ("RGB888", "BGR888", "XRGB8888", "XBGR8888", "YUV420", "YVU420", "MJPEG")

    # DrmPreview.__init__: x=0, y=0, width=640, height=480 unless given.
    def __init__(self, x=0, y=0, width=640, height=480, transform=None):
        # DrmManager.add opens the card and reserves connector and CRTC in the constructor, synchronously.
        if os.environ.get("FAKE_PICAMERA2_DRM_BUSY") == "card":
            raise RuntimeError("Failed to open card: Permission denied")
        super().__init__(x, y, width, height, transform)
        self.plane = None
        self.commits = 0

    def render(self, picam2, fmt):
        # render_drm, on the event-loop thread: the plane is reserved at the first frame.
        if self.plane is None:
            if fmt not in self.formats:
                raise RuntimeError(f"Format {fmt} not supported by DRM preview")
            if os.environ.get("FAKE_PICAMERA2_DRM_BUSY") in ("1", "plane"):
                raise RuntimeError("Failed to reserve DRM plane")
            self.plane = fmt
        self.commits += 1

    def set_overlay(self, overlay):
        # DrmPreview.set_overlay: refuses before the preview is started and configured; allocates a new
        # DumbFramebuffer, copies W*H*4 bytes and commits with render_drm, synchronously, every call.
        if self.plane is None:
            raise RuntimeError("Preview must be started before setting an overlay")
        h, w, _ = overlay.shape if overlay is not None else (0, 0, 0)
        self.overlays += 1
        self.commits += 1
        _log(call="overlay_commit", bytes=int(w * h * 4))


class _QtGlPreview(_NullPreview):
    """previews/qt_previews.py QtGlPreview with previews/q_gl_picamera2.py QGlPicamera2."""

    kind = "QTGL"
    # q_gl_picamera2.py Buffer.FMT_MAP: "24-bit formats are not supported".
    formats = ("XRGB8888", "XBGR8888", "YUYV", "UYVY", "YUV420", "YVU420")

    # QtPreviewBase.__init__: x=None, y=None, width=640, height=480.
    def __init__(self, x=None, y=None, width=640, height=480, transform=None):
        super().__init__(x, y, width, height, transform)

    def start(self, picam2):
        # QtPreviewBase.start starts a thread whose first line imports PyQt5, then waits on an event that
        # only that thread sets: without PyQt5 the thread dies and start() never returns. Bounded here so a
        # test that gets this wrong fails instead of hanging the suite.
        if importlib.util.find_spec("PyQt5") is None:
            _log(call="qt_thread_died")
            time.sleep(float(os.environ.get("FAKE_PICAMERA2_QT_HANG", "30")))
            raise AssertionError("fake picamera2: QtGlPreview.start() would wait for ever (no PyQt5)")
        super().start(picam2)

    def render(self, picam2, fmt):
        if fmt not in self.formats:
            raise RuntimeError(f"Format {fmt} not supported by QGlPicamera2 preview")


class Preview(enum.Enum):
    """picamera2/previews/__init__.py: the enum's values are the preview classes."""

    NULL = _NullPreview
    DRM = _DrmPreview
    QT = _QtGlPreview  # same rules that matter here: 24-bit formats refused
    QTGL = _QtGlPreview


# --- requests and jobs ----------------------------------------------------------------------------

def _frame(i: int, size) -> np.ndarray:
    from edge.sources.demo import astronaut_bgr, demo_frame

    global _PHOTO
    if _PHOTO is None:
        _PHOTO = astronaut_bgr()
    return demo_frame(_PHOTO, i % 120, 120, size)


_PHOTO = None


class Job:
    """job.py Job: get_result(timeout) is a concurrent.futures.Future's result(timeout), which raises
    TimeoutError when it runs out."""

    def __init__(self):
        self._future = concurrent.futures.Future()

    def get_result(self, timeout=None):
        return self._future.result(timeout=timeout)


class _Request:
    def __init__(self, cam, i):
        self.cam, self.i = cam, i
        self.released = False

    def make_array(self, name):
        # request.py CompletedRequest.release: the buffers go back to the camera and config/stream_map are
        # emptied, so make_array raises "Stream ... is not defined" on a released request.
        if self.released:
            raise RuntimeError(f"Stream {name!r} is not defined")
        self.cam.arrays_made[name] = self.cam.arrays_made.get(name, 0) + 1
        cfg = self.cam.config[name]
        if cfg is None:
            raise KeyError(name)
        w, h = cfg["size"]
        bgr = _frame(self.i, (self.cam.config["main"]["size"]))
        if name == "main":
            fmt = cfg["format"]
            # picamera2 docs (formats): RGB888 is [B, G, R]; XRGB8888 is [B, G, R, 255]; BGR888 is [R, G, B];
            # XBGR8888 is [R, G, B, 255].
            pixels = bgr if fmt in ("RGB888", "XRGB8888") else bgr[:, :, ::-1]
            if fmt.startswith("X"):
                pixels = np.dstack([pixels, np.full(bgr.shape[:2], 255, np.uint8)])
            return np.ascontiguousarray(pixels)
        y = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        if self.cam.limited:
            y = (16 + y.astype(np.float32) * 219 / 255).round().astype(np.uint8)
        stride = self.cam.stride
        buf = np.full((h * 3 // 2, stride), 77, np.uint8)  # padding and chroma hold junk on purpose
        buf[:h, :w] = y
        return buf

    def make_buffer(self, name):
        return self.make_array(name).reshape(-1)

    def get_metadata(self):
        return {"SensorTimestamp": time.monotonic_ns() - 5_000_000, "FrameDuration": 33333}

    def release(self):
        self.released = True


# --- the camera -----------------------------------------------------------------------------------

class Picamera2:
    _open: set = set()  # camera numbers acquired in this process
    _open_lock = threading.Lock()

    @staticmethod
    def global_camera_info():
        n = int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1"))
        cams = [{"Model": "imx708", "Location": 2, "Rotation": 0, "Id": f"/base/soc/i2c0mux/i2c@{i}/imx708@1a"}
                for i in range(n)]
        if os.environ.get("FAKE_PICAMERA2_UVC") == "1":
            cams.append({"Model": "HD Webcam C270", "Location": 2, "Id": _USB_ID})
        # picamera2.py global_camera_info: "send USB cams to the back of the class".
        cams = sorted(cams, key=lambda c: ("/usb" not in c["Id"], c["Id"]), reverse=True)
        return [c | {"Num": i} for i, c in enumerate(cams)]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        cams = self.global_camera_info()
        if camera_num >= len(cams):
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.info = cams[camera_num]
        self.camera_num = camera_num
        self._lockfile = None
        try:
            self._acquire()
        except RuntimeError as e:
            # picamera2.py __init__ wraps every failure of _open_camera (camera.acquire() included).
            raise RuntimeError("Camera __init__ sequence did not complete.") from e
        self.config = None
        self.camera_config = None
        self.started = False
        self.arrays_made: dict[str, int] = {}  # per stream, for tests: what the application copied
        self._preview = None
        self._event_loop_running = False
        self._jobs: list[Job] = []
        self._jobs_lock = threading.Lock()
        self._loop = None
        self._loop_stop = threading.Event()
        self._i = 0
        self.limit = int(os.environ.get("FAKE_PICAMERA2_FRAMES", "0") or 0)
        self.limited = False
        self.stride = 0
        _log(call="init", camera_num=camera_num)

    def _acquire(self):
        # libcamera allows one user per camera (Camera::acquire, EBUSY); across processes through a lock file.
        with Picamera2._open_lock:
            if self.camera_num in Picamera2._open:
                raise RuntimeError("Failed to acquire camera: Device or resource busy")
            lockdir = os.environ.get("FAKE_PICAMERA2_LOCKDIR")
            if lockdir:
                f = open(os.path.join(lockdir, f"camera{self.camera_num}.lock"), "w")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    raise RuntimeError("Failed to acquire camera: Device or resource busy") from None
                self._lockfile = f
            Picamera2._open.add(self.camera_num)

    @property
    def is_usb(self) -> bool:
        return "/usb" in self.info["Id"]

    def create_preview_configuration(self, main={}, lores=None, raw={}, transform=None, colour_space=None,
                                     buffer_count=4, controls={}, display="main", encode="main", queue=True):
        m = {"format": "XBGR8888", "size": (640, 480)} | dict(main)
        lo = None if lores is None else {"format": "YUV420", "size": m["size"]} | dict(lores)
        for name, s in (("main", m), ("lores", lo)):
            if s is not None and (type(s["size"]) is not tuple or len(s["size"]) != 2):
                raise RuntimeError(f"size in {name} stream should be (width, height)")
        return {"use_case": "preview", "colour_space": colour_space or ColorSpace.Sycc(), "buffer_count": buffer_count,
                "main": m, "lores": lo, "raw": raw, "controls": dict(controls), "display": display, "encode": encode}

    def configure(self, config):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if config["lores"] is not None and config["lores"]["format"] not in ("YUV420", "YVU420"):
            raise RuntimeError("lores stream must be YUV")  # configuration.py / picamera2.py check_stream_config
        if config["lores"] is not None and self.is_usb:
            # A UVC camera offers one stream (uvcvideo pipeline handler): a second one fails validation.
            raise RuntimeError("Configuration validation failed")
        self.config = config
        self.camera_config = config
        lw = config["lores"]["size"][0] if config["lores"] else 0
        self.stride = (lw + 127) // 128 * 128  # real strides are aligned; exercise the padding
        self.limited = os.environ.get("FAKE_PICAMERA2_RANGE") == "limited" or not config["colour_space"].full
        _log(call="configure", main=list(config["main"]["size"]), main_format=config["main"]["format"],
             lores=list(config["lores"]["size"]) if config["lores"] else None, controls=config["controls"])

    def stream_configuration(self, name="main"):
        s = self.config[name]
        bpp = 4 if s["format"].startswith("X") else 3
        stride = self.stride if name == "lores" else s["size"][0] * bpp
        return {"size": s["size"], "format": s["format"], "stride": stride}

    def camera_configuration(self):
        return self.config

    @property
    def sensor_modes(self):
        return [{"format": "SRGGB10_CSI2P", "size": (1536, 864), "fps": 120.13},
                {"format": "SRGGB10_CSI2P", "size": (2304, 1296), "fps": 56.03},
                {"format": "SRGGB10_CSI2P", "size": (4608, 2592), "fps": 14.35}]

    def _attach(self, preview):
        # picamera2.py attach_preview
        if self._preview:
            raise RuntimeError("Preview is already running")
        self._preview = preview
        self._event_loop_running = True

    def start_preview(self, preview=None, **kwargs):
        # picamera2.py start_preview: one event loop per camera; the enum's value is constructed with kwargs.
        if self._event_loop_running:
            raise RuntimeError("An event loop is already running")
        if preview is False or preview is None:
            preview = Preview.NULL
        obj = preview.value(**kwargs)
        obj.start(self)
        _log(call="start_preview", preview=obj.kind, window=list(obj.window))

    def start(self, config=None, show_preview=False):
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        # picamera2.py start: "By default we will create an event loop if there isn't one running already."
        if show_preview is not None and not self._event_loop_running:
            self.start_preview(show_preview)
        self.started = True
        self._loop_stop.clear()
        self._loop = threading.Thread(target=self._event_loop, name="fake-picamera2-loop", daemon=True)
        self._loop.start()
        _log(call="start")

    def _event_loop(self):
        fmt = self.config["main"]["format"]
        period = 1 / 60
        while not self._loop_stop.wait(period):
            if self.limit and self._i >= self.limit:
                _log(call="stalled", frames=self._i)
                return  # a hung camera: no more requests
            self._i += 1
            request = _Request(self, self._i)
            try:
                self._preview.render(self, fmt)
            except Exception as e:  # the real loop thread dies with the exception; nothing completes any more
                _log(call="event_loop_died", error=str(e))
                return
            with self._jobs_lock:
                job = self._jobs.pop(0) if self._jobs else None
            if job is not None:
                job._future.set_result(request)

    def capture_request(self, wait=None, signal_function=None, flush=None):
        # picamera2.py capture_request -> dispatch_functions: wait None/True blocks, False returns the job,
        # a number waits that many seconds and then raises (job.py get_result -> Future.result(timeout)).
        if not self.started:
            raise RuntimeError("Camera must be started")
        job = Job()
        with self._jobs_lock:
            self._jobs.append(job)
        if wait is False:
            return job
        return job.get_result(timeout=None if wait in (None, True) else wait)

    def wait(self, job, timeout=None):
        return job.get_result(timeout=timeout)

    def capture_array(self, name="main", wait=None):
        r = self.capture_request(wait=wait)
        try:
            return r.make_array(name)
        finally:
            r.release()

    def set_overlay(self, overlay):
        # picamera2.py set_overlay
        if self._preview is None:
            raise RuntimeError("No preview specified.")
        if overlay is not None:
            if overlay.ndim != 3 or overlay.shape[2] != 4:
                raise RuntimeError("Overlay must be a 4-channel image")
        self._preview.set_overlay(overlay)
        nz = int((overlay[..., 3] > 0).sum()) if overlay is not None else 0
        _log(call="set_overlay", shape=list(overlay.shape) if overlay is not None else None, opaque=nz)

    def stop(self):
        self._loop_stop.set()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join()
        self.started = False
        _log(call="stop")

    def stop_preview(self):
        if self._preview is None:
            raise RuntimeError("No preview specified.")
        self._preview = None
        self._event_loop_running = False

    def close(self):
        self.stop()
        self._preview = None
        self._event_loop_running = False
        with Picamera2._open_lock:
            Picamera2._open.discard(self.camera_num)
            if self._lockfile is not None:
                self._lockfile.close()
                self._lockfile = None
        _log(call="close")
