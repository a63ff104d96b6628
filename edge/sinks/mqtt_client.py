"""The MQTT connection: client ids, credentials and TLS (paho-mqtt 2.x), and the short connections of the
commands (``check``'s probe, ``mqtt forget``). What is published, and when, is the sink's (``mqtt.py``); what
Home Assistant is told, ``ha.py``'s."""
from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from ..config import MqttConfig
from ..secrets import SecretError, read_secret
from . import ha

CREDENTIAL_NAME = "mqtt-password"


class MqttConfigError(ValueError):
    pass


def read_password(cfg: MqttConfig) -> str | None:
    try:
        return read_secret(cfg.password_file, "mqtt.password_file", CREDENTIAL_NAME)
    except SecretError as e:
        raise MqttConfigError(str(e)) from None


def machine_suffix(path: str = "/etc/machine-id") -> str:
    """8 hex digits that stay the same on one machine and differ between machines (systemd's machine id,
    hashed: the id itself is meant to stay private; the host name where there is none)."""
    try:
        seed = Path(path).read_text().strip()
    except OSError:
        seed = ""
    import socket

    return hashlib.sha256((seed or socket.gethostname()).encode()).hexdigest()[:8]


def client_id(cfg: MqttConfig, device: str, under_systemd: bool | None = None) -> str:
    """The MQTT client id: the configured one, else emotion-edge-{device}-{machine}, and -{pid} for a run
    outside systemd. A broker lets one connection hold an id: two Pis left at the same device name, or a
    manual run beside the service, would otherwise take the connection from each other in turn."""
    if cfg.client_id:
        return cfg.client_id
    if under_systemd is None:
        under_systemd = bool(os.environ.get("INVOCATION_ID"))
    cid = f"emotion-edge-{device}-{machine_suffix()}"
    return cid if under_systemd else f"{cid}-{os.getpid()}"


def make_client(cfg: MqttConfig, device: str, availability_topic: str | None = None, suffix: str = "") -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(cfg, device) + suffix,
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


@contextlib.contextmanager
def connection(cfg: MqttConfig, device: str, suffix: str, timeout: float):
    """A short-lived connection for a command: yields (client, "host:port") once the broker accepted it, or
    (None, the one-line reason) when it did not."""
    where = f"{cfg.host}:{cfg.port}"
    try:
        client = make_client(cfg, device, suffix=suffix)
    except MqttConfigError as e:
        yield None, str(e)
        return
    result: dict = {}
    done = threading.Event()

    def on_connect(c, u, flags, rc, props=None):
        result["rc"] = rc
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(cfg.host, cfg.port, keepalive=10)
    except (OSError, ssl.SSLError) as e:
        yield None, f"{where}: {e}{_hint(e)}"
        return
    client.loop_start()
    try:
        if not done.wait(timeout):
            yield None, f"{where}: no answer within {timeout:.0f} s"
        elif result["rc"].is_failure:
            yield None, f"{where}: refused: {result['rc']}"
        else:
            yield client, where
    finally:
        client.disconnect()
        client.loop_stop()


def _hint(e: Exception) -> str:
    """What to do about a connection that failed, in a few words."""
    if isinstance(e, ConnectionRefusedError):
        return " (nothing listens there: is the broker running? `systemctl status mosquitto`; or check [mqtt] host and port)"
    if isinstance(e, ssl.SSLError):
        return " (TLS: check [mqtt] ca_file, and that the broker's port speaks TLS)"
    if isinstance(e, socket.gaierror):
        return " (the host name does not resolve: check [mqtt] host)"
    return ""


def probe(cfg: MqttConfig, device: str, timeout: float = 5.0, roundtrip: bool = False) -> tuple[bool, str]:
    """Connect once and report; used by ``emotion-edge check``. With ``roundtrip``, also publish one
    message to a topic of our own and time it back through the broker (the self-test)."""
    with connection(cfg, device, "-check", timeout) as (client, where):
        if client is None:
            return False, where
        text = f"{where}{' (TLS)' if cfg.tls else ''}, user {cfg.username or '-'}"
        if roundtrip:
            back, subscribed = threading.Event(), threading.Event()
            topic = f"{cfg.prefix}/{device}/selftest/{os.getpid()}"
            client.on_message = lambda c, u, msg: back.set()
            client.on_subscribe = lambda *a: subscribed.set()
            client.subscribe(topic, qos=1)
            if not subscribed.wait(timeout):  # the round trip is timed from the publish, after the SUBACK
                return False, f"{text}: the broker did not confirm a subscription within {timeout:.0f} s"
            t = time.monotonic()
            client.publish(topic, b"ping", qos=1)
            if not back.wait(timeout):
                return False, f"{text}: published, but nothing came back within {timeout:.0f} s (ACL?)"
            text += f", round trip {1000 * (time.monotonic() - t):.1f} ms"
        return True, text


def forget(cfg: MqttConfig, device: str, labels=(), timeout: float = 10.0) -> tuple[bool, str]:
    """Clear every retained message emotion-edge left for ``device`` (discovery configs, state, stats, summary,
    availability): Home Assistant then removes the device and its entities."""
    with connection(cfg, device, "-forget", timeout) as (client, where):
        if client is None:
            return False, where
        infos = [client.publish(t, b"", qos=1, retain=True) for t in ha.retained_topics(cfg, device, labels)]
        for info in infos:
            info.wait_for_publish(timeout)
        return True, f"{where}: cleared {len(infos)} retained topics of device {device}"
