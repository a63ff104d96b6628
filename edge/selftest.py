"""``emotion-edge check --full``: what a Pi owner runs after installing, in under a minute. One line per
item and a summary, to paste into a bug report: the board and OS, the camera and its streams, 100 frames
through the real pipeline with per-stage times, the preview and its overlay cost, the broker's round trip,
systemd's notify/watchdog state, temperature and throttling."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from .config import Config
from .redact import redact


class Report:
    def __init__(self):
        self.counts = {"ok": 0, "warn": 0, "FAIL": 0, "info": 0}

    def line(self, tag: str, name: str, text: str) -> None:
        self.counts[tag] += 1
        print(f"{tag:<4} {name:<9} {redact(text)}", flush=True)

    def summary(self) -> int:
        c = self.counts
        print(f"selftest: {c['ok']} ok, {c['warn']} warn, {c['FAIL']} fail", flush=True)
        return 1 if c["FAIL"] else 0


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _run(*cmd: str) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _os_name() -> str:
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _cpu_name() -> str:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key = line.split(":")[0].strip().lower()
        if key in ("model name", "hardware") and ":" in line:
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def platform_lines(rep: Report) -> None:
    import cv2
    import numpy

    from .tflite import runtime_name

    board = _read("/proc/device-tree/model") or "not a Raspberry Pi"
    userland = _run("dpkg", "--print-architecture") or platform.machine()
    rep.line("info", "board", f"{board}; {_os_name()}; kernel {platform.release()} ({platform.machine()}), "
                              f"userland {userland}")
    rep.line("info", "cpu", f"{_cpu_name()}, {os.cpu_count()} cores")
    try:
        runtime = runtime_name()
    except ImportError as e:
        rep.line("FAIL", "python", f"{platform.python_version()}: {e}")
        return
    rep.line("info", "python", f"{platform.python_version()}, numpy {numpy.__version__}, OpenCV {cv2.__version__}, "
                               f"{runtime}")


def camera_lines(rep: Report, source, min_size: int) -> None:
    from .sources.picamera2 import Picamera2Source

    if not isinstance(source, Picamera2Source) or source.picam2 is None:
        rep.line("info", "camera", source.description)
        return
    cam = source.picam2
    info = source.info  # the entry of picamera2's own numbering, the camera actually opened
    modes = ", ".join(f"{m['size'][0]}x{m['size'][1]}@{m.get('fps', 0):.0f}" for m in source.sensor_modes
                      if "size" in m) or "none listed"
    mode = source.sensor_mode
    used = (f"sensor mode {mode['size'][0]}x{mode['size'][1]} {mode['format']} up to {mode.get('fps', 0):.0f} fps, "
            f"{source.field}" if mode else "no raw sensor modes (a USB camera)")
    rep.line("info", "camera", f"{info.get('Model', '?')} ({info.get('Id', '?')}); {used}; modes {modes}")
    main, lores = cam.stream_configuration("main"), cam.stream_configuration("lores")
    rep.line("info", "streams", f"main {main['format']} {main['size'][0]}x{main['size'][1]} stride {main['stride']}, "
                                f"lores {lores['format']} {lores['size'][0]}x{lores['size'][1]} "
                                f"stride {lores['stride']}, luma {'limited' if source._lut is not None else 'full'}")
    # The camera's reach: what a maker placing it in a room needs to know first (README: how far away).
    (mw, mh), (lw, lh) = main["size"], lores["size"]
    rep.line("info", "range", f"faces from about {round(min_size * mw / lw)} px wide in the {mw}x{mh} picture "
                              f"(min_size {min_size} on the {lw}x{lh} lores plane; a larger lores plane reaches "
                              "further)")


def frames_lines(rep: Report, cfg: Config, spec: str | None, frames: int) -> None:
    import numpy as np

    from .app import Outputs, build
    from .display import PreviewSink
    from .sources import SourceError

    try:
        pipe = build(cfg, spec, Outputs())
        pipe.source.open()
    except Exception as e:
        rep.line("FAIL", "camera", str(e))
        return
    try:
        camera_lines(rep, pipe.source, cfg.detector.min_size)
        faces = []
        pipe.on_frame.append(lambda ev: faces.append(len(ev.faces)))
        t, cpu = time.perf_counter(), time.process_time()
        try:
            result = pipe.run(frames)
        except SourceError as e:
            rep.line("FAIL", "frames", str(e))
            return
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    finally:
        pipe.source.stop()
    if result.reason == "source-error" or not result.frames:
        rep.line("FAIL", "frames", f"{result.frames} frames: {result.error or result.reason}")
        return
    total = pipe.stats.stage_total
    per = {k: v / result.frames for k, v in total.items()}
    gray = f"{pipe.source.lores[0]}x{pipe.source.lores[1]}" if hasattr(pipe.source, "lores") else "?"
    rep.line("ok", "frames", f"{result.frames} frames in {wall:.1f} s ({result.frames / wall:.1f} fps), "
                             f"{1000 * cpu / result.frames:.1f} CPU-ms/frame; capture {per['capture']:.1f}, detect "
                             f"{per['detect']:.1f} ({gray} plane), classify {per['classify']:.1f}, track "
                             f"{per['track']:.2f}, sinks {per['sinks']:.2f} ms/frame; faces per frame "
                             f"{np.mean(faces):.2f}, bad {pipe.stats.snapshot()['bad_frames']}")
    masked = f"{len(pipe.masks.polygons)} masks, {pipe.masks.dropped} detections in them dropped" if pipe.masks \
        else "no masks"
    still = (f"{len(pipe.still.seen)} still faces (unchanged for {cfg.tracker.still_after:g} s)" if pipe.still
             else "still faces off (not a live source, or still_after = 0)")
    rep.line("info", "rooms", f"{masked}; {still}")
    preview = next((s for s in pipe.sinks if isinstance(s, PreviewSink)), None)
    if preview is None:
        rep.line("info", "preview", "none (not a Pi camera, or [display] preview = \"none\")")
    elif not preview.active:
        failed = getattr(pipe.source, "preview_failed", None)
        rep.line("warn", "preview", failed or f"{preview.kind.upper()}: not on screen: {preview.why}")
    else:
        win = preview.window
        size = f"{win['width']}x{win['height']}" if win else "640x480 (display mode unknown)"
        seen = {True: "on screen", None: "on screen not verified (no pykms to test a commit)"}[preview.on_screen]
        ms = preview.overlay_ms
        cost = f"{len(ms)} overlay commits, median {np.median(ms):.1f} ms, max {max(ms):.1f} ms" if ms else "no overlay"
        rep.line("ok", "preview", f"{preview.kind.upper()} {size}, {seen}; {cost}")


def broker_line(rep: Report, cfg: Config, timeout: float) -> None:
    if not cfg.mqtt.enabled:
        rep.line("info", "mqtt", "mqtt.enabled = false")
        return
    from .sinks.mqtt_client import probe

    ok, text = probe(cfg.mqtt, cfg.device, timeout, roundtrip=True)
    rep.line("ok" if ok else "FAIL", "mqtt", text)


def service_line(rep: Report) -> None:
    notify = "NOTIFY_SOCKET set" if os.environ.get("NOTIFY_SOCKET") else "no NOTIFY_SOCKET (not under systemd)"
    usec = os.environ.get("WATCHDOG_USEC")
    watchdog = f"watchdog {int(usec) / 1e6:g} s" if usec and usec.isdigit() else "no watchdog"
    active = _run("systemctl", "is-active", "emotion-edge.service") or "inactive or absent"
    rep.line("info", "service", f"{notify}, {watchdog}; emotion-edge.service {active}")


def thermal_line(rep: Report) -> None:
    from .metrics import soc_temperature

    temp = soc_temperature()
    throttled = _run("vcgencmd", "get_throttled")
    text = f"SoC {temp:.1f} °C" if temp is not None else "no temperature sensor"
    if throttled is None:
        rep.line("info", "thermal", text + "; vcgencmd not present")
        return
    bits = int(throttled.split("=")[-1], 16) if "=" in throttled else 0
    # vcgencmd: bits 0-3 now (under-voltage, frequency capped, throttled, soft temperature limit),
    # bits 16-19 the same since boot.
    tag = "FAIL" if bits & 0xF else "warn" if bits & 0xF0000 else "ok"
    rep.line(tag, "thermal", f"{text}; {throttled}" + (" (under-voltage or throttling: check the power supply "
                                                        "and cooling)" if bits else ""))


def run_selftest(cfg: Config, spec: str | None, frames: int = 100, timeout: float = 5.0) -> int:
    rep = Report()
    platform_lines(rep)
    frames_lines(rep, cfg, spec, frames)
    broker_line(rep, cfg, timeout)
    service_line(rep)
    thermal_line(rep)
    return rep.summary()
