"""The HDMI preview on the Pi: picamera2 shows the camera at full rate; we only replace a
transparent RGBA overlay with boxes and labels as results arrive. Camera frames are never
copied or touched. Everything picamera2-specific stays in this module and the source."""
from __future__ import annotations

import logging
import os

from .config import DisplayConfig
from .draw import overlay_rgba
from .sinks import Sink

log = logging.getLogger(__name__)


def choose_preview(setting: str, env=None) -> str:
    """"drm" | "qtgl" | "none". "auto": a desktop session (``$DISPLAY``/``$WAYLAND_DISPLAY``)
    gets an OpenGL window; without one (the usual case under systemd) the preview draws
    straight to the screen through DRM/KMS."""
    env = os.environ if env is None else env
    if setting != "auto":
        return setting
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return "qtgl"
    return "drm"


class PreviewSink(Sink):
    name = "preview"

    def __init__(self, source, cfg: DisplayConfig):
        self.source, self.cfg = source, cfg
        self.kind = choose_preview(cfg.preview)
        self.active = False
        self.overlays = 0

    def start(self):
        from picamera2 import Preview  # only reached with a Pi camera source

        if self.kind == "none":
            return
        preview = Preview.DRM if self.kind == "drm" else Preview.QTGL
        try:
            self.source.attach_preview(preview)
            self.active = True
            log.info("preview: %s on the attached display", self.kind.upper())
        except Exception as e:
            hint = ("another program (a desktop?) holds the display; set [display] preview = \"qtgl\" under a "
                    "desktop or \"none\"" if self.kind == "drm" else
                    "no usable desktop session; set [display] preview = \"drm\" or \"none\"")
            log.error("preview %s unavailable (%s): %s; running without a preview", self.kind.upper(), e, hint)

    def handle(self, event, frame):
        if not self.active:
            return
        size = tuple(self.source.size)
        self.source.picam2.set_overlay(overlay_rgba(size, event, self.cfg.scores))
        self.overlays += 1
