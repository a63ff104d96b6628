"""``emotion-edge check``: camera, model, cascade and broker, one line each; non-zero on failure."""
from __future__ import annotations

import time

import numpy as np

from .config import Config
from .redact import redact


def _line(name: str, ok: bool | None, text: str) -> bool:
    tag = {True: "ok  ", False: "FAIL", None: "skip"}[ok]
    print(f"{tag} {name:<8} {redact(text)}", flush=True)
    return ok is not False


def check_camera(cfg: Config, spec: str | None, service: bool = False) -> bool:
    from .sources import SourceError, describe_auto, open_source

    spec = spec or cfg.camera.source
    if spec.lower() == "auto":
        chosen = describe_auto()
        if chosen == "demo":
            if service:  # the service never plays the demo: it would fail at start
                return _line("camera", False, "no Pi camera or USB webcam found: the service would not start "
                                              "(check the ribbon cable, `rpicam-hello --list-cameras`, or set "
                                              "[camera] source)")
            return _line("camera", None, "no Pi camera or USB webcam found; `run` in a terminal would play the "
                                         "built-in demo clip, the service would not start")
        spec = chosen
    try:
        src = open_source(spec, cfg.camera)
        with src:
            t = time.monotonic()
            frame = src.read()
        if frame is None:
            return _line("camera", False, f"{src.description}: no frame")
        return _line("camera", True, f"{src.description}: frame {frame.main_size[0]}x{frame.main_size[1]}, "
                                     f"detector plane {frame.gray.shape[1]}x{frame.gray.shape[0]} "
                                     f"in {1000 * (time.monotonic() - t):.0f} ms")
    except SourceError as e:
        return _line("camera", False, str(e))


def check_model(cfg: Config) -> bool:
    from .app import make_classifier
    from .classify import ModelError
    from .tflite import runtime_name

    try:
        clf = make_classifier(cfg)
        x = np.full((1, 48, 48), 128, np.uint8)
        clf.scores_for_input(clf.prepare(x[0], [(0, 0, 48, 48)]))
        t = time.perf_counter()
        for _ in range(20):
            p = clf.scores_for_input(clf.prepare(x[0], [(0, 0, 48, 48)]))
        ms = (time.perf_counter() - t) * 1000 / 20
        if not np.isfinite(p).all():
            return _line("model", False, f"{clf.path}: non-finite scores")
        return _line("model", True, f"{clf.path} ({runtime_name()}, {np.dtype(clf.in_dtype).name} input, "
                                    f"{len(clf.labels)} labels, {ms:.2f} ms/face)")
    except (ModelError, ImportError) as e:
        return _line("model", False, str(e))


def check_cascade(cfg: Config) -> bool:
    from .app import make_detector
    from .detect import DetectorError

    try:
        det = make_detector(cfg)
        det.detect(np.zeros((240, 320), np.uint8))
        turned = det.tilt > 0
        which = "small and turned" if turned else "small"
        extra = f" (+ {det.confirm_path.name} for {which} boxes)" if det.confirm_path else ""
        extra += f"; photos and files also searched turned by ±{det.tilt:g}°" if turned else ""
        return _line("cascade", True, f"{det.path}{extra}")
    except DetectorError as e:
        return _line("cascade", False, str(e))


def check_broker(cfg: Config, timeout: float) -> bool:
    if not cfg.mqtt.enabled:
        return _line("broker", None, "mqtt.enabled = false")
    from .sinks.mqtt_client import probe

    ok, text = probe(cfg.mqtt, cfg.device, timeout)
    return _line("broker", ok, text)


def run_checks(cfg: Config, spec: str | None, timeout: float = 5.0, service: bool = False) -> int:
    results = [check_camera(cfg, spec, service), check_model(cfg), check_cascade(cfg), check_broker(cfg, timeout)]
    return 0 if all(results) else 1
