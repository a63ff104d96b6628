"""MQTT for Home Assistant and dashboards, against a real mosquitto: names Home Assistant accepts, unique
client ids, state that stays true, retained stats, device removal, honest counts over a slow link, the
broker-unreachable log line and the mood summary."""
from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time

import jinja2
import jsonschema
import pytest
from conftest import ROOT, Subscriber, emotion_edge, free_port, spawn

from edge.config import Config, MqttConfig
from edge.sinks import ha

SCHEMAS = {n: json.loads((ROOT / "edge" / "schemas" / f"{n}.json").read_text())
           for n in ("discovery", "state", "stats", "summary")}
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# homeassistant/components/mqtt/discovery.py: TOPIC_MATCHER, after the discovery prefix.
HA_TOPIC = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")
# What Home Assistant's MQTT sensor and binary_sensor schemas need, and what an enum sensor must give.
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}}


def render(template: str, value: dict) -> str:
    return jinja2.Environment().from_string(template).render(value_json=value).strip()


@pytest.mark.parametrize("name", ["Living Room", "kitchen.pi", "cam/1", "raspberrypi", "Küche #2"])
def test_discovery_follows_home_assistant_rules(name):
    cfg = Config().replace("service", device=name)
    mq = MqttConfig(enabled=True, discovery_prefix="homeassistant")
    msgs = ha.messages(mq, cfg.device, cfg.device_name, LABELS, http_url="http://pi.local:8080/")
    uids = [p["unique_id"] for _, p in msgs]
    assert len(set(uids)) == len(uids) == 7
    state = {"faces": 1, "emotion": "happy", "confidence": 0.91, "scores": {k: 0.01 for k in LABELS}, "ts": "x"}
    empty = {"faces": 0, "emotion": None, "confidence": None, "scores": {}, "ts": "x"}
    summary = {"dominant": "sad", "shares": {k: 0.1 for k in LABELS}}
    no_face_summary = {"dominant": None, "shares": None}
    for topic, payload in msgs:
        prefix, _, rest = topic.partition("/")
        assert prefix == "homeassistant"
        m = HA_TOPIC.fullmatch(rest)
        assert m, topic
        assert m["component"] in REQUIRED and REQUIRED[m["component"]] <= set(payload)
        jsonschema.validate(payload, SCHEMAS["discovery"])
        assert payload["device"]["name"] == f"emotion-edge {name}"  # the name as written, for people
        assert payload["device"]["configuration_url"] == "http://pi.local:8080/"
        assert "/" not in cfg.device and "+" not in cfg.device and "#" not in cfg.device
        assert payload["state_topic"].split("/")[1] == cfg.device
        value = summary if payload["state_topic"].endswith("/summary") else \
            {"fps": 9.5} if payload["state_topic"].endswith("/stats") else state
        out = render(payload["value_template"], value)
        if payload["state_topic"].endswith("/summary"):
            # an interval without a face is unknown to Home Assistant ("None"), not 0 % or a made-up mood
            assert render(payload["value_template"], no_face_summary) == "None"
        if m["object_id"] == "confidence":
            assert float(out) == 91 and render(payload["value_template"], empty) == "None"
        if payload.get("device_class") == "enum":
            assert set(payload["options"]) == ({*LABELS, "none"} if m["object_id"] == "emotion" else set(LABELS))
            assert out in payload["options"]
            if payload["state_topic"].endswith("/state"):
                assert render(payload["value_template"], empty) in payload["options"]
                assert json.loads(render(payload["json_attributes_template"], state)) == state["scores"]
        if m["component"] == "binary_sensor":
            assert out == "ON" and render(payload["value_template"], empty) == "OFF"


def mqtt_cfg(tmp_path, port, device, extra="", name="c.toml"):
    p = tmp_path / name
    stats = "" if "stats_interval" in extra else "stats_interval = 1.0\n"
    p.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n{stats}{extra}\n'
                 f'[service]\ndevice = "{device}"\n')
    return p


def retained(port, topic_filter) -> dict:
    """What a new subscriber is given at once: the retained messages, once they stop coming."""
    sub = Subscriber(port, topics=(topic_filter,))
    messages = sub.settle()
    sub.close()
    return {t: p for t, p, r in messages if r and p}


def stop(p):
    p.send_signal(signal.SIGTERM)
    return p.communicate(timeout=30)


def test_a_device_named_like_a_room_appears_under_safe_topics(broker, tmp_path):
    cfg = mqtt_cfg(tmp_path, broker.port, "Living Room")
    sub = Subscriber(broker.port, topics=("emotion-edge/+/events", "homeassistant/#"))
    r = emotion_edge("run", "--config", str(cfg), "--source", "demo:10", "--events", "none", timeout=60)
    assert r.returncode == 0, r.stderr
    from edge.config import node_id

    device = node_id("Living Room")
    assert re.fullmatch(r"living_room_[0-9a-f]{6}", device)
    assert sub.wait_for(lambda: len(sub.on(f"emotion-edge/{device}/events")) == 10, 10)
    configs = [(t, json.loads(p)) for t, p, _ in sub.messages if t.startswith("homeassistant/") and p]
    sub.close()
    assert len(configs) == 7
    assert all(HA_TOPIC.fullmatch(t.split("/", 1)[1]) for t, _ in configs)
    assert {c["device"]["name"] for _, c in configs} == {"emotion-edge Living Room"}


def two_runs(cfg, seconds: float) -> list[str]:
    """Two runs of the same config side by side for ``seconds``; their logs."""
    runs = [spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none") for _ in range(2)]
    try:
        time.sleep(seconds)
    finally:
        logs = [stop(p)[1] for p in runs]
    return logs


def test_two_runs_with_the_same_device_name_do_not_kick_each_other(broker, tmp_path):
    errs = two_runs(mqtt_cfg(tmp_path, broker.port, "raspberrypi"), 8)
    for err in errs:
        assert "MQTT connected" in err and "reconnect" not in err.split("MQTT:")[0], err
        assert "same client id" not in err
    ids = {re.search(r"MQTT connected to \S+ as (\S+)", e).group(1) for e in errs}
    assert len(ids) == 2 and all(i.startswith("emotion-edge-raspberrypi-") for i in ids)


def test_a_taken_client_id_is_named_in_the_log(broker, tmp_path):
    errs = two_runs(mqtt_cfg(tmp_path, broker.port, "pi", 'client_id = "same"'), 12)
    assert any("same client id 'same'" in e for e in errs), errs


def test_client_id_is_stable_per_machine_under_systemd(tmp_path):
    import os

    from edge.sinks import mqtt_client as m

    one, two = tmp_path / "one", tmp_path / "two"
    one.write_text("0123456789abcdef0123456789abcdef\n")
    two.write_text("fedcba9876543210fedcba9876543210\n")
    assert m.machine_suffix(str(one)) == m.machine_suffix(str(one)) != m.machine_suffix(str(two))
    assert "0123456789abcdef" not in m.machine_suffix(str(one))  # the machine id itself stays private
    cfg = MqttConfig()
    service = m.client_id(cfg, "pi", under_systemd=True)
    assert service == m.client_id(cfg, "pi", under_systemd=True) == f"emotion-edge-pi-{m.machine_suffix()}"
    assert m.client_id(cfg, "pi", under_systemd=False) == f"{service}-{os.getpid()}"
    assert m.client_id(MqttConfig(client_id="mine"), "pi") == "mine"


def test_state_is_republished_while_it_stays_the_same_and_stats_are_retained(broker, tmp_path):
    cfg = mqtt_cfg(tmp_path, broker.port, "st", "state_interval = 1.0\nstats_interval = 30.0")
    img = tmp_path / "still.png"
    import cv2
    from skimage import data

    cv2.imwrite(str(img), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(400):  # one face, the same every frame: the state never changes
        (folder / f"{i:04d}.png").symlink_to(img)
    sub = Subscriber(broker.port, topics=("emotion-edge/st/state", "emotion-edge/st/stats"))
    p = spawn("run", "--config", str(cfg), "--source", str(folder), "--events", "none")
    try:
        assert sub.wait_for(lambda: len(sub.on("/st/state")) >= 4, 20), sub.messages
        # stats_interval is 30 s, but the first one is sent on connect, retained.
        assert sub.on("/st/stats")
    finally:
        stop(p)
        p.kill()
    states = [json.loads(pl) for _, pl, _ in sub.on("/st/state")]
    sub.close()
    for s in states:
        jsonschema.validate(s, SCHEMAS["state"])
    assert {(s["faces"], s["emotion"]) for s in states} == {(1, "happy")}
    stats = retained(broker.port, "emotion-edge/st/stats")
    assert stats, "stats must be retained"
    jsonschema.validate(json.loads(stats["emotion-edge/st/stats"]), SCHEMAS["stats"])


def test_forget_removes_the_device_and_discovery_false_clears_it(broker, tmp_path):
    cfg = mqtt_cfg(tmp_path, broker.port, "gone")
    r = emotion_edge("run", "--config", str(cfg), "--source", "demo:5", "--events", "none", timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(retained(broker.port, "homeassistant/#")) == 7
    r = emotion_edge("mqtt", "forget", "--config", str(cfg))
    assert r.returncode == 0 and "cleared" in r.stdout, r.stdout + r.stderr
    assert retained(broker.port, "homeassistant/#") == {}
    assert retained(broker.port, "emotion-edge/gone/#") == {}
    # Announced again, then a run with discovery = false takes it back.
    emotion_edge("run", "--config", str(cfg), "--source", "demo:3", "--events", "none", timeout=60)
    assert len(retained(broker.port, "homeassistant/#")) == 7
    off = mqtt_cfg(tmp_path, broker.port, "gone", "discovery = false", name="off.toml")
    r = emotion_edge("run", "--config", str(off), "--source", "demo:3", "--events", "none", timeout=60)
    assert r.returncode == 0, r.stderr
    assert retained(broker.port, "homeassistant/#") == {}


class SlowProxy:
    """A TCP proxy to the broker that lets ``rate`` bytes per second through towards it: a slow link."""

    def __init__(self, target_port: int, rate: int):
        self.port, self.target, self.rate = free_port(), target_port, rate
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(4)
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(c, b, self.rate), daemon=True).start()
            threading.Thread(target=self._pipe, args=(b, c, None), daemon=True).start()

    def _pipe(self, src, dst, rate):
        try:
            while not self.stopped.is_set():
                data = src.recv(256 if rate else 65536)
                if not data:
                    break
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stopped.set()
        self.server.close()


def test_published_means_the_broker_has_it_over_a_slow_link(broker, tmp_path):
    """Over about 3 KB/s, QoS 1: 'published' counts PUBACKs, so it equals what a subscriber received;
    what was still queued or in flight at shutdown is dropped, and the counts add up to the frames."""
    proxy = SlowProxy(broker.port, rate=3000)
    cfg = mqtt_cfg(tmp_path, proxy.port, "slow", "qos_events = 1\nqueue_size = 20")
    sub = Subscriber(broker.port, topics=("emotion-edge/slow/events",))
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    try:
        time.sleep(8)
        _, err = stop(p)
    finally:
        p.kill()
        proxy.close()
    final = json.loads(retained(broker.port, "emotion-edge/slow/stats")["emotion-edge/slow/stats"])
    received = len(sub.on("/slow/events"))
    sub.close()
    assert final["events_published"] == received, (final, received)
    assert final["events_dropped"] > 0 and final["events_in_flight"] == 0
    m = re.search(r"MQTT: (\d+) events published, (\d+) dropped", err)
    assert m and int(m.group(1)) == received, err


def test_unreachable_broker_is_logged_once_not_per_retry(tmp_path):
    cfg = mqtt_cfg(tmp_path, free_port(), "away")
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    try:
        time.sleep(6)
    finally:
        _, err = stop(p)
    assert err.count("unreachable; retrying") == 1, err


def test_mood_summary_for_dashboards(broker, tmp_path):
    cfg = mqtt_cfg(tmp_path, broker.port, "mood", "summary_interval = 5.0")
    sub = Subscriber(broker.port, topics=("emotion-edge/mood/summary",))
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    try:
        assert sub.wait_for(lambda: sub.on("/mood/summary"), 20)
    finally:
        stop(p)
        p.kill()
    summary = json.loads(sub.on("/mood/summary")[0][1])
    sub.close()
    jsonschema.validate(summary, SCHEMAS["summary"])
    assert summary["faces_seen"] >= 1 and summary["presence_s"] > 2.0
    assert abs(sum(summary["shares"].values()) - 1.0) < 0.01
    assert summary["dominant"] == "happy"  # the astronaut
    assert retained(broker.port, "emotion-edge/mood/summary")


def test_mood_summary_counts_face_time_and_ended_tracks():
    from edge.events import Event, Face
    from edge.sinks.mood import MoodSummary

    def ev(*faces):
        return Event("d", 1, 0.0, 640, 480, tuple(Face(i, (0, 0, 10, 10), e, 0.8,
                                                      {k: (0.8 if k == e else 0.2 / 6) for k in LABELS})
                                                 for i, e in faces), 1.0, 10.0)

    m = MoodSummary(LABELS)
    t = 100.0
    for k in range(11):  # 10 s: face 1 happy throughout, face 2 sad for the first 5 s
        m.add(ev((1, "happy"), (2, "sad")) if k <= 5 else ev((1, "happy")), now=t + k)
    m.add(ev(), now=t + 11)
    s = m.take(now=t + 12)
    assert s["faces_seen"] == 2 and s["presence_s"] == 10.0 and s["face_time_s"] == 15.0
    assert s["dominant"] == "happy" and s["shares"]["happy"] > s["shares"]["sad"] > 0.2
    assert sorted((e["id"], e["dominant"]) for e in s["tracks_ended"]) == [(1, "happy"), (2, "sad")]
    assert m.take(now=t + 20)["dominant"] is None

    # A face missing from a frame or two (the tracker keeps its id for max_missed frames) has not left.
    m = MoodSummary(LABELS)
    for k in range(10):
        m.add(ev() if k in (3, 4) else ev((1, "happy")), now=t + k * 0.1)
    s = m.take(now=t + 1.0)
    assert s["faces_seen"] == 1 and s["tracks_ended"] == []
    m.add(ev((1, "happy")), now=t + 1.1)
    m.add(ev(), now=t + 1.2)
    assert m.take(now=t + 5.0)["tracks_ended"] == [{"id": 1, "dwell_s": 1.1, "dominant": "happy"}]
