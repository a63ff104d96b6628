"""Tests of the research code (not installed, not in the product's suite): pytest model/research"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from test_model import _train  # noqa: E402

from edge.classify import Classifier  # noqa: E402


def test_slimming_keeps_the_strongest_channels_and_the_function():
    """Channels whose BatchNorm scale and shift are zero carry nothing; when those are the ones the
    slimmed network leaves out, it computes exactly what the teacher computes."""
    pytest.importorskip("keras")
    from emotion_model.arch import res_slim, res_teacher
    from emotion_model.research.prune import slim

    teacher = res_teacher()
    rng = np.random.default_rng(0)
    for layer in teacher.layers:
        if layer.name.endswith("_bn"):  # informative statistics, so the test is not trivially 0 = 0
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    dead_stream, dead_inner = rng.choice(64, 8, replace=False), rng.choice(64, 8, replace=False)
    for name, dead in (("s1in_bn", dead_stream), ("s1r2_bn", dead_stream), ("s1r1_bn", dead_inner)):
        layer = teacher.get_layer(name)
        g, b, m, v = layer.get_weights()
        g[dead], b[dead] = 0.0, 0.0
        layer.set_weights([g, b, m, v])
    student = res_slim()
    assert slim(teacher, student) == {"s1": 56}
    faces = rng.uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(student(faces, training=False).numpy(), teacher(faces, training=False).numpy(),
                               rtol=1e-4, atol=1e-5)
    kept = np.setdiff1d(np.arange(64), dead_stream)
    np.testing.assert_array_equal(student.get_layer("s2in_conv").get_weights()[0],
                                  teacher.get_layer("s2in_conv").get_weights()[0][:, :, kept, :])


def test_sam_step_takes_the_gradient_at_the_nudged_weights():
    tf = pytest.importorskip("tensorflow")
    import keras

    from emotion_model.research.sam import use_sam

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(16) % 2]
    lr, rho = 0.5, 0.3

    def make():
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        m.compile(optimizer=keras.optimizers.SGD(lr), loss="categorical_crossentropy")
        return m

    plain, sharp, ref = make(), make(), make()
    w0 = [rng.normal(size=w.shape).astype(np.float32) for w in plain.get_weights()]
    for m in (plain, sharp, ref):
        m.set_weights(w0)
    use_sam(sharp, rho)

    # By hand: the gradient at w0 + rho * g / |g|, applied at w0.
    loss = keras.losses.CategoricalCrossentropy()

    def grads():
        with tf.GradientTape() as tape:
            value = loss(y, ref(x))
        return [g.numpy() for g in tape.gradient(value, ref.trainable_weights)]

    g = grads()
    norm = np.sqrt(sum(float((gi ** 2).sum()) for gi in g))
    ref.set_weights([w + rho * gi / norm for w, gi in zip(w0, g)])
    expected = [w - lr * gi for w, gi in zip(w0, grads())]

    plain.train_on_batch(x, y)
    sharp.train_on_batch(x, y)
    for got, want in zip(sharp.get_weights(), expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not all(np.allclose(p, e, atol=1e-5) for p, e in zip(plain.get_weights(), expected))


@pytest.mark.slow
def test_sam_run_is_recorded_and_resumed_only_with_sam(tmp_path, fer_csv):
    out = tmp_path / "sam"
    r = _train(out, "--recipe", "vgg_wide", "--epochs", "2", "--stop-after", "1", "--sam", "0.05")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "state.json").read_text())["sam"] == 0.05
    r = _train(out, "--recipe", "vgg_wide", "--epochs", "2", "--resume")
    assert r.returncode != 0 and "another --sam" in (r.stderr + r.stdout)
    r = _train(out, "--recipe", "vgg_wide", "--epochs", "2", "--resume", "--sam", "0.05")
    assert r.returncode == 0 and "resuming after epoch 1" in r.stdout, r.stderr[-3000:]
    assert len(json.loads((out / "state.json").read_text())["history"]["val_accuracy"]) == 2


@pytest.mark.slow
def test_pair_is_one_graph_averaging_its_members(tmp_path, fer_data):
    """Two networks saved apart become one int8 model under the budget whose scores are the mean
    of theirs; a lone member or a missing file is refused with a clear message."""
    keras = pytest.importorskip("keras")
    from emotion_model.arch import res_half, vgg_half
    from emotion_model.evaluate import tflite_scores

    rng = np.random.default_rng(0)
    paths = []
    for net in (vgg_half(), res_half()):
        for layer in net.layers:  # informative statistics, so the two members disagree
            if isinstance(layer, keras.layers.BatchNormalization):
                g, b, m, v = layer.get_weights()
                layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                                   rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
        paths.append(tmp_path / f"{net.name}.keras")
        net.save(paths[-1])
    cmd = [sys.executable, "-m", "emotion_model.research.pair", "--limit", "300"]
    r = subprocess.run(cmd + ["--member", str(paths[0]), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "at least two" in r.stderr
    r = subprocess.run(cmd + ["--member", str(paths[0]), "--member", str(tmp_path / "nope"), "--out",
                              str(tmp_path / "x")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "no such model" in r.stderr

    out = tmp_path / "pair"
    r = subprocess.run(cmd + ["--member", str(paths[0]), "--member", str(paths[1]), "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "pair.json").read_text())
    assert info["macs"] == sum(m["macs"] for m in info["members"]) <= 150e6
    assert info["int8_bytes"] <= 2_000_000
    clf = Classifier(out / "emotion_int8.tflite")
    assert clf.in_dtype == np.int8 and clf.in_scale == pytest.approx(1.0) and clf.in_zero == -128

    faces = fer_data["PublicTest"].x[:64]
    members = [keras.models.load_model(p).predict(faces[..., None].astype(np.float32), verbose=0) for p in paths]
    assert np.abs(members[0] - members[1]).max() > 0.05
    joined = tflite_scores(out / "emotion_float.tflite", faces)
    np.testing.assert_allclose(joined, np.mean(members, axis=0), atol=1e-4)
    int8 = tflite_scores(out / "emotion_int8.tflite", faces)
    assert np.abs(int8 - joined).max() < 0.1




def test_frontier_scores_models_and_their_averages(tmp_path, fer_data):
    """Each model, then every average of two or more, on both label sets; the figure is drawn from the
    JSON alone, and a model path that does not exist is refused by name."""
    from emotion_model import data
    from emotion_model.research import frontier

    split = fer_data["PrivateTest"]
    sub = data.Split(split.x[:400], split.y[:400], split.votes[:400])
    rows = frontier.score_models({"accurate*": str(ROOT / "model" / "emotion_int8.tflite"),
                                  "fast*": str(ROOT / "model" / "emotion_fast_int8.tflite")}, sub)
    assert [(r["name"], r["kind"]) for r in rows] == [("accurate", "shipped"), ("fast", "shipped"),
                                                       ("accurate + fast", "ensemble")]
    assert all(0.3 < r["fer2013"] < 0.9 and 0.3 < r["ferplus"] < 0.95 for r in rows)
    table = {"split": "PrivateTest", "target": frontier.TARGET, "models": rows}
    (tmp_path / "f.json").write_text(json.dumps(table))
    assert frontier.main(["--json", str(tmp_path / "f.json"), "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 10_000
    r = subprocess.run([sys.executable, "-m", "emotion_model.research.frontier", "--model", "x=/nope.tflite",
                        "--json", str(tmp_path / "g.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "x=/nope.tflite" in r.stderr


def test_teacher_pipeline_on_a_tiny_slice(fer_csv, tmp_path):
    """The GPU teacher's whole path on 96 faces a split, on the CPU: the export round-trips the exact pixels,
    training writes flip-averaged scores for every split and camera condition, and the CPU student reads
    them (emotion-edge-train --teacher-scores), refusing scores of other faces."""
    pytest.importorskip("torch")
    from emotion_model import data as fer
    from emotion_model.research import teacher

    exp = tmp_path / "fer.xz"
    assert teacher.main(["export", "--data", str(fer_csv), "--out", str(exp), "--limit", "96"]) == 0
    got, _ = teacher.load_export(exp)
    want = fer.load(fer_csv, limit=96)
    for s in teacher.SPLITS:
        assert np.array_equal(got[s][0], want[s].x) and np.array_equal(got[s][1], want[s].y)
        assert np.array_equal(got[s][2], want[s].votes)
    out = tmp_path / "teacher"
    assert teacher.main(["train", "--data", str(exp), "--out", str(out), "--arch", "tiny", "--size", "48",
                         "--epochs", "2", "--batch", "32", "--device", "cpu"]) == 0
    report = json.loads((out / "teacher.json").read_text())
    assert report["epochs_run"] == 2 and set(report["splits"]) == set(teacher.SPLITS)
    with np.load(out / "scores.npz") as z:
        assert z["Training/clean"].shape == (96, 7)
        assert np.allclose(z["PrivateTest/clean"].astype(np.float32).sum(1), 1, atol=1e-2)
        assert {"PrivateTest/blur σ1", "PrivateTest/low light", "PublicTest/seen at 32px"} <= set(z.files)

    run = tmp_path / "student"
    r = subprocess.run([sys.executable, "-m", "emotion_model.train", "--data", str(fer_csv), "--out", str(run),
                        "--limit", "96", "--batch", "32", "--epochs", "1", "--teacher-scores", str(out / "scores.npz")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "teacher scores:" in r.stdout and json.loads((run / "state.json").read_text())["teachers"]["scores"]
    r = subprocess.run([sys.executable, "-m", "emotion_model.train", "--data", str(fer_csv), "--out", str(tmp_path / "x"),
                        "--limit", "64", "--epochs", "1", "--teacher-scores", str(out / "scores.npz")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "not of these 64" in r.stderr
