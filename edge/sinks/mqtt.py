"""MQTT: per-frame events, retained state, availability, stats and the mood summary, through paho-mqtt 2.x.
The connection (ids, credentials, TLS) is ``mqtt_client``'s; Home Assistant discovery ``ha``'s; system metrics
``edge.metrics``'.

The capture loop only ever calls ``handle``, which updates the state, feeds the summary and puts the event in
a bounded drop-oldest queue, and returns. A publisher thread drains the queue while connected, publishes the
state and the summary when due and encodes snapshots; paho's own network thread (``loop_start``) connects,
retries with backoff (1 s -> 60 s) and reconnects.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time

import paho.mqtt.client as mqtt

from ..config import MqttConfig
from ..events import Event, iso_utc
from ..metrics import rss_mb, soc_temperature
from . import DropOldestQueue, Sink, ha
from .mood import MoodSummary
from .mqtt_client import MqttConfigError, client_id, make_client, read_password

log = logging.getLogger(__name__)

# While the broker stays unreachable, one log line now and then, not one per retry.
UNREACHABLE_LOG_INTERVAL = 300.0
# A connection the broker closes sooner than this after accepting it counts as taken over.
SHORT_CONNECTION_S = 10.0
# How long after the broker acknowledged the subscription to the device's own records (which it sends right
# behind the acknowledgement) this run waits before going online.
RETAINED_WAIT_S = 0.1
# Seconds from start to the first mood summary.
FIRST_SUMMARY_S = 10.0


class MqttSink(Sink):
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, device: str, stats_fn=None, labels=(), device_name: str | None = None,
                 http_url: str | None = None):
        self.cfg, self.device, self.stats_fn = cfg, device, stats_fn
        self.device_name, self.http_url = device_name or device, http_url
        self.labels = tuple(labels) or ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
        self.topics = ha.topics(cfg, device)
        self.needs_image = cfg.snapshot
        self.client = make_client(cfg, device, self.topics["availability"])
        self.client_id = client_id(cfg, device)
        # paho keeps its own queue for QoS>0 messages while offline; bound it too.
        self.client.max_queued_messages_set(cfg.queue_size)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.queue = DropOldestQueue(cfg.queue_size)
        self.mood = MoodSummary(self.labels)
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()  # guards the counters and the latest state below
        # Events handed to paho and not yet written (QoS 0) or acknowledged (QoS 1, 2): published counts only
        # those that were, so a slow link shows as in-flight and then dropped, not as published.
        self._in_flight: collections.deque = collections.deque()
        self.published = 0
        self.publish_failed = 0
        self.loop_errors = 0  # exceptions the publisher and stats threads survived
        self._loop_error_logged = -UNREACHABLE_LOG_INTERVAL
        self.dropped_at_exit = 0
        self.connects = 0
        self._state: dict | None = None
        self._state_key = None
        self._state_dirty = False
        self._state_sent = 0.0
        self._stats_now = False
        # The first summary comes soon after start (a dashboard has a value within seconds), then one per interval.
        self._summary_due = time.monotonic() + min(FIRST_SUMMARY_S, cfg.summary_interval)
        self._last_summary: str | None = None
        self._live = False  # a first frame went through: this instance is running, not just starting
        self._last_key = None
        self._last_sent = 0.0
        self._last_snapshot = 0.0
        self._last_error = None
        self._unreachable_logged = -UNREACHABLE_LOG_INTERVAL
        self._connected_at = 0.0
        self._short = 0
        self._takeover_warned = False
        self._threads: list[threading.Thread] = []
        self.started = time.monotonic()
        self._announced = False
        self._subscribed_at: float | None = None
        self._records_mid = None
        self._availability: str | None = None
        self._other: dict | None = None
        self._duplicate_warned = False
        self._yielding = False  # silent: another live instance holds the device name
        self.instance = {"id": f"{self.client_id}-{os.getpid()}-{time.time_ns():x}", "host": socket.gethostname(),
                         "pid": os.getpid(), "started": iso_utc(time.time())}
        self.instance_id = self.instance["id"]

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
        self._unreachable_logged = -UNREACHABLE_LOG_INTERVAL
        self._connected_at = time.monotonic()
        with self._lock:
            self.connects += 1
            n = self.connects
        log.info("MQTT connected to %s:%d as %s%s", self.cfg.host, self.cfg.port, self.client_id,
                 "" if n == 1 else f" (reconnect {n - 1})")
        # "online" only once this run is live and no other live run holds the name (_announce, on the publisher
        # thread): a run that fails to start must not touch the device a healthy one serves.
        with self._lock:
            self._announced = False
            self._subscribed_at = None
            _, self._records_mid = client.subscribe([(self.topics["availability"], 1), (self.topics["instance"], 1)])
        if self.cfg.discovery:
            client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
        with self._lock:
            self._state_dirty = self._state is not None
            self._stats_now = True  # a retained value at once, not after a whole stats interval
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        # The broker sends the retained records right behind this acknowledgement.
        with self._lock:
            if mid == self._records_mid:
                self._subscribed_at = time.monotonic()

    def _on_connect_fail(self, client, userdata):
        # A broker that was down, not a client that took our id over (that reconnects at the first try).
        self._short = 0
        now = time.monotonic()
        if now - self._unreachable_logged >= UNREACHABLE_LOG_INTERVAL:
            self._unreachable_logged = now
            log.warning("MQTT broker %s:%d unreachable; retrying (logged again every %.0f min while it stays so)",
                        self.cfg.host, self.cfg.port, UNREACHABLE_LOG_INTERVAL / 60)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        was = self.connected.is_set()
        self.connected.clear()
        if not was or self.stopping.is_set():
            return
        lasted = time.monotonic() - self._connected_at
        self._short = self._short + 1 if lasted < SHORT_CONNECTION_S else 0
        if self._short >= 3 and not self._takeover_warned:
            self._takeover_warned = True
            log.error("MQTT: the broker closed the connection right after accepting it %d times: another client "
                      "is probably connected with the same client id %r (two devices with the same [service] "
                      "device, or [mqtt] client_id set alike); give each its own", self._short, self.client_id)
        elif not self._takeover_warned:
            log.warning("MQTT disconnected from %s:%d (%s); reconnecting", self.cfg.host, self.cfg.port, reason_code)

    def _on_message(self, client, userdata, msg):
        if msg.topic == self.topics["instance"]:
            self._on_instance(msg.payload)
            return
        if msg.topic == self.topics["availability"]:
            self._on_availability(msg.payload.decode(errors="replace"), msg.retain)
            return
        if msg.topic == f"{self.cfg.discovery_prefix}/status" and msg.payload.strip() == b"online":
            # Home Assistant restarted: it forgot non-retained state; announce everything again.
            if not self._announced:
                return
            log.info("Home Assistant is online: re-sending discovery")
            client.publish(self.topics["availability"], "online", qos=1, retain=True)
            self._publish_discovery()
            with self._lock:
                self._state_dirty = self._state is not None
                self._stats_now = True

    # -- one device per name ------------------------------------------------------------------
    # Every run that goes live publishes, retained, who it is ({prefix}/{device}/instance) next to "online".
    # A run that finds another one's record while the device is online stays silent (one clear line), and
    # takes over when that one says offline; a live run that reads "offline" it did not send (a stopped
    # duplicate, a stale last will) says "online" again.
    def _on_instance(self, payload: bytes) -> None:
        try:
            other = json.loads(payload) if payload else None
        except ValueError:
            other = None
        with self._lock:
            self._other = other if other and other.get("id") != self.instance_id else None
            foreign = self._other is not None and self._announced
        if foreign:
            self._warn_duplicate(self._other)

    def _on_availability(self, value: str, retained: bool) -> None:
        with self._lock:
            self._availability = value
            heal = value == "offline" and self._announced and not self.stopping.is_set()
            if value == "offline":
                self._other = None  # whoever held the name is gone
        if heal:
            log.warning("MQTT: something said this device (%s) is offline while it runs (another instance stopping, "
                        "or an old last will): online again", self.device)
            self.client.publish(self.topics["availability"], "online", qos=1, retain=True)

    def _warn_duplicate(self, other: dict) -> None:
        if self._duplicate_warned:
            return
        self._duplicate_warned = True
        log.error("MQTT: another emotion-edge is live as device %r (%s, pid %s, started %s): this one stays silent "
                  "on MQTT until it stops; give each its own [service] device", self.device, other.get("host", "?"),
                  other.get("pid", "?"), other.get("started", "?"))

    def _announce(self) -> bool:
        """On the publisher thread, once live and the retained records had time to arrive: True when this
        run may publish for the device."""
        with self._lock:
            if self._announced:
                return True
            if not self._live or self._subscribed_at is None or time.monotonic() - self._subscribed_at < RETAINED_WAIT_S:
                return False
            other = self._other if self._availability == "online" else None
        with self._lock:
            self._yielding = other is not None
        if other is not None:
            self._warn_duplicate(other)
            return False
        self.client.publish(self.topics["instance"], json.dumps(self.instance), qos=1, retain=True)
        self.client.publish(self.topics["availability"], "online", qos=1, retain=True)
        self._publish_discovery()
        with self._lock:
            self._announced = True
            self._state_dirty = self._state is not None
            self._stats_now = True
        if self._duplicate_warned:
            log.info("MQTT: the other instance of %r stopped; this one publishes now", self.device)
            self._duplicate_warned = False
        return True

    # -- Home Assistant discovery --------------------------------------------------------------
    def discovery_messages(self) -> list[tuple[str, dict]]:
        return ha.messages(self.cfg, self.device, self.device_name, self.labels, self.http_url)

    def _publish_discovery(self):
        # discovery = false clears what an earlier run announced, so the entities go instead of going stale.
        for topic, payload in self.discovery_messages():
            self.client.publish(topic, json.dumps(payload) if self.cfg.discovery else b"", qos=1, retain=True)
        # Home Assistant starts the summary entities' expire_after afresh on a discovery message: the last
        # summary again, so Mood and Happy share do not go unavailable until the next interval.
        if self._last_summary is not None:
            self.client.publish(self.topics["summary"], self._last_summary, qos=1, retain=True)

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
        people = event.people  # a still face (a poster) is in the events, not in the state or presence
        big = max(people, key=lambda f: f.box[2] * f.box[3], default=None)
        # Two decimals: Home Assistant stores an attribute row whenever a score changes, and the third
        # decimal is noise.
        state = {"faces": len(people), "emotion": big.emotion if big else None,
                 "confidence": round(big.confidence, 2) if big else None,
                 "scores": {k: round(v, 2) for k, v in big.scores.items()} if big else {}, "ts": event.ts}
        # Sent at once when what a dashboard shows as a state changes (the count, the emotion); the confidence
        # and scores of a steady face ride on the state_interval heartbeat.
        key = (state["faces"], state["emotion"])
        with self._lock:
            self._state = state
            if key != self._state_key:
                self._state_key = key
                self._state_dirty = True
            self._live = True
        self.mood.add(event)
        if self._wanted(event):
            self.queue.put(("events", event.to_json(), self.cfg.qos_events, False))
        if self.cfg.snapshot and frame.main is not None and \
                time.monotonic() - self._last_snapshot >= self.cfg.snapshot_interval:
            self._last_snapshot = time.monotonic()
            self.queue.put(("snapshot", (frame.main, event), 0, True))  # encoded on the publisher thread

    # -- publisher thread ----------------------------------------------------------------------
    def _settle(self) -> None:
        """Move events paho has written (QoS 0) or the broker acknowledged (QoS 1, 2) to published, and those
        it gave up on to dropped: on a reconnect paho marks every QoS-0 packet it had not yet written as lost
        (Client.reconnect: ``rc = MQTT_ERR_CONN_LOST``), and their ``is_published()`` then raises."""
        with self._lock:
            while self._in_flight:
                try:
                    if not self._in_flight[0].is_published():
                        break
                    self.published += 1
                except (RuntimeError, ValueError):
                    self.publish_failed += 1
                self._in_flight.popleft()

    def _publish_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = self._state is not None and now - self._state_sent >= self.cfg.state_interval
            state = self._state if (self._state_dirty or due) else None
            self._state_dirty = False
            if state is not None:
                self._state_sent = now
        if state is not None:
            self.client.publish(self.topics["state"], json.dumps(state), qos=self.cfg.qos_state, retain=True)
        if now >= self._summary_due:
            self._summary_due = now + self.cfg.summary_interval
            self._publish_summary()

    def _publish_summary(self) -> mqtt.MQTTMessageInfo:
        summary = json.dumps({"ts": iso_utc(time.time()), **self.mood.take()})
        self._last_summary = summary
        return self.client.publish(self.topics["summary"], summary, qos=1, retain=True)

    def _publisher(self):
        while not self.stopping.is_set():
            if not self.connected.wait(0.5):
                continue
            try:
                if not self._announce():
                    self._discard_while_silent()
                    continue
                self._publish_due()
                self._settle()
                item = self.queue.get(timeout=0.2)
                if item is not None:
                    self._publish_item(*item)
            except Exception as e:  # whatever paho raises mid-reconnect: count it, never die
                self._loop_error("publisher", e)

    def _discard_while_silent(self) -> None:
        """Not live yet: the queue waits. Live but silent beside another instance: what comes is dropped and
        counted."""
        with self._lock:
            yielding = self._yielding
        if not yielding:
            time.sleep(0.05)
            return
        item = self.queue.get(timeout=0.2)
        if item is not None and item[0] == "events":
            with self._lock:
                self.publish_failed += 1

    def _publish_item(self, kind, payload, qos, retain) -> None:
        if kind == "snapshot":
            payload = _snapshot_jpeg(*payload)
            if payload is None:
                return
        try:
            info = self.client.publish(self.topics[kind], payload, qos=qos, retain=retain)
        except Exception:
            if kind == "events":
                with self._lock:
                    self.publish_failed += 1
            raise
        with self._lock:
            if kind != "events":
                return
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.publish_failed += 1
            else:  # NO_CONN: queued by paho for the reconnect; it settles as published or lost
                self._in_flight.append(info)

    def _loop_error(self, where: str, e: Exception) -> None:
        with self._lock:
            self.loop_errors += 1
        now = time.monotonic()
        if now - self._loop_error_logged >= UNREACHABLE_LOG_INTERVAL:
            self._loop_error_logged = now
            log.warning("MQTT %s: %s: %s (carrying on; logged again in %.0f min at most)", where,
                        type(e).__name__, e, UNREACHABLE_LOG_INTERVAL / 60)

    def stats(self) -> dict:
        self._settle()
        snap = self.stats_fn() if self.stats_fn else {}
        with self._lock:
            published, failed, connects, errors = self.published, self.publish_failed, self.connects, self.loop_errors
            in_flight, at_exit = len(self._in_flight), self.dropped_at_exit
        fps = snap.get("fps", 0.0)
        d = {"ts": iso_utc(time.time()), "fps": fps if fps else None, "frames": snap.get("frames", 0),
             "bad_frames": snap.get("bad_frames", 0), "stage_ms": snap.get("stage_ms", {}),
             "events_published": published, "events_in_flight": in_flight,
             "events_dropped": self.queue.dropped + failed + at_exit,
             "queue": len(self.queue), "reconnects": max(0, connects - 1), "link_errors": errors,
             "uptime_s": round(time.monotonic() - self.started, 1), "rss_mb": rss_mb()}
        temp = soc_temperature()
        if temp is not None:
            d["soc_temp_c"] = temp
        return d

    def _stats_loop(self):
        next_at = time.monotonic() + self.cfg.stats_interval
        while not self.stopping.wait(0.2):
            with self._lock:
                now_wanted, self._stats_now = self._stats_now, False
            if now_wanted or time.monotonic() >= next_at:
                next_at = time.monotonic() + self.cfg.stats_interval
                if self.connected.is_set() and self._announced:
                    # Retained, so a dashboard or Home Assistant that (re)connects has a value at once.
                    try:
                        self.client.publish(self.topics["stats"], json.dumps(self.stats()), qos=0, retain=True)
                    except Exception as e:
                        self._loop_error("stats", e)

    def close(self):
        # Flush what is queued (briefly), then wait for what paho holds to be written or acknowledged, then
        # say goodbye properly: final stats and "offline", retained.
        deadline = time.monotonic() + 2.0
        while len(self.queue) and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.stopping.set()
        for t in self._threads:
            t.join(timeout=2)
        deadline = time.monotonic() + 5.0
        while self.connected.is_set() and time.monotonic() < deadline:
            self._settle()
            with self._lock:
                if not self._in_flight:
                    break
            time.sleep(0.02)
        self._settle()
        with self._lock:
            # What never reached the broker: still queued here, or handed to paho and never acknowledged.
            self.dropped_at_exit = len(self.queue) + len(self._in_flight)
            self._in_flight.clear()
        if self.connected.is_set() and self._announced:
            try:
                if self.mood.frames:  # the partial interval since the last summary is not lost
                    self._publish_summary()
                self.client.publish(self.topics["stats"], json.dumps(self.stats()), qos=1, retain=True)
                info = self.client.publish(self.topics["availability"], "offline", qos=1, retain=True)
                info.wait_for_publish(timeout=5.0)
            except Exception as e:  # the link went at the last moment: the broker's last will says offline
                log.warning("MQTT: could not say offline (%s); the broker's last will does", e)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
        st = self.stats()
        log.info("MQTT: %d events published, %d dropped, %d reconnects", st["events_published"],
                 st["events_dropped"], st["reconnects"])


def _snapshot_jpeg(image, event) -> bytes | None:
    import cv2

    from ..draw import annotate_bgr

    ok, jpg = cv2.imencode(".jpg", annotate_bgr(image, event), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return jpg.tobytes() if ok else None
