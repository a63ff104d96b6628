"""MQTT: per-frame events, retained state and availability, periodic stats and Home Assistant
discovery, through paho-mqtt 2.x.

The capture loop only ever calls ``handle``, which puts the event in a bounded drop-oldest
queue and returns. A publisher thread drains the queue while connected; paho's own network
thread (``loop_start``) connects, retries with backoff (1 s -> 60 s) and reconnects.
"""
from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from .. import __version__
from ..config import MqttConfig
from ..events import Event, iso_utc
from . import DropOldestQueue, Sink

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "mqtt-password"


class MqttConfigError(ValueError):
    pass


def read_password(cfg: MqttConfig) -> str | None:
    """From ``password_file``, else systemd's ``LoadCredential=mqtt-password``; never from argv. An empty
    file means no password (the installer creates one empty, for the user to fill in)."""
    path = None
    if cfg.password_file:
        path = Path(cfg.password_file)
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        cand = Path(os.environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        if cand.is_file():
            path = cand
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n") or None
    except OSError as e:
        raise MqttConfigError(f"mqtt.password_file: cannot read {path}: {e.strerror or e}") from None


def make_client(cfg: MqttConfig, device: str, availability_topic: str | None = None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id or f"emotion-edge-{device}",
                         protocol=mqtt.MQTTv311)
    if cfg.username:
        client.username_pw_set(cfg.username, read_password(cfg))
    elif read_password(cfg) is not None:
        raise MqttConfigError("mqtt.password_file: a password needs mqtt.username")
    if cfg.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            val = getattr(cfg, key)
            if val and not Path(val).is_file():
                raise MqttConfigError(f"mqtt.{key}: {val}: no such file")
        client.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None, keyfile=cfg.key_file or None,
                       cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(cfg.tls_insecure)
    if availability_topic:
        client.will_set(availability_topic, "offline", qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=60)
    return client


def probe(cfg: MqttConfig, device: str, timeout: float = 5.0, roundtrip: bool = False) -> tuple[bool, str]:
    """Connect once and report; used by ``emotion-edge check``. With ``roundtrip``, also publish one
    message to a topic of our own and time it back through the broker (the self-test)."""
    try:
        client = make_client(cfg, device + "-check")
    except MqttConfigError as e:
        return False, str(e)
    result: dict = {}
    done = threading.Event()

    def on_connect(c, u, flags, rc, props=None):
        result["rc"] = rc
        done.set()

    client.on_connect = on_connect
    where = f"{cfg.host}:{cfg.port}"
    try:
        client.connect(cfg.host, cfg.port, keepalive=10)
    except (OSError, ssl.SSLError) as e:
        return False, f"{where}: {e}"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return False, f"{where}: no answer within {timeout:.0f} s"
        rc = result["rc"]
        if rc.is_failure:
            return False, f"{where}: refused: {rc}"
        text = f"{where}{' (TLS)' if cfg.tls else ''}, user {cfg.username or '-'}"
        if roundtrip:
            back = threading.Event()
            topic = f"{cfg.prefix}/{device}/selftest/{os.getpid()}"
            client.on_message = lambda c, u, msg: back.set()
            client.subscribe(topic, qos=1)
            time.sleep(0.2)  # let the SUBACK arrive; the round trip is timed from the publish
            t = time.monotonic()
            client.publish(topic, b"ping", qos=1)
            if not back.wait(timeout):
                return False, f"{text}: published, but nothing came back within {timeout:.0f} s (ACL?)"
            text += f", round trip {1000 * (time.monotonic() - t):.1f} ms"
        return True, text
    finally:
        client.disconnect()
        client.loop_stop()


def rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def soc_temperature() -> float | None:
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000, 1)
    except (OSError, ValueError):
        return None


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, device: str, stats_fn=None):
        self.cfg, self.device, self.stats_fn = cfg, device, stats_fn
        base = f"{cfg.prefix}/{device}"
        self.topics = {k: f"{base}/{k}" for k in ("events", "state", "availability", "stats", "snapshot")}
        self.needs_image = cfg.snapshot
        self.client = make_client(cfg, device, self.topics["availability"])
        # paho keeps its own queue for QoS>0 messages while offline; bound it too.
        self.client.max_queued_messages_set(cfg.queue_size)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.queue = DropOldestQueue(cfg.queue_size)
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()  # guards the counters and the latest state below
        self.published = 0
        self.publish_failed = 0
        self.connects = 0
        self._state: dict | None = None
        self._state_key = None
        self._state_dirty = False
        self._last_key = None
        self._last_sent = 0.0
        self._last_snapshot = 0.0
        self._last_error = None
        self._threads: list[threading.Thread] = []
        self.started = time.monotonic()

    # -- paho callbacks (paho's network thread) ---------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            msg = f"MQTT broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason_code}"
            if msg != self._last_error:
                log.error("%s; retrying", msg)
                self._last_error = msg
            if self.cfg.username:
                # Pick up a corrected password file without a restart.
                try:
                    client.username_pw_set(self.cfg.username, read_password(self.cfg))
                except MqttConfigError as e:
                    log.error("%s", e)
            return
        self._last_error = None
        with self._lock:
            self.connects += 1
            n = self.connects
        log.info("MQTT connected to %s:%d%s", self.cfg.host, self.cfg.port, "" if n == 1 else f" (reconnect {n - 1})")
        client.publish(self.topics["availability"], "online", qos=1, retain=True)
        if self.cfg.discovery:
            client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
            self._publish_discovery()
        with self._lock:
            self._state_dirty = self._state is not None
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self.stopping.is_set():
            log.warning("MQTT disconnected from %s:%d (%s); reconnecting", self.cfg.host, self.cfg.port, reason_code)

    def _on_message(self, client, userdata, msg):
        if msg.topic == f"{self.cfg.discovery_prefix}/status" and msg.payload.strip() == b"online":
            # Home Assistant restarted: it forgot non-retained state; announce everything again.
            log.info("Home Assistant is online: re-sending discovery")
            client.publish(self.topics["availability"], "online", qos=1, retain=True)
            self._publish_discovery()
            with self._lock:
                self._state_dirty = self._state is not None

    # -- Home Assistant discovery --------------------------------------------------------------
    def discovery_messages(self) -> list[tuple[str, dict]]:
        dev = {"identifiers": [f"emotion-edge-{self.device}"], "name": f"emotion-edge {self.device}",
               "model": "emotion-edge", "manufacturer": "emotion-edge", "sw_version": __version__}
        common = {"availability_topic": self.topics["availability"], "payload_available": "online",
                  "payload_not_available": "offline", "device": dev}
        sensors = [
            ("emotion", "Emotion", self.topics["state"], "{{ value_json.emotion if value_json.emotion else 'none' }}",
             {"icon": "mdi:emoticon-outline"}),
            ("faces", "Faces", self.topics["state"], "{{ value_json.faces }}",
             {"icon": "mdi:account-multiple", "state_class": "measurement"}),
            ("confidence", "Confidence", self.topics["state"], "{{ (value_json.confidence * 100) | round(0) }}",
             {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:percent"}),
            ("fps", "Frame rate", self.topics["stats"], "{{ value_json.fps }}",
             {"unit_of_measurement": "fps", "state_class": "measurement", "entity_category": "diagnostic",
              "icon": "mdi:speedometer"}),
        ]
        out = []
        for key, name, topic, tpl, extra in sensors:
            uid = f"emotion_edge_{self.device}_{key}".replace("-", "_")
            # default_entity_id replaced object_id in Home Assistant 2025.10 (object_id was removed in 2026.4).
            payload = {"name": name, "unique_id": uid, "default_entity_id": f"sensor.{uid}", "state_topic": topic,
                       "value_template": tpl, **extra, **common}
            out.append((f"{self.cfg.discovery_prefix}/sensor/emotion_edge_{self.device}/{key}/config".replace("-", "_"),
                        payload))
        return out

    def _publish_discovery(self):
        for topic, payload in self.discovery_messages():
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)

    # -- the pipeline side (capture thread): never blocks -------------------------------------
    def start(self):
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()
        for target, name in ((self._publisher, "mqtt-publish"), (self._stats_loop, "mqtt-stats")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _wanted(self, event: Event) -> bool:
        rate = self.cfg.rate
        if rate == "all":
            return True
        now = time.monotonic()
        if rate == "change":
            key = tuple(sorted((f.id, f.emotion) for f in event.faces))
            if key == self._last_key:
                return False
            self._last_key = key
            return True
        if now - self._last_sent >= 1.0 / self.cfg.max_rate:
            self._last_sent = now
            return True
        return False

    def handle(self, event: Event, frame) -> None:
        big = event.largest
        state = {"faces": len(event.faces), "emotion": big.emotion if big else None,
                 "confidence": round(big.confidence, 3) if big else 0.0, "ts": event.ts}
        key = (state["faces"], state["emotion"])
        with self._lock:
            self._state = state
            if key != self._state_key:
                self._state_key = key
                self._state_dirty = True
        if self._wanted(event):
            self.queue.put(("events", event.to_json(), self.cfg.qos_events, False))
        if self.cfg.snapshot and frame.main is not None and \
                time.monotonic() - self._last_snapshot >= self.cfg.snapshot_interval:
            self._last_snapshot = time.monotonic()
            import cv2

            from ..draw import annotate_bgr

            ok, jpg = cv2.imencode(".jpg", annotate_bgr(frame.main, event), [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                self.queue.put(("snapshot", jpg.tobytes(), 0, True))

    # -- publisher thread ----------------------------------------------------------------------
    def _publisher(self):
        while not self.stopping.is_set():
            if not self.connected.wait(0.5):
                continue
            with self._lock:
                state = self._state if self._state_dirty else None
                self._state_dirty = False
            if state is not None:
                self.client.publish(self.topics["state"], json.dumps(state), qos=self.cfg.qos_state, retain=True)
            item = self.queue.get(timeout=0.2)
            if item is None:
                continue
            kind, payload, qos, retain = item
            info = self.client.publish(self.topics[kind], payload, qos=qos, retain=retain)
            with self._lock:
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    self.published += 1
                else:
                    self.publish_failed += 1

    def stats(self) -> dict:
        snap = self.stats_fn() if self.stats_fn else {}
        with self._lock:
            published, failed, connects = self.published, self.publish_failed, self.connects
        d = {"ts": iso_utc(time.time()), "fps": snap.get("fps", 0.0), "frames": snap.get("frames", 0),
             "bad_frames": snap.get("bad_frames", 0), "stage_ms": snap.get("stage_ms", {}),
             "events_published": published, "events_dropped": self.queue.dropped + failed,
             "queue": len(self.queue), "reconnects": max(0, connects - 1),
             "uptime_s": round(time.monotonic() - self.started, 1), "rss_mb": rss_mb()}
        temp = soc_temperature()
        if temp is not None:
            d["soc_temp_c"] = temp
        return d

    def _stats_loop(self):
        while not self.stopping.wait(self.cfg.stats_interval):
            if self.connected.is_set():
                self.client.publish(self.topics["stats"], json.dumps(self.stats()), qos=0, retain=False)

    def close(self):
        # Flush what is queued (briefly), then say goodbye properly: "offline", retained.
        deadline = time.monotonic() + 2.0
        while len(self.queue) and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.stopping.set()
        for t in self._threads:
            t.join(timeout=2)
        if self.connected.is_set():
            self.client.publish(self.topics["stats"], json.dumps(self.stats()), qos=0)
            info = self.client.publish(self.topics["availability"], "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        log.info("MQTT: %d events published, %d dropped, %d reconnects", self.published,
                 self.queue.dropped + self.publish_failed, max(0, self.connects - 1))
