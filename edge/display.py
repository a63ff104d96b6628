"""The HDMI preview on the Pi: picamera2 shows the camera at full rate; we only replace a
transparent RGBA overlay with boxes and labels when what they show changes. Camera frames are never
copied or touched. Everything picamera2-specific stays in this module and the source."""
from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path

from .config import DisplayConfig
from .draw import overlay_rgba
from .sinks import Sink
from .sources.picamera2 import DESKTOP_HINT

log = logging.getLogger(__name__)

DRM_SYSFS = "/sys/class/drm"
# picamera2's DRM preview allocates a framebuffer, copies the whole overlay and commits it synchronously
# on every set_overlay (previews/drm_preview.py, DrmPreview.set_overlay): at most this many per second.
OVERLAY_MAX_HZ = 5.0


def qt_available() -> bool:
    """picamera2's Qt previews import PyQt5 on their own thread and wait for ever if that fails
    (previews/qt_previews.py, QtPreviewBase.start): look before choosing one."""
    return importlib.util.find_spec("PyQt5") is not None


def choose_preview(setting: str, env=None, qt: bool | None = None) -> tuple[str, str]:
    """("drm" | "qtgl" | "none", why). "auto": a desktop session (``$DISPLAY``/``$WAYLAND_DISPLAY``) with
    PyQt5 gets an OpenGL window; otherwise (the usual case under systemd) the preview draws straight to the
    screen through DRM/KMS."""
    env = os.environ if env is None else env
    qt = qt_available() if qt is None else qt
    desktop = bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    if setting == "qtgl" and not qt:
        return "none", "preview = \"qtgl\" needs PyQt5 (apt install python3-pyqt5 python3-opengl); no preview"
    if setting != "auto":
        return setting, f"preview = \"{setting}\""
    if desktop and qt:
        return "qtgl", "a desktop session with PyQt5"
    if desktop:
        return "drm", "a desktop session but no PyQt5 (apt install python3-pyqt5 python3-opengl for a window)"
    return "drm", "no desktop session"


def display_size(sysfs: str = DRM_SYSFS) -> tuple[int, int] | None:
    """The current mode of the first connected display (e.g. 1920x1080), read from the kernel's DRM
    connectors; None without one. The preview gets the whole screen: picamera2 letterboxes the image."""
    root = Path(sysfs)
    try:
        connectors = sorted(p for p in root.iterdir() if (p / "status").is_file())
    except OSError:
        return None
    for c in connectors:
        try:
            if (c / "status").read_text().strip() != "connected":
                continue
            modes = (c / "modes").read_text().split()
        except OSError:
            continue
        if modes:
            w, _, h = modes[0].partition("x")
            h = h.rstrip("ip")  # "1920x1080i" for interlaced modes
            if w.isdigit() and h.isdigit():
                return int(w), int(h)
    return None


def overlay_key(event, scores: bool) -> tuple:
    """What the overlay shows, at the precision a viewer can see: boxes to 4 px, confidences to 5 %."""
    return tuple((f.id, tuple(v // 4 for v in f.box), f.emotion, round(f.confidence * 20),
                  tuple(round(p * 20) for p in f.scores.values()) if scores else ()) for f in event.faces)


class PreviewSink(Sink):
    name = "preview"

    def __init__(self, source, cfg: DisplayConfig, sysfs: str | None = None, max_hz: float = OVERLAY_MAX_HZ):
        self.source, self.cfg = source, cfg
        self.kind, self.why = choose_preview(cfg.preview)
        self.sysfs, self.min_interval = sysfs or DRM_SYSFS, 1.0 / max_hz
        self.active = False
        self.window: dict = {}
        self.overlays = 0  # set_overlay calls (each one a framebuffer and a commit on DRM)
        self.overlay_ms: list[float] = []
        self._shown = None
        self._last = -1e9

    def start(self):
        if self.kind == "none":
            if self.cfg.preview != "none":
                log.warning("preview: %s", self.why)
            return
        from picamera2 import Preview  # only reached with a Pi camera source

        size = display_size(self.sysfs)
        # Without a mode (no screen yet, no access to sysfs) picamera2's own default: 640x480 at the corner.
        self.window = {"x": 0, "y": 0, "width": size[0], "height": size[1]} if size else {}
        preview = Preview.DRM if self.kind == "drm" else Preview.QTGL
        try:
            self.source.attach_preview(preview, **self.window)
            self.active = True
            where = f"{size[0]}x{size[1]}" if size else "640x480 (display mode unknown)"
            log.info("preview: %s on the attached display, %s (%s)", self.kind.upper(), where, self.why)
        except Exception as e:
            hint = (DESKTOP_HINT if self.kind == "drm" else
                    "no usable desktop session; set [display] preview = \"drm\" or \"none\"")
            log.error("preview %s unavailable (%s): %s; running without a preview", self.kind.upper(), e, hint)

    def handle(self, event, frame):
        if not self.active:
            return
        if self.source.preview is None:  # it failed on picamera2's thread; the source went on without it
            self.active = False
            return
        key = overlay_key(event, self.cfg.scores)
        now = time.monotonic()
        if key == self._shown or now - self._last < self.min_interval:
            return
        t = time.perf_counter()
        self.source.set_overlay(overlay_rgba(tuple(self.source.size), event, self.cfg.scores))
        self.overlay_ms.append((time.perf_counter() - t) * 1000)
        self._shown, self._last = key, now
        self.overlays += 1
