"""Train the emotion CNN on FER2013's official split and export the int8 TFLite model.

    python -m model.train --recipe res_slim_96 --out runs/rs96 --keep-from 72     # the shipped model's recipe
    python -m model.train --out runs/vgg            # the first recipe; resumable with --resume
    python -m model.train --recipe thesis --out runs/thesis

Training on Training, checkpoint selection on PublicTest; PrivateTest is only read by
``model.evaluate``. Every epoch writes ``last.keras`` + ``state.json``; the best PublicTest
epoch is kept as ``best.keras``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edge.preprocess import METHODS as PREPROCESS_METHODS

from . import LABELS, tf_environment
from . import data as fer

log = logging.getLogger("model.train")


@dataclass(frozen=True)
class Recipe:
    arch: str
    epochs: int
    batch: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    label_smoothing: float
    augment: str | None  # a level of augment.LEVELS, or None
    optimizer: str
    # "mixed_bfloat16" trained 1.45x faster on one machine (509 vs 740 ms per 128-face step) but
    # 1.5x slower on another with AVX512-BF16 and no AMX; exports are always rebuilt in float32.
    precision: str = "float32"
    # The photometric step (edge.preprocess.METHODS) applied to every face after augmentation; recorded
    # beside the exported model, which the runtime then applies to camera faces.
    preprocess: str = "none"
    # Camera degradations (model.camera.degrade) on the augmented faces, before the photometric step.
    camera: bool = False
    # Weight of the FER+ vote distribution in the targets (the rest: the FER2013 label); 0 = labels only.
    ferplus: float = 0.0


RECIPES = {
    "vgg_gap": Recipe("vgg_gap", epochs=32, batch=128, lr=2e-3, weight_decay=0.02, warmup_epochs=3,
                      label_smoothing=0.1, augment="full", optimizer="adamw"),
    # Same network and augmentation, a longer cosine schedule in bf16 to fit the time.
    "vgg_gap_long": Recipe("vgg_gap", epochs=60, batch=128, lr=2e-3, weight_decay=0.02, warmup_epochs=3,
                           label_smoothing=0.1, augment="full", optimizer="adamw", precision="mixed_bfloat16"),
    # More width at 6x6, half the dropout, lighter occlusion: fits Training better, ties on PublicTest.
    "vgg_wide": Recipe("vgg_wide", epochs=46, batch=128, lr=2e-3, weight_decay=0.02, warmup_epochs=3,
                       label_smoothing=0.1, augment="light", optimizer="adamw"),
    # The thesis: Adam 1e-3, batch 64, 15 epochs, no augmentation, plain cross-entropy.
    "thesis": Recipe("thesis", epochs=15, batch=64, lr=1e-3, weight_decay=0.0, warmup_epochs=0,
                     label_smoothing=0.0, augment=None, optimizer="adam"),
}
# vgg_wide's recipe for a residual network, a teacher unlike the first two, and for that network slimmed to
# the budget (from scratch, or fine-tuned from the pruned teacher with --init).
RECIPES["res_teacher"] = replace(RECIPES["vgg_wide"], arch="res_teacher")
RECIPES["res_slim"] = replace(RECIPES["vgg_wide"], arch="res_slim")
# res_slim on the same recipe with longer schedules: the schedule is what lifted it off the 46-epoch plateau.
# Average the last quarter with model.average (--from-epoch 48 / 72). The 96-epoch one is the shipped model.
RECIPES["res_slim_64"] = replace(RECIPES["res_slim"], epochs=64)
RECIPES["res_slim_96"] = replace(RECIPES["res_slim"], epochs=96)
# The two halves of a pair (model.research.pair), each trained alone on the same recipe.
RECIPES["vgg_half"] = replace(RECIPES["vgg_wide"], arch="vgg_half")
RECIPES["res_half"] = replace(RECIPES["vgg_wide"], arch="res_half")
# Camera-robust models on the original pixels: equalised faces, camera degradations, targets half FER2013
# label and half FER+ votes. "cam" fine-tunes a trained res_slim (--init); "cam_fast" trains the
# 38 M-MAC network from scratch for slow CPUs.
RECIPES["res_slim_cam"] = replace(RECIPES["res_slim"], epochs=14, lr=6e-4, warmup_epochs=1, preprocess="equalize",
                                  camera=True, ferplus=0.5)
RECIPES["res_fast_cam"] = replace(RECIPES["res_slim"], arch="res_fast", epochs=40, preprocess="equalize",
                                  camera=True, ferplus=0.5)


def _setup_tf(threads: int, seed: int, precision: str = "float32"):
    tf_environment()
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(precision)

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(seed)
    return tf, keras


def effective_threads(threads: int) -> int:
    """The thread count a run really uses: --threads, or (0) every core this process may run on,
    which is what TensorFlow then takes."""
    return threads or len(os.sched_getaffinity(0))


def teacher_targets(y: np.ndarray, x: np.ndarray, teachers: list[str], alpha: float) -> np.ndarray:
    """Soft targets for distillation: (1 - alpha) * one-hot + alpha * the teachers' mean scores,
    flip-averaged. Computed once on the unaugmented faces (TFLite teachers, so a run's Keras
    checkpoints need not survive); the mild augmentation keeps the face close enough to them."""
    from .evaluate import tflite_scores

    soft = np.mean([tflite_scores(t, x, flip=True) for t in teachers], axis=0)
    soft /= soft.sum(axis=1, keepdims=True)
    return ((1 - alpha) * np.eye(len(LABELS))[y] + alpha * soft).astype(np.float32)


def teacher_scores(path: Path, training) -> tuple[np.ndarray, str]:
    """A GPU teacher's flip-averaged Training scores (model/research/teacher.py writes them), checked to be
    scores of these very faces, in this order: same count, same digest of the pixels."""
    if not path.is_file():
        raise SystemExit(f"--teacher-scores: no such file: {path}")
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            p = z["Training/clean"].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"--teacher-scores {path}: not a scores file of model/research/teacher.py ({e})") from None
    digest = hashlib.sha256(np.ascontiguousarray(training.x, dtype=np.uint8).tobytes()).hexdigest()[:16]
    want = meta.get("splits", {}).get("Training", {})
    if p.shape != (len(training), len(LABELS)) or want.get("pixels") != digest:
        raise SystemExit(f"--teacher-scores {path}: scores of {want.get('rows', '?')} other Training faces "
                         f"(pixels {want.get('pixels')}), not of these {len(training)} ({digest}): "
                         "export the same data with the same --limit")
    if not np.isfinite(p).all() or (p < 0).any():
        raise SystemExit(f"--teacher-scores {path}: scores that are not probabilities")
    return p, digest


def _write_atomic(path: Path, write) -> None:
    """write(tmp) beside path, then rename: a run killed mid-write (a session ending, a reboot)
    leaves the previous file readable for --resume. The suffix is kept (Keras and numpy check it)."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    write(tmp)
    tmp.replace(path)


def cached_teacher_targets(out: Path, y: np.ndarray, x: np.ndarray, teachers: list[str], alpha: float) -> np.ndarray:
    """teacher_targets, kept in the run directory: three teachers take minutes to score Training on
    2 cores, and every --resume needs the same targets. The key covers the teachers' bytes, alpha
    and the faces, so a teacher replaced at the same path is scored again, not reused."""
    h = hashlib.sha256(np.float64(alpha).tobytes() + x.tobytes() + y.tobytes())
    for t in teachers:
        h.update(Path(t).read_bytes())
    path = out / "teacher_targets.npz"
    if path.exists():
        with np.load(path) as z:
            if str(z["key"]) == h.hexdigest():
                return z["targets"]
    targets = teacher_targets(y, x, teachers, alpha)
    _write_atomic(path, lambda p: np.savez(p, targets=targets, key=h.hexdigest()))
    return targets


def label_targets(split, ferplus: float) -> np.ndarray:
    """(1 - ferplus) * one-hot FER2013 label + ferplus * FER+ vote distribution; a face without a vote for
    any of the seven classes keeps its label alone."""
    onehot = np.eye(len(LABELS), dtype=np.float32)[split.y]
    if not ferplus:
        return onehot
    if split.votes is None:
        raise fer.DataError("this recipe trains on FER+ votes: use fer2013plus.csv.gz")
    total = split.votes.sum(1, keepdims=True)
    dist = np.where(total > 0, split.votes / np.maximum(total, 1), onehot)
    return ((1 - ferplus) * onehot + ferplus * dist).astype(np.float32)


def camera_and_photometric(recipe: Recipe):
    """The numpy half of augmentation: per batch a seeded camera (model.camera.degrade), then the
    model's photometric step, the very function the runtime calls."""
    from edge.preprocess import photometric

    from .camera import degrade

    def fn(xb, seed):
        faces = np.clip(np.round(xb[..., 0]), 0, 255).astype(np.uint8)
        if recipe.camera:
            faces = degrade(faces, np.random.default_rng([int(seed[0]), int(seed[1]), 7]))
        return photometric(faces, recipe.preprocess)[..., None].astype(np.float32)

    return fn


def _train_dataset(tf, x, y, recipe: Recipe, seed: int, start_epoch: int, targets: np.ndarray | None = None,
                   teachers: list | None = None, alpha: float = 0.0):
    """Per-epoch seeded permutations; batch k of epoch e is augmented with seed (seed, e*10^5+k).
    With ``teachers`` (Keras networks) the targets are mixed with their mean scores on each
    augmented batch, the faces exactly as the student sees them."""
    n = len(y)
    steps = n // recipe.batch

    def index_batches():
        for epoch in range(start_epoch, recipe.epochs):
            perm = np.random.default_rng([seed, epoch]).permutation(n)
            for k in range(steps):
                yield perm[k * recipe.batch:(k + 1) * recipe.batch], np.array([seed, epoch * 100_000 + k], np.int32)

    xs = tf.constant(x[..., None].astype(np.float32))
    ys = tf.constant(np.eye(len(LABELS), dtype=np.float32)[y] if targets is None else targets)
    from .augment import LEVELS, augment

    numpy_step = camera_and_photometric(recipe)

    def load(idx, s):
        xb, yb = tf.gather(xs, idx), tf.gather(ys, idx)
        if recipe.augment:
            xb = augment(xb, s, **LEVELS[recipe.augment])
        if recipe.camera or recipe.preprocess != "none":
            xb = tf.numpy_function(numpy_step, [xb, s], tf.float32, stateful=False)
            xb.set_shape([recipe.batch, 48, 48, 1])
        if teachers:
            soft = tf.add_n([t(xb, training=False) for t in teachers]) / len(teachers)
            yb = (1 - alpha) * yb + alpha * soft
        return xb, yb

    ds = tf.data.Dataset.from_generator(
        index_batches,
        output_signature=(tf.TensorSpec([recipe.batch], tf.int64), tf.TensorSpec([2], tf.int32)))
    return ds.map(load, num_parallel_calls=2).prefetch(2), steps


def _schedule(keras, recipe: Recipe, steps: int):
    total = recipe.epochs * steps
    warm = recipe.warmup_epochs * steps
    if recipe.optimizer == "adam" and not warm:
        return recipe.lr
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.lr / 10 if warm else recipe.lr,
        decay_steps=max(total - warm, 1), alpha=0.0,
        warmup_target=recipe.lr if warm else None, warmup_steps=warm)


def build(keras, recipe: Recipe, steps: int):
    from .arch import ARCHS

    model = ARCHS[recipe.arch]()
    lr = _schedule(keras, recipe, steps)
    if recipe.optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=lr, weight_decay=recipe.weight_decay)
    else:
        opt = keras.optimizers.Adam(learning_rate=lr)
    model.compile(optimizer=opt,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
                  metrics=["accuracy"])
    return model


def float32_model(keras, arch: str, source):
    """``source``'s weights (a model or a .keras path) in an all-float32 graph of ``arch``, so the
    converters never see bfloat16, whatever policy the run trained under."""
    from .arch import ARCHS

    if not hasattr(source, "get_weights"):
        source = keras.models.load_model(source)
    keras.mixed_precision.set_global_policy("float32")
    clone = ARCHS[arch]()
    clone.set_weights(source.get_weights())
    return clone


def export_run(model, train_x: np.ndarray, seed: int, out: Path, preprocess: str = "none") -> None:
    """int8 and float TFLite plus labels and each model's contract (``.json`` beside it) into a run
    directory; the representative images are a seeded sample of Training, preprocessed as in training."""
    from edge.preprocess import photometric

    from .arch import count_macs

    rng = np.random.default_rng(seed)
    rep = photometric(train_x[rng.choice(len(train_x), size=min(500, len(train_x)), replace=False)], preprocess)
    export_int8(model, rep, out / "emotion_int8.tflite")
    export_float(model, out / "emotion_float.tflite")
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    for name in ("emotion_int8", "emotion_float"):
        write_contract(out / f"{name}.tflite", preprocess, model.name, count_macs(model))


def write_contract(model_path: Path, preprocess: str, arch: str, macs: int) -> None:
    """What the runtime needs to feed a model correctly, beside it as ``<name>.json``."""
    meta = {"preprocess": preprocess, "labels": list(LABELS), "arch": arch, "macs": int(macs)}
    model_path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


def export_int8(model, rep_images: np.ndarray, path: Path) -> bytes:
    """Full-integer post-training quantization; input int8 whose real value is the raw pixel."""
    import tensorflow as tf

    def rep():
        # Include the extreme pixel values so the input range is exactly 0..255 (scale 1, zp -128).
        yield [np.zeros((1, 48, 48, 1), np.float32)]
        yield [np.full((1, 48, 48, 1), 255.0, np.float32)]
        for img in rep_images:
            yield [img[None, :, :, None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    blob = conv.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return blob


def export_float(model, path: Path) -> bytes:
    import tensorflow as tf

    blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return blob


class _Progress:
    """One line per epoch: losses, accuracies, time and ETA; state saved for --resume."""

    def __init__(self, keras, out: Path, origin: dict, history: dict, best: float, total_epochs: int,
                 seed: int, keep_from: int = 0, val_x: np.ndarray | None = None, val_major: np.ndarray | None = None):
        self.k, self.out, self.origin, self.history, self.best = keras, out, origin, history, best
        self.seed, self.keep_from = seed, keep_from
        # With FER+ majorities the criterion, fixed before training, is the mean of the FER2013-label and
        # the FER+-majority accuracy on PublicTest; otherwise the FER2013-label accuracy alone.
        self.val_x, self.val_major = val_x, val_major
        self.total = total_epochs
        self.times: list[float] = []

    def callback(self):
        prog = self

        class CB(self.k.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                prog.t0 = time.monotonic()
                prog.reseed_dropout(self.model, epoch)

            def on_epoch_end(self, epoch, logs=None):
                prog.end(self.model, epoch, logs or {})

        return CB()

    def reseed_dropout(self, model, epoch):
        """Keras re-seeds dropout's generators when a checkpoint is loaded, so a resumed run would
        draw other masks; keyed by (seed, layer, epoch) they are the same resumed or not."""
        states = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        for i, v in enumerate(states):
            v.assign(np.array([self.seed * 1000 + i, epoch * 1_000_000], dtype=v.dtype))

    def end(self, model, epoch, logs):
        dt = time.monotonic() - self.t0
        self.times.append(dt)
        for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
            self.history.setdefault(k, []).append(float(logs.get(k, float("nan"))))
        self.history.setdefault("epoch_seconds", []).append(dt)
        va = float(logs.get("val_accuracy", 0.0))
        extra = ""
        if self.val_major is not None:
            keep = self.val_major >= 0
            p = model.predict(self.val_x[keep], batch_size=512, verbose=0).argmax(1)
            vf = float((p == self.val_major[keep]).mean())
            self.history.setdefault("val_ferplus_accuracy", []).append(vf)
            extra = f"  val_ferplus {vf:.4f}"
            va = (va + vf) / 2
        self.history.setdefault("criterion", []).append(va)
        mark = ""
        if va > self.best:
            self.best = va
            _write_atomic(self.out / "best.keras", model.save)
            mark = " *best"
        _write_atomic(self.out / "last.keras", model.save)
        if self.keep_from and epoch + 1 >= self.keep_from:
            (self.out / "snap").mkdir(exist_ok=True)
            shutil.copyfile(self.out / "last.keras", self.out / "snap" / f"epoch_{epoch + 1}.keras")
        state = {"epoch": epoch + 1, "best_val_accuracy": self.best, "history": self.history, **self.origin}
        _write_atomic(self.out / "state.json", lambda p: p.write_text(json.dumps(state, indent=1)))
        eta = (self.total - epoch - 1) * float(np.mean(self.times[-5:]))
        print(f"epoch {epoch + 1:3d}/{self.total}  loss {logs.get('loss', 0):.4f}  acc {logs.get('accuracy', 0):.4f}  "
              f"val_loss {logs.get('val_loss', 0):.4f}  val_acc {logs.get('val_accuracy', 0):.4f}{extra}  "
              f"criterion {va:.4f}  {dt:5.1f}s  "
              f"eta {eta / 60:5.1f} min{mark}", flush=True)


def train(args) -> Path:
    recipe = RECIPES[args.recipe]
    over = {k: getattr(args, k) for k in ("epochs", "batch", "lr", "warmup_epochs", "precision", "preprocess")
            if getattr(args, k) is not None}
    if args.augment is not None:
        over["augment"] = None if args.augment == "none" else args.augment
    if over:
        recipe = Recipe(**{**asdict(recipe), **over})
    for flag, path in [("--teacher", t) for t in args.teacher] + ([("--init", args.init)] if args.init else []):
        if not Path(path).is_file():
            raise SystemExit(f"{flag}: no such model: {path}")
    if not 0.0 <= args.alpha <= 1.0:
        raise SystemExit(f"--alpha must be between 0 and 1, not {args.alpha}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tf, keras = _setup_tf(args.threads, args.seed, recipe.precision)

    t = time.monotonic()
    d = fer.load(args.data, splits=("Training", "PublicTest"), limit=args.limit)
    tr, va = d["Training"], d["PublicTest"]
    print(f"data: {len(tr)} Training, {len(va)} PublicTest rows ({time.monotonic() - t:.1f}s)", flush=True)

    if args.consistent and not args.teacher:
        raise SystemExit("--consistent needs at least one --teacher")
    if args.teacher_scores and (args.teacher or args.consistent):
        raise SystemExit("--teacher-scores replaces --teacher: give one or the other")
    teachers = None
    scored = None
    if args.teacher_scores:
        scored = teacher_scores(Path(args.teacher_scores), tr)
        teachers = {"scores": str(Path(args.teacher_scores).resolve()), "pixels": scored[1], "alpha": args.alpha}
    if args.teacher:
        teachers = {"models": [str(Path(t).resolve()) for t in args.teacher], "alpha": args.alpha,
                    **({"consistent": True} if args.consistent else {})}
    init = str(Path(args.init).resolve()) if args.init else None
    # What the run is made from: recorded in state.json, and a resumed run must be made from the same.
    origin = {"recipe": asdict(recipe), "teachers": teachers, "init": init, **({"sam": args.sam} if args.sam else {})}
    threads = effective_threads(args.threads)
    start, history, best = 0, {}, -1.0
    state_path = out / "state.json"
    if args.resume and state_path.exists():
        state = json.loads(state_path.read_text())
        for key, why in (("recipe", "was written by a different recipe"), ("teachers", "was written with other teachers"),
                         ("init", "was started from another model"), ("sam", "was trained with another --sam")):
            if state.get(key) != origin.get(key):
                raise SystemExit(f"--resume: {state_path} {why}: {state.get(key)}")
        start, history, best = state["epoch"], state["history"], state["best_val_accuracy"]
        # Not an error: a run may have to move to another machine. But the thread count changes the
        # order of floating-point sums, so the rest is no longer what an uninterrupted run computes.
        if state.get("threads", threads) != threads:
            print(f"warning: {state_path} was trained with {state['threads']} TensorFlow threads, this process "
                  f"uses {threads}: it continues, but not bit for bit as the first process would have "
                  f"(--threads {state['threads']} keeps it exact)", file=sys.stderr, flush=True)
        print(f"resuming after epoch {start} (best PublicTest {best:.4f})", flush=True)
    targets, teacher_nets = None, None
    from edge.preprocess import photometric

    calib = photometric(tr.x[np.random.default_rng(args.seed).choice(len(tr.x), min(4096, len(tr.x)), replace=False)],
                        recipe.preprocess)
    if args.consistent:
        from .warmstart import keras_from_tflite

        t = time.monotonic()
        teacher_nets = [keras_from_tflite(p, calib) for p in args.teacher]
        print(f"teachers: {len(args.teacher)} models ({', '.join(m.name for m in teacher_nets)}), alpha "
              f"{args.alpha}, scored on every augmented batch ({time.monotonic() - t:.1f}s)", flush=True)
    elif scored is not None:
        soft = scored[0] / scored[0].sum(axis=1, keepdims=True)
        targets = ((1 - args.alpha) * np.eye(len(LABELS))[tr.y] + args.alpha * soft).astype(np.float32)
        agree = float((targets.argmax(1) == tr.y).mean())
        print(f"teacher scores: {args.teacher_scores}, alpha {args.alpha}; soft targets agree with the labels on "
              f"{agree:.1%} of Training", flush=True)
    elif teachers:
        t = time.monotonic()
        targets = cached_teacher_targets(out, tr.y, tr.x, args.teacher, args.alpha)
        agree = float((targets.argmax(1) == tr.y).mean())
        print(f"teachers: {len(args.teacher)} models, alpha {args.alpha}; soft targets agree with the labels on "
              f"{agree:.1%} of Training ({time.monotonic() - t:.1f}s)", flush=True)
    if recipe.ferplus:
        base = label_targets(tr, recipe.ferplus)
        targets = base if targets is None else (targets + base) / 2
    ds, steps = _train_dataset(tf, tr.x, tr.y, recipe, args.seed, start, targets, teacher_nets, args.alpha)
    if start:
        model = keras.models.load_model(out / "last.keras")
    else:
        model = build(keras, recipe, steps)
        if init and init.endswith(".keras"):
            # A float Keras model of the same network (an averaged run's averaged.keras): its exact weights,
            # BatchNorm included, instead of an int8 model's dequantized ones.
            model.set_weights(keras.models.load_model(init).get_weights())
            print(f"initialised from {args.init}", flush=True)
        elif init:
            from .warmstart import load_tflite_weights

            load_tflite_weights(model, init, calib)
            print(f"initialised from {args.init}", flush=True)
    if args.sam:
        try:
            from .research.sam import use_sam
        except ImportError:  # research code lives in the repository, not in the installed package
            raise SystemExit("--sam is research code: run python -m model.train from a checkout") from None

        use_sam(model, args.sam)
    from .arch import count_macs

    print(f"model {recipe.arch}: {model.count_params():,} params, {count_macs(model) / 1e6:.1f} M MACs/face; "
          f"recipe {asdict(recipe)}; {threads} TensorFlow threads", flush=True)
    val = (photometric(va.x, recipe.preprocess)[..., None].astype(np.float32),
           np.eye(len(LABELS), dtype=np.float32)[va.y])
    major = va.ferplus_majority() if recipe.ferplus else None
    prog = _Progress(keras, out, {**origin, "threads": threads}, history, best, recipe.epochs, args.seed, args.keep_from,
                     val[0], major)
    end = recipe.epochs if not args.stop_after else min(recipe.epochs, start + args.stop_after)
    if start < end:
        model.fit(ds, epochs=end, initial_epoch=start, steps_per_epoch=steps,
                  validation_data=val, validation_batch_size=512, verbose=0, callbacks=[prog.callback()])

    export_run(float32_model(keras, recipe.arch, out / "best.keras"), tr.x, args.seed, out, recipe.preprocess)
    print(f"exported {out / 'emotion_int8.tflite'} and {out / 'emotion_float.tflite'} "
          f"(best PublicTest {prog.best:.4f})", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="fer2013plus.csv.gz, a Kaggle fer2013.csv[.gz] or an image folder with train/ "
                                   "and test/ (default: ../shared/data/fer2013plus.csv.gz when present)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, state.json, exported models)")
    p.add_argument("--recipe", choices=sorted(RECIPES), default="vgg_gap")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", dest="warmup_epochs", type=int, metavar="EPOCHS",
                   help="override the recipe's learning-rate warm-up")
    p.add_argument("--augment", choices=("full", "light", "none"), help="override the recipe's augmentation level")
    p.add_argument("--init", metavar="MODEL",
                   help="start from this model's weights (same architecture; an int8 .tflite or a float .keras) "
                        "instead of from scratch: fine-tuning, e.g. with --teacher, a lower --lr and a short schedule")
    p.add_argument("--preprocess", choices=PREPROCESS_METHODS,
                   help="override the recipe's photometric step (recorded in the exported model's .json)")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"),
                   help="override the recipe's; whether bfloat16 pays depends on the CPU (measured: 1.45x "
                        "faster on one machine, 1.5x slower on another with AVX512-BF16 but no AMX)")
    p.add_argument("--teacher", action="append", default=[], metavar="TFLITE",
                   help="distil from this model's scores (repeat for an ensemble); computed once on Training "
                        "unless --consistent")
    p.add_argument("--teacher-scores", metavar="NPZ",
                   help="soft labels from model/research/teacher.py (a GPU-trained teacher): mixed into the targets "
                        "with --alpha, as --teacher does with TFLite teachers")
    p.add_argument("--alpha", type=float, default=0.7,
                   help="weight of the teachers' scores in the targets (default 0.7; the rest is the label)")
    p.add_argument("--consistent", action="store_true",
                   help="score the teachers on each augmented batch, as the student sees it, instead of once "
                        "on the plain faces (about 60 s per teacher per epoch more here)")
    p.add_argument("--sam", type=float, default=0.0, metavar="RHO",
                   help="sharpness-aware minimisation with this radius (e.g. 0.05; twice the time per step)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all cores); a rerun with the same seed "
                   "is exact only with the same count")
    p.add_argument("--limit", type=int, help="at most this many rows per split (smoke tests)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--keep-from", type=int, default=0, metavar="EPOCH",
                   help="also keep every checkpoint from this epoch on in snap/, for python -m model.average")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="train at most N epochs in this invocation, export the best so far; --resume goes on")
    args = p.parse_args(argv)
    return fer.cli(lambda: train(args))


if __name__ == "__main__":
    sys.exit(main())
