"""Typed, frozen settings, one dataclass per subsystem, loaded from TOML.

Unknown keys and wrong types are rejected with the offending ``section.key`` named,
so a typo in ``/etc/emotion-edge/config.toml`` fails at start, not silently.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import socket
import tomllib
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    pass


def num(default, lo, hi):
    """A numeric setting with its allowed range (inclusive), checked on load; NaN and infinities never pass."""
    return field(default=default, metadata={"range": (lo, hi)})


@dataclass(frozen=True)
class CameraConfig:
    # "auto": Pi camera, else webcam 0, else the built-in demo clip.
    source: str = "auto"
    width: int = num(640, 16, 4608)
    height: int = num(480, 16, 3456)
    # The detector's grayscale plane (picamera2 lores stream; OpenCV sources downscale to it).
    lores_width: int = num(320, 16, 1920)
    lores_height: int = num(240, 16, 1080)
    fps: float = num(30.0, 0.1, 240.0)
    # Lores luma range: "auto" asks picamera2 for the stream's colour space; "limited" expands 16..235 to 0..255.
    luma_range: str = "auto"
    # Files are detected on larger planes than live cameras: they have no frame budget and their
    # faces may be small (a person across the room in a 1080p clip).
    still_max_width: int = num(2048, 64, 16384)
    video_max_width: int = num(1280, 64, 8192)
    # "live": play a video file or the demo clip as a camera would deliver it (the lores-sized plane, the live
    # defaults, paced at the file's rate, the newest frame only when the pipeline falls behind); "recorded":
    # every frame, as fast as it goes, with the file settings.
    replay: str = "recorded"
    # Restart a video file at its end instead of ending the run.
    loop: bool = False
    # Seconds without a frame from a live camera before it counts as hung (the run then fails, and systemd
    # restarts it); a stop is seen within 0.2 s whatever the camera does.
    capture_timeout: float = num(5.0, 0.5, 120.0)
    # Images larger than this many pixels are refused from their header, before decoding (a 20000 x 20000
    # PNG of a few hundred KB would take gigabytes); 64 MP covers phone photos.
    max_pixels: int = num(64_000_000, 10_000, 1_000_000_000)


@dataclass(frozen=True)
class DetectorConfig:
    cascade: str = ""  # empty: OpenCV's haarcascade_frontalface_default.xml
    scale_factor: float = num(1.2, 1.01, 2.0)
    min_neighbors: int = num(5, 0, 50)
    min_size: int = num(40, 8, 4096)  # pixels on the detection plane
    # Polygons (fractions of the frame, 0..1) where no face is reported: a TV, a poster (edge/masks.py).
    masks: tuple = ()
    # Boxes narrower than this fraction of the plane must also be found by a second cascade (frontalface_alt):
    # the large planes of photos multiply small false faces in texture; 0 turns the check off (do so with a
    # non-frontal `cascade`: the second one is frontal).
    confirm_below: float = num(0.1, 0.0, 1.0)
    # Also search the plane turned by -tilt and +tilt degrees, for heads leaning up to about 30 degrees
    # (upright search alone finds about 12); 0: upright only. Photos and video files only unless tilt_live,
    # since each angle costs one more search per frame.
    tilt: float = num(20.0, 0.0, 45.0)
    tilt_live: bool = False
    # Live sources: scan the whole plane every k-th frame (0: k chosen from the measured scan cost and the frame
    # period, 2..10) and between scans look for each tracked face only near where it was (``windows``; off: its
    # box is carried). Video files: 0 is six full scans a second of the clip; photos always every stage.
    every: int = num(0, 0, 100)
    windows: bool = True
    # Threads for the frame work: 1 keeps it all on the capture thread; 2 or more also classify tracked faces on
    # a worker beside each full scan and let OpenCV split the full scan over this many threads.
    threads: int = num(1, 1, 8)


@dataclass(frozen=True)
class ClassifierConfig:
    # "": the shipped 147 M-MAC model, or the shipped 37 M-MAC one where a face takes it over budget_ms (a Pi 4 or
    # older); "accurate" or "fast": that one; or the path of a .tflite of your own (model card: the contract).
    model: str = ""
    labels: str = ""  # empty: the labels file beside the model
    threads: int = num(1, 1, 64)
    margin: float = num(0.0, -0.2, 1.0)  # crop margin around the Haar box, fraction of its size per side (see model card)
    # Also classify the mirrored face and average (one batched call): photos and video files, where the
    # classifier's cost hardly counts, and live sources only with flip_live.
    flip: bool = True
    flip_live: bool = False
    # The photometric step applied to each 48x48 face: "auto" takes the one the model was trained with
    # (the .json beside it); "none", "stretch" or "equalize" must agree with it.
    preprocess: str = "auto"
    # Live sources: each face is re-classified at most this often per second (at once when it appears or moves),
    # its scores carried and smoothed in between; 0: every face on every frame.
    hz: float = num(10.0, 0.0, 240.0)
    # With model = "": the fast model is taken when the accurate one needs more than this many ms per face on
    # this CPU (measured at start, logged); 0: always the accurate one.
    budget_ms: float = num(12.0, 0.0, 1000.0)


@dataclass(frozen=True)
class TrackerConfig:
    iou: float = num(0.3, 0.01, 0.99)
    smoothing: float = num(0.5, 0.01, 1.0)  # weight of the newest scores in the exponential moving average
    # Frames a face may go undetected before its id is dropped: a second at 30 fps, so someone who looks away
    # and back, in about the same place, stays one face.
    max_missed: int = num(30, 1, 1000)
    # A face of a live source that has not moved nor changed beyond sensor noise for this many seconds is a
    # still face (a poster, a photo on the wall): kept in the events, left out of state, presence and the
    # summary. 0 turns it off.
    still_after: float = num(180.0, 0.0, 86400.0)


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = num(1883, 1, 65535)
    prefix: str = "emotion-edge"
    client_id: str = ""
    username: str = ""
    password_file: str = ""  # or the systemd credential "mqtt-password" in $CREDENTIALS_DIRECTORY
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False
    keepalive: int = num(30, 5, 65535)  # seconds; paho's limit
    qos_events: int = num(0, 0, 2)
    qos_state: int = num(1, 0, 2)
    rate: str = "all"  # "all" | "change" | "max"
    max_rate: float = num(5.0, 0.01, 1000.0)  # events per second when rate = "max"
    queue_size: int = num(100, 1, 100_000)
    stats_interval: float = num(30.0, 1.0, 86400.0)
    # The retained state is republished on every change and at least this often, so it never goes stale.
    state_interval: float = num(10.0, 1.0, 3600.0)
    # The mood summary for dashboards ({prefix}/{device}/summary): every this many seconds.
    summary_interval: float = num(60.0, 5.0, 86400.0)
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    snapshot: bool = False  # publish a JPEG of the annotated frame; off: no image leaves the device
    snapshot_interval: float = num(10.0, 0.1, 86400.0)


@dataclass(frozen=True)
class DisplayConfig:
    preview: str = "auto"  # "auto" | "drm" | "qtgl" | "none"
    scores: bool = True  # small score bars under each label
    http: str = ""  # e.g. "127.0.0.1:8080"; empty: no HTTP view
    http_password_file: str = ""
    http_max_fps: float = num(10.0, 0.1, 60.0)


@dataclass(frozen=True)
class ServiceConfig:
    # Shown as is in Home Assistant; in topics and ids as lower case [a-z0-9_-] ("Living Room" -> living_room).
    # Empty: the host name.
    device: str = ""
    status_interval: float = num(5.0, 0.01, 3600.0)
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
        """The device's id in topics, client ids and Home Assistant ids: [a-z0-9_-] only."""
        return node_id(self.device_name)

    @property
    def device_name(self) -> str:
        """The device's name as the user wrote it (or the host name), for people."""
        return self.service.device.strip() or socket.gethostname()

    def replace(self, section: str, **changes) -> "Config":
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


_CHOICES = {
    ("camera", "luma_range"): ("auto", "full", "limited"),
    ("camera", "replay"): ("recorded", "live"),
    ("classifier", "preprocess"): ("auto", "none", "stretch", "equalize", "denoise-equalize"),
    ("mqtt", "rate"): ("all", "change", "max"),
    ("display", "preview"): ("auto", "drm", "qtgl", "none"),
    ("service", "log_level"): ("debug", "info", "warning", "error"),
}


# Letters NFKD does not take apart, and two common non-Latin alphabets, spelled in ASCII the way Home
# Assistant's slugify (python-slugify with unidecode) spells them: "Küche" -> "kuche", "Кухня" -> "kukhnia".
_TRANSLIT = {
    **dict(zip("ßæøđłþœı", ["ss", "ae", "o", "d", "l", "th", "oe", "i"])),
    **dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюяієїґ",
               ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "i", "k", "l", "m", "n", "o", "p", "r", "s", "t",
                "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "iu", "ia", "i", "ie", "i", "g"])),
    **dict(zip("αβγδεζηθικλμνξοπρσςτυφχψω",
               ["a", "v", "g", "d", "e", "z", "i", "th", "i", "k", "l", "m", "n", "x", "o", "p", "r", "s", "s", "t",
                "y", "f", "ch", "ps", "o"])),
}


def _ascii(name: str) -> str:
    out = []
    for ch in unicodedata.normalize("NFKD", name.lower()):
        if unicodedata.combining(ch):
            continue
        out.append(_TRANSLIT.get(ch, ch))
    return "".join(out)


def node_id(name: str) -> str:
    """A name as one MQTT topic level and a Home Assistant node id ([a-z0-9_-]; MQTT forbids +, # and / in a
    level). A name already in that alphabet is its own id; any other is spelled in ASCII (accents dropped,
    Cyrillic and Greek transliterated, everything else "_") and gets 6 hex digits of its hash, so that two
    different names never share an id: "Living Room" and "living-room", "Büro" and "Bäro" are two devices."""
    name = name.strip()
    if re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        return name
    slug = re.sub(r"[^a-z0-9-]+", "_", _ascii(name)).strip("_-")
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{slug or 'device'}_{digest}"


def legacy_node_id(name: str) -> str:
    """The id emotion-edge 0.1 gave a name (lower case, anything else "_"): what it may have left retained."""
    s = re.sub(r"[^a-z0-9_-]+", "_", name.strip().lower()).strip("_")
    return s or "emotion-edge"


# What MQTT refuses in a UTF-8 string (MQTT 3.1.1 section 1.5.3, 5.0 section 1.5.4): control characters,
# U+0085 among them, and the non-characters; a broker that meets one drops the connection as malformed.
_MQTT_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff\ud800-\udfff]")


def check_mqtt_text(where: str, text: str, limit: int) -> None:
    """A string that goes into a CONNECT packet or a topic: printable, and of a sane length."""
    bad = _MQTT_FORBIDDEN.search(text)
    if bad:
        raise ConfigError(f"{where}: character U+{ord(bad.group()):04X} at position {bad.start()} is not allowed in MQTT "
                          "(brokers drop the connection)")
    if len(text) > limit:
        raise ConfigError(f"{where}: {len(text)} characters, at most {limit}")


def check_topic_prefix(where: str, prefix: str) -> None:
    """A topic prefix: one or more non-empty levels, no wildcards, not a $SYS-like topic."""
    if not prefix or any(not level for level in prefix.split("/")):
        raise ConfigError(f"{where}: {prefix!r}: empty topic level")
    if re.search(r"[+#\x00]", prefix) or prefix.startswith("$"):
        raise ConfigError(f"{where}: {prefix!r}: MQTT wildcards (+ #), NUL and a leading $ are not allowed")


def _check_type(where: str, value, typ):
    if typ is tuple:  # the one structured setting: [detector] masks
        from .masks import MaskError, parse

        try:
            return parse(where, value)
        except MaskError as e:
            raise ConfigError(str(e)) from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


def _section(name: str, cls, raw) -> object:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}]: expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    known = set(fields)
    values = {}
    for key, value in raw.items():
        where = f"{name}.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
        value = _check_type(where, value, hints[key])
        choices = _CHOICES.get((name, key))
        if choices and value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        lo_hi = fields[key].metadata.get("range")
        if lo_hi and not (math.isfinite(value) and lo_hi[0] <= value <= lo_hi[1]):
            raise ConfigError(f"{where}: must be within {lo_hi[0]}..{lo_hi[1]}, got {value!r}")
        values[key] = value
    obj = cls(**values)
    _validate(name, obj)
    return obj


def _validate(name: str, obj) -> None:
    """Rules that span fields; single fields carry their own range or choices."""
    if name == "camera" and (obj.lores_width > obj.width or obj.lores_height > obj.height):
        raise ConfigError("camera.lores_width: the lores stream cannot be larger than the main stream")
    if name == "service" and obj.device.strip() and not any(c.isalnum() for c in obj.device):
        raise ConfigError(f"service.device: {obj.device!r} has no letter or digit to make a name from")
    if name == "mqtt":
        for key, limit in (("prefix", 200), ("discovery_prefix", 200), ("client_id", 200), ("username", 200),
                           ("host", 253)):
            check_mqtt_text(f"mqtt.{key}", getattr(obj, key), limit)
        check_topic_prefix("mqtt.prefix", obj.prefix)
        check_topic_prefix("mqtt.discovery_prefix", obj.discovery_prefix)
        if re.search(r"[+#/\x00]", obj.client_id):
            raise ConfigError(f"mqtt.client_id: {obj.client_id!r}: no + # / or NUL")
        if (obj.cert_file == "") != (obj.key_file == ""):
            raise ConfigError("mqtt.cert_file: cert_file and key_file go together")
    if name == "display" and obj.http:
        parse_hostport(obj.http, "display.http")


def parse_hostport(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
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
    from .files import CONFIG_MAX_BYTES, FileRefused, read_bounded

    try:
        text = read_bounded(p, CONFIG_MAX_BYTES).decode("utf-8")
    except FileRefused as e:
        raise ConfigError(str(e)) from None
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
            elif isinstance(v, (str, tuple)):
                # JSON's strings and arrays are TOML's: control characters escaped, so the output loads back
                s = json.dumps(v)
            else:
                s = repr(v)
            out.append(f"{sf.name} = {s}")
        out.append("")
    return "\n".join(out)
