"""Home Assistant MQTT discovery: what emotion-edge announces, and how to take it back.

Topics follow Home Assistant's discovery rule ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``
with node and object ids in [a-zA-Z0-9_-]; every config is retained, so a removal is an empty retained
message on the same topic.
"""
from __future__ import annotations

from .. import __version__
from ..config import MqttConfig


def node(device: str) -> str:
    """The node id in discovery topics and the stem of unique ids: the device id as it is ("-" kept: turning
    it into "_" made "living-room" and "living_room" one device in Home Assistant)."""
    return f"emotion_edge_{device}"


def topics(cfg: MqttConfig, device: str) -> dict[str, str]:
    base = f"{cfg.prefix}/{device}"
    return {k: f"{base}/{k}" for k in ("events", "state", "availability", "stats", "summary", "snapshot", "instance")}


def messages(cfg: MqttConfig, device: str, device_name: str, labels, http_url: str | None = None) -> list[tuple[str, dict]]:
    """(topic, config) for every entity: the emotion as an enum sensor with the largest face's scores as
    attributes, a "someone is here" binary sensor, the face count and confidence, the mood of the last summary
    interval and its happy share, and the frame rate."""
    t = topics(cfg, device)
    nid = node(device)
    dev = {"identifiers": [f"emotion-edge-{device}"], "name": f"emotion-edge {device_name}",
           "model": "emotion-edge", "manufacturer": "emotion-edge", "sw_version": __version__}
    if http_url:
        dev["configuration_url"] = http_url
    common = {"availability_topic": t["availability"], "payload_available": "online",
              "payload_not_available": "offline", "device": dev,
              "origin": {"name": "emotion-edge", "sw_version": __version__}}
    options = [*labels, "none"]
    stale_stats = int(3 * cfg.stats_interval)
    stale_summary = int(3 * cfg.summary_interval)
    entities = [
        ("sensor", "emotion", "Emotion", t["state"], "{{ value_json.emotion if value_json.emotion else 'none' }}",
         {"device_class": "enum", "options": options, "icon": "mdi:emoticon-outline",
          "json_attributes_topic": t["state"], "json_attributes_template": "{{ value_json.scores | tojson }}"}),
        ("binary_sensor", "present", "Face present", t["state"], "{{ 'ON' if value_json.faces > 0 else 'OFF' }}",
         {"device_class": "occupancy", "payload_on": "ON", "payload_off": "OFF"}),
        ("sensor", "faces", "Faces", t["state"], "{{ value_json.faces }}",
         {"icon": "mdi:account-multiple", "state_class": "measurement"}),
        # "None" is Home Assistant's unknown: without a face there is no confidence, not 0 %.
        ("sensor", "confidence", "Confidence", t["state"],
         "{{ none if value_json.confidence is none else (value_json.confidence * 100) | round(0) }}",
         {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:percent"}),
        ("sensor", "mood", "Mood", t["summary"], "{{ value_json.dominant if value_json.dominant else none }}",
         {"device_class": "enum", "options": list(labels), "icon": "mdi:emoticon-happy-outline",
          "expire_after": stale_summary}),
        ("sensor", "happy_share", "Happy share", t["summary"],
         "{{ none if value_json.shares is none else (value_json.shares.happy * 100) | round(0) }}",
         {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:emoticon-happy",
          "expire_after": stale_summary}),
        ("sensor", "fps", "Frame rate", t["stats"], "{{ value_json.fps }}",
         {"unit_of_measurement": "fps", "state_class": "measurement", "entity_category": "diagnostic",
          "icon": "mdi:speedometer", "expire_after": stale_stats}),
    ]
    out = []
    for component, key, name, topic, tpl, extra in entities:
        uid = f"{nid}_{key}"
        # entity ids take [a-z0-9_] only; Home Assistant adds _2 should two ever meet there
        payload = {"name": name, "unique_id": uid, "default_entity_id": f"{component}.{uid.replace('-', '_')}",
                   "state_topic": topic,
                   "value_template": tpl, **extra, **common}
        out.append((f"{cfg.discovery_prefix}/{component}/{nid}/{key}/config", payload))
    return out


def retained_topics(cfg: MqttConfig, device: str, labels=()) -> list[str]:
    """Everything emotion-edge leaves retained on the broker for a device: its discovery configs and its
    state, stats, summary and availability. ``emotion-edge mqtt forget`` clears them."""
    t = topics(cfg, device)
    disc = [topic for topic, _ in messages(cfg, device, device, labels or ("happy",))]
    return disc + [t["state"], t["stats"], t["summary"], t["availability"], t["snapshot"], t["instance"]]
