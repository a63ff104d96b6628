"""Hostile input, second pass: each class of defect found by generating cases, fixed at its root, with one
reproducer each; and a seeded generator that holds the config loader to its contract."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest
from conftest import cli_env, emotion_edge

from edge import config


def _faststart_clip(path, frames=90):
    av = pytest.importorskip("av")  # PyAV comes with picamera2 in the test environment
    out = av.open(str(path), "w", options={"movflags": "faststart"})
    s = out.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
    for i in range(frames):
        f = np.zeros((240, 320, 3), np.uint8)
        f[100:140, i:i + 40] = 255
        for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()


def test_a_clip_cut_short_ends(tmp_path):
    """The first half of a faststart MP4 (a copy that broke off): 9,061 events from a 90-frame clip, for
    ever, the decoder replaying its last good second after every skip."""
    whole, half = tmp_path / "a.mp4", tmp_path / "half.mp4"
    _faststart_clip(whole)
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    events = tmp_path / "e.jsonl"
    t = time.monotonic()
    r = emotion_edge("run", "--source", str(half), "--events", str(events), timeout=60)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 45
    n = len(events.read_text().splitlines())
    assert 1 <= n < 90 and "stops decoding at frame" in r.stderr


def test_one_hostile_file_does_not_end_a_folder(tmp_path):
    """An OpenEXR header (a codec OpenCV disables) and a PGM header claiming 60000x60000 between two photos:
    cv2.error ended the run with exit 1 and the photos after it were never read."""
    import cv2

    from edge.sources.demo import astronaut_bgr

    for name in ("a1.jpg", "c3.jpg"):
        cv2.imwrite(str(tmp_path / name), astronaut_bgr())
    (tmp_path / "b2.exr").write_bytes(b"\x76\x2f\x31\x01\x02\x00\x00\x00channels\x00chlist\x00" + bytes(64))
    (tmp_path / "b3.pgm").write_bytes(b"P5\n60000 60000\n255\n" + bytes(100))
    events = tmp_path / "out" / "e.jsonl"
    events.parent.mkdir()
    r = emotion_edge("run", "--source", str(tmp_path), "--events", str(events))
    assert r.returncode == 0, r.stderr
    assert len(events.read_text().splitlines()) == 2
    assert "b2.exr: OpenCV cannot decode it" in r.stderr and "b3.pgm: its header claims more pixels" in r.stderr
    assert "Traceback" not in r.stderr and "2 bad" in r.stderr


@pytest.mark.parametrize("where", ["events", "config", "password"])
def test_a_fifo_is_refused_not_waited_on(tmp_path, where):
    """--events to a FIFO nobody reads: "SIGTERM: stopping", then it ran on until SIGKILL; the same for a
    config or a password file that is a FIFO."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    args = ["run", "--source", "demo:3", "--events", "none"]
    env = cli_env()
    if where == "events":
        args[-1] = str(fifo)
    elif where == "config":
        args += ["--config", str(fifo)]
    else:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[mqtt]\nenabled = true\nport = 1\nusername = "u"\npassword_file = "{fifo}"\n')
        args += ["--config", str(cfg)]
    t = time.monotonic()
    r = emotion_edge(*args, env=env, timeout=30)
    assert time.monotonic() - t < 20
    assert r.returncode != 0 and "a FIFO" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_an_output_never_overwrites_its_input(tmp_path):
    import cv2

    from edge.sources.demo import astronaut_bgr

    photo = tmp_path / "p.jpg"
    cv2.imwrite(str(photo), astronaut_bgr())
    before = photo.read_bytes()
    for flag in ("--events", "--annotate"):
        r = emotion_edge("run", "--source", str(photo), flag, str(photo))
        assert r.returncode != 0 and "would be overwritten" in r.stderr, r.stderr
        assert photo.read_bytes() == before


def test_a_stream_password_never_printed(tmp_path):
    url = "rtsp://admin:hunter2@127.0.0.1:1/live"
    for args in (("check", "--source", url), ("run", "--source", url, "--events", "none"),
                 ("check", "--full", "--source", url, "--frames", "2")):
        r = emotion_edge(*args, timeout=60)
        assert "hunter2" not in r.stdout + r.stderr, args
        assert "admin:***@" in r.stdout + r.stderr, (args, r.stdout + r.stderr)


# --- generated configs ----------------------------------------------------------------------------------

def _value(rng: random.Random, depth=0):
    kind = rng.randrange(12 if depth < 3 else 9)
    return [lambda: rng.randint(-10**rng.randint(0, 30), 10**rng.randint(0, 30)),
            lambda: rng.choice([float("nan"), float("inf"), -0.0, 1e308, 5e-324, rng.uniform(-1e6, 1e6)]),
            lambda: rng.choice([True, False]),
            lambda: "".join(chr(rng.choice([rng.randint(0, 0x7f), rng.randint(0x80, 0xffff)]))
                            for _ in range(rng.randint(0, 40))),
            lambda: rng.choice(["auto", "drm", "none", "127.0.0.1:²", "localhost", "", " ", "/", "#", "+"]),
            lambda: rng.uniform(-2, 2),
            lambda: rng.randint(0, 70000),
            lambda: "x" * rng.randint(0, 70000),
            lambda: None,
            lambda: [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))],
            lambda: {rng.choice(["a", "enabled", "x"]): _value(rng, depth + 1)},
            lambda: [[[rng.uniform(-0.5, 1.5), rng.uniform(-0.5, 1.5)] for _ in range(rng.randint(0, 6))]],
            ][kind]()


def test_generated_configs_load_or_fail_with_one_config_error():
    """10,000 seeded configs: real keys with hostile values, unknown keys, wrong types, huge numbers, NaN,
    control characters, nested lists. The contract: a Config or a ConfigError naming a key, nothing else."""
    rng = random.Random(20261203)
    sections = {name: [f.name for f in __import__("dataclasses").fields(cls)]
                for name, cls in (("camera", config.CameraConfig), ("detector", config.DetectorConfig),
                                  ("classifier", config.ClassifierConfig), ("tracker", config.TrackerConfig),
                                  ("mqtt", config.MqttConfig), ("display", config.DisplayConfig),
                                  ("service", config.ServiceConfig))}
    outcomes = {"ok": 0, "error": 0}
    for _ in range(10_000):
        raw = {}
        for _ in range(rng.randint(1, 3)):
            sec = rng.choice([*sections, "nonsense"])
            keys = sections.get(sec, ["k"])
            raw[sec] = {rng.choice([*keys, "unknown_key"]): _value(rng) for _ in range(rng.randint(1, 3))}
        if rng.random() < 0.05:
            raw = _value(rng)
        try:
            config.from_dict(raw) if isinstance(raw, dict) else config.from_dict({"camera": raw})
            outcomes["ok"] += 1
        except config.ConfigError as e:
            assert str(e) and "\n" not in str(e)
            outcomes["error"] += 1
    assert outcomes["ok"] > 50 and outcomes["error"] > 1000, outcomes


@pytest.mark.parametrize("spec", ["demo:abc", "webcam:99999999999999999999", "demo:²", "picamera2:64"])
def test_a_bad_source_number_is_a_usage_error(spec):
    """`--source demo:abc` exited 1 (a failure of the machine) though the README says bad arguments exit 2."""
    r = emotion_edge("run", "--source", spec, "--events", "none")
    assert r.returncode == 2 and "expected a number" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_broker_refusal_says_what_to_check(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = 1\n')
    r = emotion_edge("check", "--config", str(cfg), "--source", "demo")
    line = next(ln for ln in r.stdout.splitlines() if "broker" in ln)
    assert line.startswith("FAIL") and "is the broker running?" in line, r.stdout


def test_one_photo_reports_no_made_up_frame_rate(tmp_path):
    import cv2

    from edge.sources.demo import astronaut_bgr

    cv2.imwrite(str(tmp_path / "p.jpg"), astronaut_bgr())
    r = emotion_edge("run", "--source", str(tmp_path / "p.jpg"), "--events", "none")
    assert r.returncode == 0 and "fps at the end" not in r.stderr, r.stderr
