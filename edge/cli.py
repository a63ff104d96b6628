"""``emotion-edge run | check | bench | config`` and ``--version``."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from . import __version__
from .config import Config, ConfigError, load, to_toml

log = logging.getLogger("edge.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _config(args) -> Config:
    path = args.config
    if path is None and os.environ.get("EMOTION_EDGE_CONFIG"):
        path = os.environ["EMOTION_EDGE_CONFIG"]
    cfg = load(path)
    return cfg.replace("camera", replay="live") if getattr(args, "live", False) else cfg


def _under_systemd() -> bool:
    return bool(os.environ.get("INVOCATION_ID") and os.environ.get("NOTIFY_SOCKET"))


def _status_line(snap: dict, faces, total: int | None = None) -> str:
    people = [f for f in faces if not getattr(f, "still", False)]
    parts = [f"{snap['fps']:.1f} fps", f"{len(people)} face{'s' if len(people) != 1 else ''}"]
    if people:
        f = people[0]
        parts[-1] += f" ({f.emotion} {f.confidence:.0%})"
    if len(people) < len(faces):
        parts[-1] += f" + {len(faces) - len(people)} still"
    if total:
        # A long clip or a big folder: how far, and how long the rest will take at the current rate.
        done = snap["frames"]
        progress = f"frames {done}/{total} ({100 * done / total:.0f} %)"
        if snap["fps"] > 0 and done < total:
            left = (total - done) / snap["fps"]
            progress += f", {left / 60:.1f} min left" if left >= 90 else f", {left:.0f} s left"
        parts.append(progress)
    else:
        parts.append(f"frames {snap['frames']}")
    if snap["bad_frames"]:
        parts.append(f"bad {snap['bad_frames']}")
    return ", ".join(parts)


def cmd_run(args) -> int:
    from .app import Outputs, build
    from .classify import ModelError
    from .detect import DetectorError
    from .service import Notifier
    from .sources import SourceError

    cfg = _config(args)
    if not args.verbose:
        logging.getLogger().setLevel(cfg.service.log_level.upper())
    notifier = Notifier()
    stop = threading.Event()

    signals: list[int] = []

    def on_signal(signum, _frame):
        # Only flag it: the handler runs on the main thread between two bytecodes, possibly while
        # the capture loop holds the notifier's lock or is inside a write to stderr, so sending or
        # logging from here could deadlock. The thread below does both.
        signals.append(signum)
        stop.set()

    def announce_stop():
        stop.wait()
        log.info("%s: stopping", signal.Signals(signals[0]).name if signals else "stop")
        notifier.stopping()

    announcer = threading.Thread(target=announce_stop, name="stop-notify", daemon=True)
    announcer.start()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    events = args.events
    if events is None:
        # Interactive runs print events; under systemd they would only flood the journal.
        events = None if _under_systemd() else "-"
    if events == "none":
        events = None
    try:
        pipe = build(cfg, args.source, Outputs(events=events, annotate=args.annotate, timeline=args.timeline), stop)
    except (ModelError, DetectorError, SourceError, ConfigError, ValueError, OSError, ImportError) as e:
        log.error("%s", e)
        return EXIT_USAGE if isinstance(e, (ConfigError, ValueError)) else EXIT_FAILURE

    source = pipe.source
    try:
        source.open()
    except SourceError as e:
        if stop.is_set():  # a signal while the source was still opening: a clean stop, not a failure
            log.info("%s", e)
            return EXIT_OK
        log.error("%s", e)
        return EXIT_FAILURE
    log.info("emotion-edge %s: %s, model %s, device %s", __version__, source.description,
             pipe.classifier.path.name, cfg.device)

    last_status = [time.monotonic()]

    def on_frame(event):
        if not notifier.ready_sent:
            # Camera, model and cascade are up and a frame went through; the broker may come later.
            notifier.ready(f"running: {source.description}")
        notifier.watchdog()
        now = time.monotonic()
        if now - last_status[0] >= cfg.service.status_interval:
            last_status[0] = now
            snap = pipe.stats.snapshot()
            line = _status_line(snap, event.faces, source.total)
            notifier.status(line)
            log.info("status: %s", line, extra={"EMOTION_EDGE_FPS": f"{snap['fps']:.2f}",
                                                 "EMOTION_EDGE_FACES": str(len(event.faces)),
                                                 "EMOTION_EDGE_FRAMES": str(snap["frames"])})

    pipe.on_frame.append(on_frame)
    try:
        result = pipe.run(args.max_frames)
    finally:
        source.stop()
        if stop.is_set():
            announcer.join(timeout=5)  # a daemon thread dies with the process: let STOPPING=1 out first
    snap = pipe.stats.snapshot()
    summary = f"{result.frames} frames, {snap['bad_frames']} bad"
    if snap["fps"]:  # a photo or a short run has no measured rate: no "0.0 fps"
        summary += f", {snap['fps']:.1f} fps at the end"
    if result.reason == "output-error":
        log.error("%s", result.error)
        return EXIT_FAILURE
    if result.reason == "source-error":
        log.error("source failed after %s: %s", summary, result.error)
        return EXIT_FAILURE
    if source.dropped:
        summary += f", {source.dropped} dropped (the pipeline was busy when they came)"
    if result.reason == "ended" and source.live and not source.replayed:
        log.error("live source ended unexpectedly after %s", summary)
        return EXIT_FAILURE
    if result.reason == "ended" and result.frames == 0:
        log.error("%s gave no usable frames", source.description)
        return EXIT_FAILURE
    log.info("done (%s): %s", result.reason, summary)
    if pipe.failed_outputs():
        return EXIT_FAILURE
    return EXIT_OK


def cmd_check(args) -> int:
    from .check import run_checks

    cfg = _config(args)
    if args.full:
        from .selftest import run_selftest

        return run_selftest(cfg, args.source, frames=args.frames, timeout=args.timeout)
    return run_checks(cfg, args.source, timeout=args.timeout, service=args.service)


def cmd_bench(args) -> int:
    from .bench import run_bench

    cfg = _config(args)
    return run_bench(cfg, args.source, args.frames, args.json, live=not args.recorded)


def cmd_mqtt(args) -> int:
    from .sinks.mqtt_client import forget

    cfg = _config(args)
    if not cfg.mqtt.enabled:
        print("skip mqtt.enabled = false: nothing was published")
        return EXIT_OK
    ok, text = forget(cfg.mqtt, cfg.device, timeout=args.timeout)
    print(f"{'ok  ' if ok else 'FAIL'} {text}")
    return EXIT_OK if ok else EXIT_FAILURE


def cmd_config(args) -> int:
    cfg = _config(args)
    sys.stdout.write(to_toml(cfg))
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emotion-edge", description="Faces and their emotions from a camera, live.")
    p.add_argument("--version", action="version", version=f"emotion-edge {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def common(sp):
        sp.add_argument("--config", metavar="FILE", help="TOML config (default: $EMOTION_EDGE_CONFIG, else built-in defaults)")
        sp.add_argument("--source", metavar="SPEC", help="auto | picamera2[:N] | webcam[:N] | demo[:FRAMES] | URL | "
                                                         "video file | image file | folder of images")
        sp.add_argument("--live", action="store_true", help="play a video file or the demo clip as a camera would "
                                                            "deliver it ([camera] replay = \"live\")")

    r = sub.add_parser("run", help="run the pipeline")
    common(r)
    r.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    r.add_argument("--events", metavar="PATH", help="JSON lines: '-' for stdout (the default outside systemd), "
                                                    "a file, or 'none'")
    r.add_argument("--annotate", metavar="PATH", help="annotated output: video (.mp4/.avi), image (.jpg/.png) or folder/")
    r.add_argument("--timeline", metavar="PATH", help="a picture (.png/.jpg) of each face's emotions over the run")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="check camera, model, cascade and broker; one line each")
    common(c)
    c.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the broker")
    c.add_argument("--full", action="store_true", help="the self-test: board, camera streams, FRAMES frames through "
                                                       "the pipeline with timings, preview, MQTT round trip, "
                                                       "systemd, temperature; a report to paste into a bug report")
    c.add_argument("--frames", type=int, default=100, metavar="N", help="frames for --full (default 100)")
    c.add_argument("--service", action="store_true", help="judge as the service would run: no camera is a failure "
                                                          "(the service never plays the demo clip)")
    c.set_defaults(func=cmd_check)

    b = sub.add_parser("bench", help="time the camera path: the source replayed live through it, per-stage ms, "
                                     "CPU-ms per frame, latency, memory")
    common(b)
    b.add_argument("--frames", type=int, default=300, metavar="N")
    b.add_argument("--recorded", action="store_true", help="time the file path instead (file settings)")
    b.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("mqtt", help="MQTT housekeeping: `mqtt forget` removes this device from Home Assistant")
    common(m)
    m.add_argument("action", choices=["forget"], help="forget: clear every retained message this device left "
                                                      "(discovery, state, stats, summary, availability)")
    m.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    m.set_defaults(func=cmd_mqtt)

    k = sub.add_parser("config", help="print the effective configuration as TOML")
    common(k)
    k.set_defaults(func=cmd_config)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "max_frames", None) is not None and args.max_frames < 1:
        print("emotion-edge: --max-frames must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    from .service import setup_logging

    # Once, for every command: `run` raises it to [service] log_level when it has read the config.
    setup_logging("debug" if getattr(args, "verbose", False) else "warning")
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"emotion-edge: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
