import dataclasses
import tomllib

import pytest

from conftest import ROOT, emotion_edge
from edge import config


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
    ("[detector]\nscale_factor = 1.0\n", "detector.scale_factor: must be greater than 1.0"),
    ("[detector]\nconfirm_below = 1.5\n", "detector.confirm_below: must be within 0..1"),
    ("[detector]\ntilt = 60\n", "detector.tilt: must be within 0..45 degrees"),
    ("[display]\nhttp = \"8080\"\n", "display.http: expected HOST:PORT"),
    ("[classifier]\nthreads = 0\n", "classifier.threads: must be positive"),
    ("[detector\n", "invalid TOML"),
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
    assert config.sanitise_topic("Pi Kitchen/#1+") == "pi_kitchen_1"


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
