import dataclasses
import math
import re
import tomllib
import typing

import pytest
from conftest import ROOT, emotion_edge
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import config
from edge.config import Config, ConfigError, from_dict


def test_shipped_config_is_the_documented_defaults():
    assert config.load(ROOT / "deploy" / "config.toml") == config.Config()


def test_shipped_config_documents_every_key():
    raw = tomllib.loads((ROOT / "deploy" / "config.toml").read_text())
    for f in dataclasses.fields(config.Config):
        keys = {sf.name for sf in dataclasses.fields(f.type if isinstance(f.type, type) else getattr(config, f.type))}
        assert set(raw[f.name]) == keys, f"[{f.name}] in deploy/config.toml"


@pytest.mark.parametrize("text, message", [
    ("[detector]\nmin_neigbors = 3\n", "detector.min_neigbors: unknown key"),
    ("[detector]\nevery = \"2\"\n", "detector.every: expected int, got str"),
    ("[camera]\nwidth = 1.5\n", "camera.width: expected int, got float"),
    ("[mqtt]\nenabled = \"yes\"\n", "mqtt.enabled: expected bool"),
    ("[mqtt]\nrate = \"sometimes\"\n", "mqtt.rate: 'sometimes' is not one of"),
    ("[cameras]\nwidth = 2\n", "[cameras]: unknown section"),
    ("[detector]\nscale_factor = 1.0\n", "detector.scale_factor: must be within 1.01..2.0, got 1.0"),
    ("[detector]\nconfirm_below = 1.5\n", "detector.confirm_below: must be within 0.0..1.0, got 1.5"),
    ("[detector]\ntilt = 60\n", "detector.tilt: must be within 0.0..45.0, got 60"),
    ("[display]\nhttp = \"8080\"\n", "display.http: expected HOST:PORT"),
    ("[classifier]\nthreads = 0\n", "classifier.threads: must be within 1..64, got 0"),
    ("[detector\n", "invalid TOML"),
    # Names that cannot be MQTT topic levels or Home Assistant ids.
    ('[service]\ndevice = "///"\n', "service.device: '///' has no letter or digit"),
    ('[mqtt]\nprefix = "a/+/b"\n', "mqtt.prefix: 'a/+/b': MQTT wildcards"),
    ('[mqtt]\ndiscovery_prefix = "ha/#"\n', "mqtt.discovery_prefix: 'ha/#': MQTT wildcards"),
    ('[mqtt]\nprefix = "a//b"\n', "mqtt.prefix: 'a//b': empty topic level"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(config.ConfigError, match=None) as e:
        config.load(p)
    assert message in str(e.value)
    assert str(p) in str(e.value)


def test_int_is_accepted_for_float_and_device_is_sanitised():
    c = config.from_dict({"tracker": {"smoothing": 1}, "service": {"device": ""}})
    assert c.tracker.smoothing == 1.0 and isinstance(c.tracker.smoothing, float)
    assert config.node_id("Pi Kitchen/#1+").startswith("pi_kitchen_1_")


@pytest.mark.parametrize("a, b", [("Living Room", "living-room"), ("living-room", "living_room"), ("Büro", "Bäro"),
                                  ("Living Room", "living room"), ("Кухня", "Kukhnia")])
def test_distinct_names_get_distinct_ids(a, b):
    """Living Room and living-room shared a node id and unique ids: the second discovery took over the first's
    entities and forgetting one deleted the other; Büro and Bäro both became b_ro."""
    ids = config.node_id(a), config.node_id(b)
    assert ids[0] != ids[1] and all(re.fullmatch(r"[a-z0-9][a-z0-9_-]*", i) for i in ids)
    assert config.node_id(a) == ids[0]  # stable


@pytest.mark.parametrize("name, stem", [("raspberrypi", "raspberrypi"), ("kitchen-pi", "kitchen-pi"),
                                        ("Küche Pi.2", "kuche_pi_2_"), ("Кухня", "kukhnia_"), ("客厅", "device_")])
def test_ids_read_like_the_name(name, stem):
    """A host name stays its own id; other names are spelled as Home Assistant's slugify would, in any script."""
    assert config.node_id(name).startswith(stem) and (name == stem) == (config.node_id(name) == name)


def test_cli_reports_unknown_key_and_exits_2(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[tracker]\nsmoothin = 0.5\n")
    r = emotion_edge("run", "--config", str(p), "--source", "demo:3")
    assert r.returncode == 2
    assert "tracker.smoothin: unknown key" in r.stderr


def test_config_command_prints_loadable_toml(tmp_path):
    r = emotion_edge("config")
    assert r.returncode == 0
    p = tmp_path / "out.toml"
    p.write_text(r.stdout)
    assert config.load(p) == config.Config()


# --- hostile values: every number finite and in its range, whatever a config file says ----------------------

SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}
_hints = typing.get_type_hints(Config)
KEYS = {name: [f.name for f in dataclasses.fields(_hints[name])] for name in SECTIONS}

values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=20), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                             st.integers(), max_size=2))
section = st.sampled_from(sorted(SECTIONS)).flatmap(
    lambda name: st.tuples(st.just(name), st.dictionaries(st.sampled_from(KEYS[name] + ["bogus"]), values, max_size=4)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(section, max_size=4))
def test_random_documents_are_refused_by_name_or_loaded_in_range(doc):
    raw = {}
    for name, keys in doc:
        raw.setdefault(name, {}).update(keys)
    try:
        cfg = from_dict(raw)
    except ConfigError as e:
        text = str(e)
        assert "\n" not in text and any(text.startswith(f"{s}.") or text.startswith(f"[{s}]") for s in SECTIONS), text
        return
    for name in SECTIONS:
        sec = getattr(cfg, name)
        for f in dataclasses.fields(sec):
            v = getattr(sec, f.name)
            if "range" in f.metadata:
                lo, hi = f.metadata["range"]
                assert math.isfinite(v) and lo <= v <= hi, (name, f.name, v)


@pytest.mark.parametrize("text, key", [
    ("[detector]\nscale_factor = inf\n", "detector.scale_factor"),
    ("[detector]\nscale_factor = nan\n", "detector.scale_factor"),
    ("[mqtt]\nstats_interval = inf\n", "mqtt.stats_interval"),
    ("[camera]\nfps = nan\n", "camera.fps"),
    ("[display]\nhttp_max_fps = inf\n", "display.http_max_fps"),
    ("[camera]\nwidth = 9223372036854775807\n", "camera.width"),
    ("[classifier]\nthreads = 100000\n", "classifier.threads"),
    ("[mqtt]\nport = 99999\n", "mqtt.port"),
    ("[mqtt]\nkeepalive = 100000\n", "mqtt.keepalive"),
])
def test_hostile_numbers_exit_2_with_one_line(tmp_path, text, key):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    r = emotion_edge("run", "--config", str(cfg), "--source", "demo:2", timeout=30)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and key in lines[0] and "must be within" in lines[0], r.stderr


def test_the_configuration_reference_is_the_code():
    """docs/configuration.md's table of every key is generated from the typed config: it may not drift."""
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in (ROOT / "docs" / "configuration.md").read_text(), \
        "docs/configuration.md is out of date: .venv/bin/python scripts/config_reference.py --write"
