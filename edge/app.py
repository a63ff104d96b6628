"""Builds the runtime from a Config. Each factory is a plain function so tests and the
benchmark can swap one stage without touching the others."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from emotion_model import LABELS

from .cadence import file_scan_every
from .classify import Classifier
from .config import Config
from .detect import HaarDetector
from .masks import Masks
from .pipeline import Cadence, Pipeline
from .sinks import Sink
from .sources import FrameSource, open_source
from .track import IouTracker

log = logging.getLogger(__name__)


def make_detector(cfg: Config) -> HaarDetector:
    return HaarDetector(cfg.detector)


def flips(cfg: Config, live: bool) -> bool:
    """Flip averaging: for photos and files with ``flip``, for a camera or stream only with ``flip_live``."""
    return cfg.classifier.flip_live if live else cfg.classifier.flip


def make_classifier(cfg: Config, live: bool = True) -> Classifier:
    c = cfg.classifier
    clf = Classifier(c.model or None, c.labels or None, c.threads, c.margin, flips(cfg, live), c.preprocess)
    if not c.model and c.budget_ms:
        # The accurate model unless this CPU is too slow for it: a Pi 4 core needs ~25 ms per face for its
        # 147 M MACs, an x86 core 0.3-4 ms. Measured, not guessed from the board's name.
        ms = clf.ms_per_face()
        if ms > c.budget_ms:
            log.info("model: %.1f ms per face with the accurate model, over the %.0f ms budget "
                     "([classifier] budget_ms): using the fast one", ms, c.budget_ms)
            clf = Classifier("fast", c.labels or None, c.threads, c.margin, flips(cfg, live), c.preprocess)
        else:
            log.info("model: accurate, %.1f ms per face on this CPU (budget %.0f ms)", ms, c.budget_ms)
    return clf


def make_tracker(cfg: Config) -> IouTracker:
    return IouTracker(cfg.tracker)


def make_source(cfg: Config, spec: str | None, want_main: bool, stop: threading.Event | None = None) -> FrameSource:
    return open_source(spec or cfg.camera.source, cfg.camera, want_main=want_main, interrupt=stop)


def http_url(cfg: Config) -> str | None:
    """Where the HTTP view can be reached, for Home Assistant's device page; None when it is off."""
    if not cfg.display.http:
        return None
    import socket

    from .config import parse_hostport

    host, port = parse_hostport(cfg.display.http, "display.http")
    if host in ("", "0.0.0.0", "::"):
        host = local_address() or f"{socket.gethostname()}.local"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def local_address() -> str | None:
    """This machine's address on its default route (a phone on the same network reaches it; the bare host
    name it often cannot resolve). A UDP socket's connect sends nothing."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere, only chooses the interface
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


@dataclass
class Outputs:
    events: str | None = None  # "-" or a path
    annotate: str | None = None
    timeline: str | None = None  # a picture of each face's emotions over the run
    extra: list = field(default_factory=list)  # already-built sinks (tests)


def make_sinks(cfg: Config, out: Outputs, source: FrameSource, stats_fn=None, labels=LABELS,
               masks: Masks | None = None) -> list[Sink]:
    sinks: list[Sink] = []
    inputs = source_paths(source)
    if out.events:
        from .sinks.jsonl import JsonLinesSink

        sinks.append(JsonLinesSink(out.events, inputs))
    if out.annotate:
        from .files import check_output
        from .sinks.annotate import AnnotateSink

        try:
            check_output(out.annotate, inputs)
        except OSError as e:
            raise ValueError(f"--annotate {e}") from None
        fps = getattr(source, "fps", 0) or cfg.camera.fps
        sinks.append(AnnotateSink(out.annotate, fps=min(fps, 30.0), scores=cfg.display.scores))
    if out.timeline or not (source.live or (source.independent and source.total == 1)):
        # Clips and folders end with a summary in the log; the picture only when asked for.
        from .sinks.timeline import TimelineSink

        sinks.append(TimelineSink(out.timeline, labels, fps=0.0 if source.live else getattr(source, "fps", 0.0),
                                  per_face=not source.independent))
    if cfg.mqtt.enabled:
        from .sinks.mqtt import MqttSink

        sinks.append(MqttSink(cfg.mqtt, cfg.device, stats_fn=stats_fn, labels=labels, device_name=cfg.device_name,
                              http_url=http_url(cfg)))
    if cfg.display.http:
        from .sinks.http_view import HttpViewSink

        sinks.append(HttpViewSink(cfg.display, masks=masks))
    if source.has_preview and cfg.display.preview != "none":
        from .display import PreviewSink

        sinks.append(PreviewSink(source, cfg.display, masks=masks))
    sinks.extend(out.extra)
    return sinks


def source_paths(source: FrameSource) -> list:
    """The files a source reads (an output must not overwrite them)."""
    inner = getattr(source, "inner", source)
    path = getattr(inner, "path", None)
    if path is None:
        return []
    files = getattr(inner, "files", None)
    return list(files) if files else [path]


def cadence(cfg: Config, source: FrameSource) -> Cadence:
    """A live source gets the frame budget's cadence; a video file full scans several times a second of the clip
    and window searches between them, every face classified on every frame; photos every stage."""
    d = cfg.detector
    if source.independent:
        return Cadence()
    fps = getattr(source, "fps", 0.0) or cfg.camera.fps
    if not source.live:
        return Cadence(scan_every=d.every or file_scan_every(fps), windows=d.windows, fps=fps)
    return Cadence(scan_every=d.every, windows=d.windows, classify_hz=cfg.classifier.hz, workers=d.threads, fps=fps)


def build(cfg: Config, spec: str | None, out: Outputs, stop: threading.Event | None = None) -> Pipeline:
    """Model and cascade first (fail fast with a clear error), then the source, then outputs."""
    stop = stop or threading.Event()
    classifier = make_classifier(cfg)
    detector = make_detector(cfg)
    wants_image = bool(out.annotate or cfg.display.http or cfg.mqtt.snapshot or
                       any(getattr(s, "needs_image", False) for s in out.extra))
    source = make_source(cfg, spec, want_main=wants_image, stop=stop)
    if source.live:
        import cv2

        # A camera's frame work keeps to [detector] threads; OpenCV would otherwise spread every scan over all
        # cores, whatever else the Pi runs. Photos and files have no budget and keep OpenCV's default.
        cv2.setNumThreads(cfg.detector.threads)
    # Photos and files have no frame budget, a live camera does: only it skips the tilted searches and the
    # mirrored second look by default.
    tilted = cfg.detector.tilt > 0 and (cfg.detector.tilt_live or not source.live)
    still = None
    if source.live and cfg.tracker.still_after > 0:  # files are not rooms: a photo's face is always still
        from .still import StillFaces

        still = StillFaces(cfg.tracker.still_after)
    pipe = Pipeline(source, detector, classifier, make_tracker(cfg), (), device=cfg.device,
                    masks=Masks(cfg.detector.masks) if cfg.detector.masks else None, still=still,
                    cadence=cadence(cfg, source), stop=stop, tilted=tilted, flip=flips(cfg, source.live))
    pipe.sinks = make_sinks(cfg, out, source, stats_fn=pipe.stats.snapshot, labels=classifier.labels, masks=pipe.masks)
    return pipe
