"""MQTT against a real mosquitto started by the tests on a free loopback port."""
import contextlib
import json
import signal
import time

import jsonschema
import pytest
from conftest import ROOT, Broker, Subscriber, emotion_edge, spawn

SCHEMAS = {n: json.loads((ROOT / "edge" / "schemas" / f"{n}.json").read_text())
           for n in ("event", "state", "stats", "availability", "discovery")}
CHECKER = jsonschema.FormatChecker()


def valid(kind, payload):
    value = payload.decode() if kind == "availability" else json.loads(payload)
    jsonschema.validate(value, SCHEMAS[kind], format_checker=CHECKER)
    return value


def mqtt_config(tmp_path, port, device="t", extra=""):
    p = tmp_path / "config.toml"
    p.write_text(f'[mqtt]\nenabled = true\nport = {port}\nstats_interval = 1.0\n{extra}\n'
                 f'[service]\ndevice = "{device}"\nstatus_interval = 1.0\n')
    return p


def stop(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    return p.communicate(timeout=30)


def test_events_state_stats_on_documented_topics(broker, tmp_path, demo_video):
    sub = Subscriber(broker.port)
    cfg = mqtt_config(tmp_path, broker.port, "kitchen")
    r = emotion_edge("run", "--config", str(cfg), "--source", str(demo_video), "--events", "none")
    assert r.returncode == 0, r.stderr
    sub.wait_for(lambda: sub.on("/availability") and sub.on("/availability")[-1][1] == b"offline", 10)
    sub.close()
    events = [valid("event", p) for _, p, _ in sub.on("emotion-edge/kitchen/events")]
    assert len(events) == 40  # one per processed frame, none dropped
    assert [e["seq"] for e in events] == list(range(1, 41))
    assert any(e["faces"] for e in events)
    states = [valid("state", p) for _, p, _ in sub.on("emotion-edge/kitchen/state")]
    assert states and states[-1]["faces"] in (0, 1)
    stats = [valid("stats", p) for _, p, _ in sub.on("emotion-edge/kitchen/stats")]
    assert stats[-1]["events_published"] == 40 and stats[-1]["events_dropped"] == 0
    avail = [valid("availability", p) for _, p, _ in sub.on("emotion-edge/kitchen/availability")]
    assert avail[0] == "online" and avail[-1] == "offline"


def test_rate_change_sends_only_changes(broker, tmp_path, demo_video):
    sub = Subscriber(broker.port)
    cfg = mqtt_config(tmp_path, broker.port, "r", 'rate = "change"')
    r = emotion_edge("run", "--config", str(cfg), "--source", str(demo_video), "--events", "none")
    assert r.returncode == 0, r.stderr
    sub.settle()
    events = [json.loads(p) for _, p, _ in sub.on("/r/events")]
    assert 1 <= len(events) < 40
    keys = [tuple(sorted((f["id"], f["emotion"]) for f in e["faces"])) for e in events]
    assert all(a != b for a, b in zip(keys, keys[1:]))


def retained(port, topic, timeout=5.0):
    """What a new subscriber gets for a retained topic."""
    sub = Subscriber(port, topics=(topic,))
    sub.wait_for(lambda: sub.messages, timeout)
    sub.close()
    return [(p, r) for _, p, r in sub.messages]


def test_availability_online_then_offline_on_sigterm(broker, tmp_path):
    cfg = mqtt_config(tmp_path, broker.port, "a")
    sub = Subscriber(broker.port, topics=("emotion-edge/a/availability",))
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    try:
        assert sub.wait_for(lambda: sub.on("/a/availability"), 30)
        sub.close()
        assert retained(broker.port, "emotion-edge/a/availability") == [(b"online", True)]
        _, err = stop(p)
        assert p.returncode == 0, err
    finally:
        p.kill()
    assert retained(broker.port, "emotion-edge/a/availability") == [(b"offline", True)]


def test_last_will_after_kill_9(broker, tmp_path):
    cfg = mqtt_config(tmp_path, broker.port, "k")
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    sub = Subscriber(broker.port, topics=("emotion-edge/k/availability",))
    try:
        assert sub.wait_for(lambda: [m for m in sub.messages if m[1] == b"online"], 15)
        p.kill()
        p.wait()
        assert sub.wait_for(lambda: sub.messages[-1][1] == b"offline", 15)
    finally:
        sub.close()
    assert retained(broker.port, "emotion-edge/k/availability") == [(b"offline", True)]


def wait_running(events_file, timeout=60.0):
    """Until the runtime has processed a first frame (its events file has a line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events_file.exists() and events_file.read_text().count("\n") >= 1:
            return
        time.sleep(0.1)
    raise AssertionError("the runtime processed no frame")


@contextlib.contextmanager
def runtime_during_outage(tmp_path, broker, device):
    """A runtime with a 10-event queue, already processing frames; stopped by SIGTERM at the end,
    which must exit 0. Yields the process; its stderr is in ``p.err`` after the block."""
    cfg = mqtt_config(tmp_path, broker.port, device, "queue_size = 10")
    local = tmp_path / "events.jsonl"
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", str(local))
    try:
        wait_running(local)
        yield p
        _, p.err = stop(p)
        assert p.returncode == 0, p.err
    finally:
        p.kill()
        broker.stop()


def test_broker_started_late(tmp_path):
    b = Broker(tmp_path)
    with runtime_during_outage(tmp_path, b, "late") as p:
        time.sleep(3)  # the outage itself: the run keeps going through it
        assert p.poll() is None, "the runtime must run without a broker"
        b.start()
        sub = Subscriber(b.port)
        assert sub.wait_for(lambda: len(sub.on("/late/events")) > 20, 60), "events never arrived"
        first_seq = json.loads(sub.on("/late/events")[0][1])["seq"]
        assert first_seq > 1  # frames were processed all along; the oldest did not fit the queue
        assert sub.wait_for(lambda: sub.on("/late/stats"), 10)
        stats = json.loads(sub.on("/late/stats")[-1][1])
        assert stats["events_dropped"] >= first_seq - 1  # and every one of them was counted
        assert stats["frames"] > first_seq
        sub.close()


def test_broker_restart_mid_run(tmp_path):
    b = Broker(tmp_path).start()
    with runtime_during_outage(tmp_path, b, "rs") as p:
        sub = Subscriber(b.port)
        assert sub.wait_for(lambda: len(sub.on("/rs/events")) > 10, 20)
        last_before = json.loads(sub.on("/rs/events")[-1][1])["seq"]
        sub.close()
        b.stop()
        time.sleep(2)  # the outage itself
        assert p.poll() is None, "the runtime must survive the broker going away"
        b.start()
        sub = Subscriber(b.port)
        assert sub.wait_for(lambda: len(sub.on("/rs/events")) > 10, 40), "events did not resume"
        resumed = json.loads(sub.on("/rs/events")[0][1])["seq"]
        assert resumed > last_before + 1  # frames kept flowing during the outage, the oldest were dropped
        assert sub.wait_for(lambda: any(json.loads(m[1])["reconnects"] >= 1 for m in sub.on("/rs/stats")), 10)
        stats = json.loads(sub.on("/rs/stats")[-1][1])
        assert stats["events_dropped"] > 0  # the bounded queue overflowed and said so
        assert retained(b.port, "emotion-edge/rs/availability") == [(b"online", True)]
        sub.close()
    assert "reconnect" in p.err.lower()


def test_password_wrong_then_fixed(tmp_path):
    b = Broker(tmp_path, password="s3cret-pass").start()
    pw = tmp_path / "mqtt-password"
    pw.write_text("wrong\n")
    cfg = mqtt_config(tmp_path, b.port, "pw", f'username = "edge"\npassword_file = "{pw}"')
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    try:
        sub = Subscriber(b.port, username="edge", password="s3cret-pass")
        time.sleep(4)
        assert not sub.on("/pw/events")
        pw.write_text("s3cret-pass\n")
        assert sub.wait_for(lambda: len(sub.on("/pw/events")) > 5, 40), "no events after fixing the password"
        sub.close()
        _, err = stop(p)
    finally:
        p.kill()
        b.stop()
    assert "refused the connection: Not authorized" in err
    assert "s3cret-pass" not in err and "wrong" not in err  # the password is never logged


def test_password_from_systemd_credentials(tmp_path):
    b = Broker(tmp_path, password="cred-pass").start()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("cred-pass")
    cfg = mqtt_config(tmp_path, b.port, "cr", 'username = "edge"')
    from conftest import cli_env

    try:
        sub = Subscriber(b.port, username="edge", password="cred-pass")
        r = emotion_edge("run", "--config", str(cfg), "--source", "demo:20", "--events", "none",
                         env=cli_env(CREDENTIALS_DIRECTORY=creds))
        assert r.returncode == 0, r.stderr
        assert sub.wait_for(lambda: len(sub.on("/cr/events")) == 20, 10)
        sub.close()
    finally:
        b.stop()


def test_home_assistant_discovery_and_resend(broker, tmp_path):
    cfg = mqtt_config(tmp_path, broker.port, "ha")
    p = spawn("run", "--config", str(cfg), "--source", "demo:100000", "--events", "none")
    try:
        sub = Subscriber(broker.port, topics=("homeassistant/#",))
        assert sub.wait_for(lambda: len(sub.messages) >= 7, 15)
        configs = {t: valid("discovery", pl) for t, pl, _ in sub.messages if t.endswith("/config")}
        assert set(configs) == {f"homeassistant/sensor/emotion_edge_ha/{k}/config"
                                for k in ("emotion", "faces", "confidence", "mood", "happy_share", "fps")} | {
            "homeassistant/binary_sensor/emotion_edge_ha/present/config"}
        for c in configs.values():
            assert c["availability_topic"] == "emotion-edge/ha/availability"
            assert c["device"]["identifiers"] == ["emotion-edge-ha"]
        assert retained(broker.port, "homeassistant/sensor/emotion_edge_ha/emotion/config")[0][1] is True
        n = len(sub.messages)
        sub.client.publish("homeassistant/status", "online", qos=1)
        assert sub.wait_for(lambda: len([m for m in sub.messages[n:] if m[0].endswith("/config")]) >= 7, 10)
        sub.close()
    finally:
        stop(p)
        p.kill()


def test_check_reports_broker(broker, tmp_path):
    cfg = mqtt_config(tmp_path, broker.port, "chk")
    r = emotion_edge("check", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"ok   broker   localhost:{broker.port}" in r.stdout
    assert "ok   cascade" in r.stdout and "haarcascade_frontalface_alt.xml for small and turned boxes" in r.stdout
    broker.stop()
    r = emotion_edge("check", "--config", str(cfg), "--timeout", "2")
    assert r.returncode == 1 and "FAIL broker" in r.stdout


def test_example_subscriber_prints_a_table(broker, tmp_path):
    import subprocess
    import sys

    sub = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "subscribe.py"), "--port", str(broker.port),
                            "--once"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    cfg = mqtt_config(tmp_path, broker.port, "table")
    emotion_edge("run", "--config", str(cfg), "--source", "demo:30", "--events", "none")
    out, err = sub.communicate(timeout=30)
    assert sub.returncode == 0, err
    assert "[table]" in out and ("#1" in out or "no face" in out)


def make_certs(d):
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")

    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
         "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(d / "server.key"),
         "-out", str(d / "server.csr"))
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
         "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.crt"))


def test_tls_with_ca_file(tmp_path):
    make_certs(tmp_path)
    b = Broker(tmp_path)
    b.conf.write_text(b.conf.read_text() + f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\n"
                      f"keyfile {tmp_path / 'server.key'}\n")
    b.start()
    try:
        import paho.mqtt.client as mqtt

        got = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.tls_set(ca_certs=str(tmp_path / "ca.crt"))
        c.on_message = lambda cl, u, m: got.append(m.topic)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe("emotion-edge/#")
        c.connect("localhost", b.port)
        c.loop_start()
        cfg = mqtt_config(tmp_path, b.port, "tls", f'tls = true\nca_file = "{tmp_path / "ca.crt"}"')
        r = emotion_edge("run", "--config", str(cfg), "--source", "demo:10", "--events", "none")
        assert r.returncode == 0, r.stderr
        time.sleep(0.5)
        c.loop_stop()
        assert got.count("emotion-edge/tls/events") == 10
        # Without the CA the broker's certificate is not trusted: nothing connects.
        r = emotion_edge("check", "--config", str(mqtt_config(tmp_path, b.port, "tls2", "tls = true")),
                         "--timeout", "3")
        assert r.returncode == 1 and "FAIL broker" in r.stdout
    finally:
        b.stop()


# --- in-process, through app.build -------------------------------------------------------------------------------

def run_in_process(tmp_path, port, device, extra, source="demo:60"):
    """The demo clip replayed live (2 s at 30 fps) through app.build's pipeline with MQTT on."""
    from edge import app, config

    cfg = config.load(mqtt_config(tmp_path, port, device, extra)).replace("camera", replay="live")
    pipe = app.build(cfg, source, app.Outputs())
    with pipe.source:
        res = pipe.run()
    return res


def test_rate_max_caps_events_per_second(broker, tmp_path):
    sub = Subscriber(broker.port, topics=("emotion-edge/cap/events",))
    res = run_in_process(tmp_path, broker.port, "cap", 'rate = "max"\nmax_rate = 5.0')
    assert res.frames >= 50
    events = [json.loads(p) for _, p, _ in sub.settle()]
    sub.close()
    # 2 s of clip at 5 a second: about 10 of the 60 frames, spaced at least 0.2 s apart.
    assert 6 <= len(events) <= 12, len(events)
    seqs = [e["seq"] for e in events]
    assert min(b - a for a, b in zip(seqs, seqs[1:])) >= 5  # 0.2 s at 30 fps, less a frame of jitter


def test_snapshots_are_annotated_jpegs_at_their_interval(broker, tmp_path):
    import cv2
    import numpy as np

    sub = Subscriber(broker.port, topics=("emotion-edge/snap/snapshot",))
    run_in_process(tmp_path, broker.port, "snap", "snapshot = true\nsnapshot_interval = 0.5")
    shots = [p for _, p, _ in sub.settle()]
    sub.close()
    assert 2 <= len(shots) <= 6, len(shots)  # 2 s at one per 0.5 s
    img = cv2.imdecode(np.frombuffer(shots[-1], np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (480, 640, 3)
