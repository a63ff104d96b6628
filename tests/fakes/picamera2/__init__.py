"""A small stand-in for picamera2, shaped like its real API (checked against
raspberrypi/picamera2's picamera2.py: create_preview_configuration, configure, start,
start_preview(Preview.X) before start, set_overlay(RGBA), capture_request() -> request with
make_array/make_buffer/get_metadata/release, stream_configuration, camera_configuration,
global_camera_info). It is used only at the hardware boundary, by tests.

Environment knobs (the tests run the CLI as a subprocess):
  FAKE_PICAMERA2_CAMERAS   number of cameras (default 1)
  FAKE_PICAMERA2_FRAMES    frames before the camera stalls (default: unlimited)
  FAKE_PICAMERA2_LOG       append one JSON line per notable call to this file
  FAKE_PICAMERA2_DRM_BUSY  make Preview.DRM fail as when a desktop holds the display
  FAKE_PICAMERA2_RANGE     "limited" to deliver 16..235 luma whatever the colour space
"""
from __future__ import annotations

import enum
import json
import os
import threading
import time

import cv2
import numpy as np


class Preview(enum.Enum):
    NULL = 0
    DRM = 1
    QT = 2
    QTGL = 3


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


def _log(**kw):
    path = os.environ.get("FAKE_PICAMERA2_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(kw) + "\n")


def _frame(i: int, size) -> np.ndarray:
    from edge.sources.demo import astronaut_bgr, demo_frame

    global _PHOTO
    if _PHOTO is None:
        _PHOTO = astronaut_bgr()
    return demo_frame(_PHOTO, i % 120, 120, size)


_PHOTO = None


class _Request:
    def __init__(self, cam, i):
        self.cam, self.i = cam, i
        self.released = False

    def make_array(self, name):
        cfg = self.cam.config[name]
        w, h = cfg["size"]
        bgr = _frame(self.i, (self.cam.config["main"]["size"]))
        if name == "main":
            return bgr if cfg["format"] in ("RGB888",) else np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
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


class Picamera2:
    @staticmethod
    def global_camera_info():
        n = int(os.environ.get("FAKE_PICAMERA2_CAMERAS", "1"))
        return [{"Model": "imx708", "Id": f"/base/fake{i}", "Location": 2, "Rotation": 0} for i in range(n)]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None):
        if camera_num >= len(self.global_camera_info()):
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.camera_num = camera_num
        self.config = None
        self.started = False
        self._preview = None
        self.overlay = None
        self._i = 0
        self.limit = int(os.environ.get("FAKE_PICAMERA2_FRAMES", "0") or 0)
        self.limited = False
        self.stride = 0
        self._stall = threading.Event()
        _log(call="init", camera_num=camera_num)

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
        if config["lores"] is not None and config["lores"]["format"] != "YUV420":
            raise RuntimeError("lores stream must be YUV")
        self.config = config
        lw = config["lores"]["size"][0] if config["lores"] else 0
        self.stride = (lw + 127) // 128 * 128  # real strides are aligned; exercise the padding
        self.limited = os.environ.get("FAKE_PICAMERA2_RANGE") == "limited" or not config["colour_space"].full
        _log(call="configure", main=list(config["main"]["size"]), lores=list(config["lores"]["size"]),
             controls=config["controls"])

    def stream_configuration(self, name="main"):
        s = self.config[name]
        stride = self.stride if name == "lores" else s["size"][0] * 3
        return {"size": s["size"], "format": s["format"], "stride": stride}

    def camera_configuration(self):
        return self.config

    def start_preview(self, preview=False, **kwargs):
        if self.started:
            raise RuntimeError("An event loop is already running")
        if preview == Preview.DRM and os.environ.get("FAKE_PICAMERA2_DRM_BUSY"):
            raise RuntimeError("drmModeSetPlane failed: Permission denied")
        self._preview = preview
        _log(call="start_preview", preview=getattr(preview, "name", str(preview)))

    def start(self, config=None, show_preview=False):
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        _log(call="start")

    def set_overlay(self, overlay):
        if overlay is not None:
            if overlay.ndim != 3 or overlay.shape[2] != 4 or overlay.dtype != np.uint8:
                raise RuntimeError("Overlay must be a 4-channel image")
        self.overlay = overlay
        nz = int((overlay[..., 3] > 0).sum()) if overlay is not None else 0
        _log(call="set_overlay", shape=list(overlay.shape) if overlay is not None else None, opaque=nz)

    def capture_request(self, wait=None, flush=None):
        if not self.started:
            raise RuntimeError("Camera must be started")
        if self.limit and self._i >= self.limit:
            _log(call="stalled", frames=self._i)
            self._stall.wait()  # a hung camera: never returns
        time.sleep(1 / 60)
        self._i += 1
        return _Request(self, self._i)

    def capture_array(self, name="main", wait=None):
        r = self.capture_request()
        try:
            return r.make_array(name)
        finally:
            r.release()

    def capture_buffer(self, name="main", wait=None):
        return self.capture_array(name, wait).reshape(-1)

    def stop(self):
        self.started = False
        _log(call="stop")

    def stop_preview(self):
        self._preview = None

    def close(self):
        self.started = False
        _log(call="close")
