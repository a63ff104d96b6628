"""Typed, frozen settings, one dataclass per subsystem, loaded from TOML.

Unknown keys and wrong types are rejected with the offending ``section.key`` named,
so a typo in ``/etc/emotion-edge/config.toml`` fails at start, not silently.
"""
from __future__ import annotations

import dataclasses
import os
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CameraConfig:
    # "auto": Pi camera, else webcam 0, else the built-in demo clip.
    source: str = "auto"
    width: int = 640
    height: int = 480
    # The detector's grayscale plane (picamera2 lores stream; OpenCV sources downscale to it).
    lores_width: int = 320
    lores_height: int = 240
    fps: float = 30.0
    # Lores luma range: "auto" asks picamera2 for the stream's colour space; "limited" expands 16..235 to 0..255.
    luma_range: str = "auto"
    # Files are detected on larger planes than live cameras: they have no frame budget and their
    # faces may be small (a person across the room in a 1080p clip).
    still_max_width: int = 2048
    video_max_width: int = 640
    # Restart a video file at its end instead of ending the run.
    loop: bool = False
    # Seconds without a frame from a live camera before it counts as hung (the run then fails, and systemd
    # restarts it); a stop is seen within 0.2 s whatever the camera does.
    capture_timeout: float = 5.0


@dataclass(frozen=True)
class DetectorConfig:
    cascade: str = ""  # empty: OpenCV's haarcascade_frontalface_default.xml
    scale_factor: float = 1.2
    min_neighbors: int = 5
    min_size: int = 40  # pixels on the detection plane
    # Boxes narrower than this fraction of the plane must also be found by a second cascade (frontalface_alt):
    # the large planes of photos multiply small false faces in texture; 0 turns the check off (do so with a
    # non-frontal `cascade`: the second one is frontal).
    confirm_below: float = 0.1
    # Also search the plane turned by -tilt and +tilt degrees, for heads leaning up to about 30 degrees
    # (upright search alone finds about 12); 0: upright only. Photos and video files only unless tilt_live,
    # since each angle costs one more search per frame.
    tilt: float = 20.0
    tilt_live: bool = False
    every: int = 1  # run Haar on every k-th frame; boxes are carried by the tracker in between


@dataclass(frozen=True)
class ClassifierConfig:
    model: str = ""  # empty: the shipped model/emotion_int8.tflite
    labels: str = ""  # empty: the labels file beside the model
    threads: int = 1
    margin: float = 0.0  # crop margin around the Haar box, fraction of its size per side (see model card)
    # Also classify the mirrored face and average (one batched call): photos and video files, where the
    # classifier's cost hardly counts, and live sources only with flip_live.
    flip: bool = True
    flip_live: bool = False
    # The photometric step applied to each 48x48 face: "auto" takes the one the model was trained with
    # (the .json beside it); "none", "stretch" or "equalize" must agree with it.
    preprocess: str = "auto"


@dataclass(frozen=True)
class TrackerConfig:
    iou: float = 0.3
    smoothing: float = 0.5  # weight of the newest scores in the exponential moving average
    max_missed: int = 5  # frames a face may go undetected before its id is dropped


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    prefix: str = "emotion-edge"
    client_id: str = ""
    username: str = ""
    password_file: str = ""  # or the systemd credential "mqtt-password" in $CREDENTIALS_DIRECTORY
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False
    keepalive: int = 30
    qos_events: int = 0
    qos_state: int = 1
    rate: str = "all"  # "all" | "change" | "max"
    max_rate: float = 5.0  # events per second when rate = "max"
    queue_size: int = 100
    stats_interval: float = 30.0
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    snapshot: bool = False  # publish a JPEG of the annotated frame; off: no image leaves the device
    snapshot_interval: float = 10.0


@dataclass(frozen=True)
class DisplayConfig:
    preview: str = "auto"  # "auto" | "drm" | "qtgl" | "none"
    scores: bool = True  # small score bars under each label
    http: str = ""  # e.g. "127.0.0.1:8080"; empty: no HTTP view
    http_password_file: str = ""
    http_max_fps: float = 10.0


@dataclass(frozen=True)
class ServiceConfig:
    device: str = ""  # empty: the host name, sanitised for MQTT topics
    status_interval: float = 5.0
    log_level: str = "info"


@dataclass(frozen=True)
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)

    @property
    def device(self) -> str:
        return self.service.device or sanitise_topic(socket.gethostname())

    def replace(self, section: str, **changes) -> "Config":
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


_CHOICES = {
    ("camera", "luma_range"): ("auto", "full", "limited"),
    ("classifier", "preprocess"): ("auto", "none", "stretch", "equalize"),
    ("mqtt", "rate"): ("all", "change", "max"),
    ("display", "preview"): ("auto", "drm", "qtgl", "none"),
    ("service", "log_level"): ("debug", "info", "warning", "error"),
}
_POSITIVE = {
    ("camera", "width"), ("camera", "height"), ("camera", "lores_width"), ("camera", "lores_height"),
    ("camera", "fps"), ("camera", "capture_timeout"), ("camera", "still_max_width"), ("camera", "video_max_width"), ("detector", "min_size"), ("detector", "every"),
    ("classifier", "threads"), ("mqtt", "port"), ("mqtt", "keepalive"), ("mqtt", "queue_size"),
    ("mqtt", "max_rate"), ("mqtt", "stats_interval"), ("mqtt", "snapshot_interval"), ("display", "http_max_fps"),
    ("service", "status_interval"), ("tracker", "max_missed"),
}


def sanitise_topic(name: str) -> str:
    """A name safe as one MQTT topic level and a Home Assistant object id."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_").lower()
    return s or "emotion-edge"


def _check_type(where: str, value, typ):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def _section(name: str, cls, raw) -> object:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}]: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        where = f"{name}.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
        value = _check_type(where, value, hints[key])
        choices = _CHOICES.get((name, key))
        if choices and value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        if (name, key) in _POSITIVE and value <= 0:
            raise ConfigError(f"{where}: must be positive, got {value!r}")
        values[key] = value
    obj = cls(**values)
    _validate(name, obj)
    return obj


def _validate(name: str, obj) -> None:
    if name == "detector" and obj.scale_factor <= 1.0:
        raise ConfigError("detector.scale_factor: must be greater than 1.0")
    if name == "detector" and not 0.0 <= obj.confirm_below <= 1.0:
        raise ConfigError("detector.confirm_below: must be within 0..1")
    if name == "detector" and not 0.0 <= obj.tilt <= 45.0:
        raise ConfigError("detector.tilt: must be within 0..45 degrees")
    if name == "detector" and obj.min_neighbors < 0:
        raise ConfigError("detector.min_neighbors: must be 0 or more")
    if name == "classifier" and not -0.2 <= obj.margin <= 1.0:
        raise ConfigError("classifier.margin: must be within -0.2..1.0")
    if name == "tracker" and not 0.0 < obj.smoothing <= 1.0:
        raise ConfigError("tracker.smoothing: must be within (0, 1]")
    if name == "tracker" and not 0.0 < obj.iou < 1.0:
        raise ConfigError("tracker.iou: must be within (0, 1)")
    if name == "mqtt":
        for k in ("qos_events", "qos_state"):
            if getattr(obj, k) not in (0, 1, 2):
                raise ConfigError(f"mqtt.{k}: must be 0, 1 or 2")
        if (obj.cert_file == "") != (obj.key_file == ""):
            raise ConfigError("mqtt.cert_file: cert_file and key_file go together")
    if name == "display" and obj.http:
        parse_hostport(obj.http, "display.http")


def parse_hostport(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)




def from_dict(raw: dict) -> Config:
    hints = typing.get_type_hints(Config)
    sections = {}
    for name, value in raw.items():
        if name not in hints:
            raise ConfigError(f"[{name}]: unknown section (known: {', '.join(hints)})")
        sections[name] = _section(name, hints[name], value)
    return Config(**sections)


def load(path: str | os.PathLike | None) -> Config:
    """Load a TOML file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    try:
        return from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def to_toml(cfg: Config) -> str:
    """The settings as TOML (for `emotion-edge config` and a test that the shipped file matches)."""
    out = []
    for f in dataclasses.fields(cfg):
        out.append(f"[{f.name}]")
        sec = getattr(cfg, f.name)
        for sf in dataclasses.fields(sec):
            v = getattr(sec, sf.name)
            if isinstance(v, bool):
                s = "true" if v else "false"
            elif isinstance(v, str):
                s = '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            else:
                s = repr(v)
            out.append(f"{sf.name} = {s}")
        out.append("")
    return "\n".join(out)
