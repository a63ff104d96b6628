"""The HDMI preview on the Pi: picamera2 shows the camera at full rate; we only replace a
transparent RGBA overlay with boxes and labels when what they show changes. Camera frames are never
copied or touched. Everything picamera2-specific stays in this module and the source."""
from __future__ import annotations

import gc
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
# Below this much RAM the DRM preview's framebuffer is sized for the picture, not the screen.
LOW_MEMORY = 1 << 30


def qt_available() -> bool:
    """picamera2's Qt previews import PyQt5 on their own thread and wait for ever if that fails
    (previews/qt_previews.py, QtPreviewBase.start): look before choosing one."""
    return importlib.util.find_spec("PyQt5") is not None


def gl_available() -> bool:
    """The QtGL preview's widget needs PyOpenGL (Debian's python3-opengl) besides PyQt5."""
    return importlib.util.find_spec("OpenGL") is not None


def choose_preview(setting: str, env=None, qt: bool | None = None, gl: bool | None = None) -> tuple[str, str]:
    """("drm" | "qtgl" | "none", why). QtGL only where its window can open: a local X display (":0", as
    picamera2's own choice in start_preview) or Wayland, with PyQt5 and PyOpenGL, and not as the service
    (a system user has no way into the desktop's session, whatever $DISPLAY a sudo or an environment file
    kept). Everywhere else "auto" means DRM, straight to the screen, which PreviewSink only attaches when a
    display is connected and ours to draw on."""
    env = os.environ if env is None else env
    qt = qt_available() if qt is None else qt
    gl = gl_available() if gl is None else gl
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if setting in ("drm", "none"):
        return setting, f"preview = \"{setting}\""
    why_not = None
    if env.get("INVOCATION_ID"):
        why_not = "running as a service, outside the desktop's session"
    elif not (wayland or display.startswith(":")):
        why_not = (f"DISPLAY={display} is not a local display (ssh -X?)" if display else "no desktop session")
    elif not qt:
        why_not = "a desktop session but no PyQt5 (apt install python3-pyqt5 python3-opengl for a window)"
    elif not gl:
        why_not = "PyQt5 without PyOpenGL (apt install python3-opengl for a window)"
    if why_not is None:
        return "qtgl", "a local desktop session with PyQt5 and PyOpenGL"
    if setting == "qtgl":
        return "none", f"preview = \"qtgl\" cannot open a window: {why_not}; no preview"
    return "drm", why_not


def total_memory() -> int | None:
    """RAM in bytes (MemTotal), None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def drm_probe(sysfs: str = DRM_SYSFS) -> tuple[tuple[int, int] | None, bool | None, str]:
    """(screen size or None, ours to draw on?, why not). Opened the way picamera2's DRM preview opens it
    (pykms), and closed again before the preview opens it for good. kmsxx never raises on a failed commit
    (AtomicReq.commit_sync returns the error), so a test commit asks whether we hold DRM master: a desktop
    compositor holding it makes every commit of ours fail with EACCES while nothing says so.
    Without pykms only the kernel's connector state (sysfs) is known."""
    try:
        import pykms
    except ImportError:
        size = display_size(sysfs)
        return size, None, "" if size else "no display connected (HDMI)"
    card = None
    try:
        card = pykms.Card()
        conn = next((c for c in card.connectors if c.connected()), None)
        if conn is None:
            return None, None, "no display connected (HDMI)"
        mode = conn.get_default_mode()
        rc = pykms.AtomicReq(card).test()
        if rc:
            return (mode.hdisplay, mode.vdisplay), False, (
                f"another program holds the screen (a test commit failed: {os.strerror(abs(rc))}); {DESKTOP_HINT}")
        return (mode.hdisplay, mode.vdisplay), True, ""
    except Exception as e:  # no card, no permission
        return None, None, f"no usable DRM card ({e})"
    finally:
        del card
        gc.collect()  # kmsxx closes the card (and drops DRM master) when the object goes


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

    def __init__(self, source, cfg: DisplayConfig, sysfs: str | None = None, max_hz: float = OVERLAY_MAX_HZ,
                 masks=None):
        self.source, self.cfg, self.masks = source, cfg, masks
        self.kind, self.why = choose_preview(cfg.preview)
        self.sysfs, self.min_interval = sysfs or DRM_SYSFS, 1.0 / max_hz
        self.active = False
        self.on_screen: bool | None = None  # a test commit succeeded (None: not known)
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

        size = None
        if self.kind == "drm":
            size, ours, why = drm_probe(self.sysfs)
            if size is None or ours is False:
                self.why = why
                # Headless is normal for the service: say it once, quietly; a screen we cannot use is worth a warning.
                (log.info if size is None else log.warning)("preview: none: %s", why)
                return
            self.on_screen = ours
        else:
            size = display_size(self.sysfs)
        self.window = self._window(size)
        preview = Preview.DRM if self.kind == "drm" else Preview.QTGL
        try:
            self.source.attach_preview(preview, **self.window)
            self.active = True
            where = f"{size[0]}x{size[1]}" if size else "640x480 (display mode unknown)"
            log.info("preview: %s on the attached display, %s (%s)", self.kind.upper(), where, self.why)
        except Exception as e:
            hint = (DESKTOP_HINT if self.kind == "drm" else
                    "no usable desktop session; set [display] preview = \"drm\" or \"none\"")
            self.why = f"{e}; {hint}"
            log.error("preview %s unavailable (%s): %s; running without a preview", self.kind.upper(), e, hint)

    def _window(self, size) -> dict:
        """The whole screen (picamera2 letterboxes the picture). picamera2's DRM preview allocates a
        framebuffer the size of its window (DrmPreview.__init__); on a board short of memory (a 512 MB
        Zero 2 W: a 4K screen's is 33 MB of CMA) the window is the picture's size, centred."""
        if not size:
            return {}  # picamera2's own default: 640x480 at the corner
        w, h = size
        mem = total_memory()
        if mem is not None and mem < LOW_MEMORY and self.kind == "drm":
            pw, ph = min(w, self.source.size[0]), min(h, self.source.size[1])
            return {"x": (w - pw) // 2, "y": (h - ph) // 2, "width": pw, "height": ph}
        return {"x": 0, "y": 0, "width": w, "height": h}

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
        self.source.set_overlay(overlay_rgba(tuple(self.source.size), event, self.cfg.scores, self.masks))
        self.overlay_ms.append((time.perf_counter() - t) * 1000)
        self._shown, self._last = key, now
        self.overlays += 1
