"""Int8 emotion classifier: the shipped TFLite model, loaded once, all faces of a frame in one call."""
from __future__ import annotations

import json
import logging
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np

from emotion_model import LABELS  # the canonical order, shared with training

from . import preprocess
from .tflite import load_interpreter

log = logging.getLogger(__name__)


class ModelError(RuntimeError):
    pass


# The models installed with the package (``model/`` in the repository), by the name [classifier] model takes.
SHIPPED = {"accurate": "emotion_int8.tflite", "fast": "emotion_fast_int8.tflite"}


def shipped_model(name: str = "accurate") -> Path:
    """A model installed with the package: "accurate" (the default) or "fast" (for slow CPUs)."""
    return Path(str(resources.files("emotion_model") / SHIPPED[name]))


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError as e:
        raise ModelError(f"{path}: cannot read labels: {e.strerror or e}") from None
    return labels


def read_contract(model: Path) -> dict | None:
    """The model's own description beside it (``emotion_int8.tflite`` -> ``emotion_int8.json``): which
    photometric step it was trained with, its labels, network and cost. None for a model without one."""
    path = model.with_suffix(".json")
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable model description: {e}") from None
    if not isinstance(meta, dict) or meta.get("preprocess") not in preprocess.METHODS:
        raise ModelError(f"{path}: 'preprocess' must be one of {', '.join(preprocess.METHODS)}")
    return meta


def choose_preprocess(path: Path, setting: str, contract: dict | None) -> str:
    """What the runtime applies to each face: the model's own choice under "auto"; a setting that
    contradicts the model's description is refused, since the model would then see faces unlike any it
    learnt from. A model without a description gets the min-max stretch, as models before descriptions."""
    if contract is None:
        return "stretch" if setting == "auto" else setting
    trained = contract["preprocess"]
    if setting not in ("auto", trained):
        raise ModelError(f"{path}: the model expects faces with preprocess = \"{trained}\" "
                         f"({path.with_suffix('.json').name}), but [classifier] preprocess = \"{setting}\"; "
                         "use \"auto\"")
    return trained


class Classifier:
    """Wraps one TFLite interpreter. Not thread-safe by design of TFLite; a lock guards it
    because the bench and the HTTP view may call from other threads."""

    def __init__(self, model_path: str | Path | None = None, labels_path: str | Path | None = None,
                 threads: int = 1, margin: float = 0.0, flip: bool = False, photometric: str = "auto"):
        name = str(model_path or "accurate")
        path = shipped_model(name) if name in SHIPPED else Path(name)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        try:
            self.interp = load_interpreter(str(path), threads)
        except ValueError as e:
            raise ModelError(f"{path}: not a TFLite model: {e}") from None
        self.path = path
        self.margin = margin
        self.flip = flip
        self.contract = read_contract(path)
        self.preprocess = choose_preprocess(path, photometric, self.contract)
        inp = self.interp.get_input_details()[0]
        out = self.interp.get_output_details()[0]
        if tuple(inp["shape"][1:]) != (preprocess.SIDE, preprocess.SIDE, 1):
            raise ModelError(f"{path}: input shape {tuple(inp['shape'])}, expected [N,48,48,1]")
        self.in_index, self.out_index = inp["index"], out["index"]
        self.in_dtype = inp["dtype"]
        self.in_scale, self.in_zero = inp["quantization"]
        self.out_scale, self.out_zero = out["quantization"]
        if labels_path:  # asked for by name: it must exist
            self.labels = read_labels(Path(labels_path))
        elif path.with_name("labels.txt").is_file():
            self.labels = read_labels(path.with_name("labels.txt"))
        else:
            self.labels = tuple(self.contract["labels"]) if self.contract and "labels" in self.contract else LABELS
        if int(out["shape"][-1]) != len(self.labels):
            raise ModelError(f"{path}: {out['shape'][-1]} outputs but {len(self.labels)} labels")
        self._batch = 1
        self._lock = threading.Lock()
        log.info("model %s: input %s scale %.4g zero %d, %d labels, faces %s", path.name,
                 np.dtype(self.in_dtype).name, self.in_scale, self.in_zero, len(self.labels),
                 "as they are" if self.preprocess == "none" else self.preprocess + "d")

    def model_input(self, faces: np.ndarray) -> np.ndarray:
        """uint8 faces ``[N,48,48]`` -> the model's input batch: the photometric step the model was trained
        with, then quantized with the model's own scale and zero point."""
        faces = preprocess.photometric(faces, self.preprocess)
        return preprocess.quantize(faces, self.in_scale, self.in_zero, self.in_dtype)

    def prepare(self, gray: np.ndarray, boxes, main: np.ndarray | None = None, scale=(1.0, 1.0)) -> np.ndarray:
        return self.model_input(preprocess.sharper_patches(gray, boxes, self.margin, main, scale))

    def scores_for_input(self, x: np.ndarray) -> np.ndarray:
        """Scores [N,7] (probabilities, float32) for an already-quantized batch."""
        n = len(x)
        if n == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        with self._lock:
            if n != self._batch:
                self.interp.resize_tensor_input(self.in_index, [n, preprocess.SIDE, preprocess.SIDE, 1])
                self.interp.allocate_tensors()
                self._batch = n
            self.interp.set_tensor(self.in_index, x)
            self.interp.invoke()
            y = self.interp.get_tensor(self.out_index).astype(np.float32)
        if self.out_scale:
            y = (y - self.out_zero) * self.out_scale
        return y

    def ms_per_face(self, runs: int = 8) -> float:
        """The median wall time of one face through the model on this CPU (after one warm-up call)."""
        x = self.model_input(np.full((1, preprocess.SIDE, preprocess.SIDE), 128, np.uint8))
        self.scores_for_input(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.scores_for_input(x)
            times.append((time.perf_counter() - t0) * 1000)
        return float(np.median(times))

    def classify(self, gray: np.ndarray, boxes, main: np.ndarray | None = None, scale=(1.0, 1.0),
                 flip: bool | None = None) -> np.ndarray:
        """Scores [N,7] for faces ``boxes`` (x, y, w, h in ``gray`` coordinates); small faces are cut from
        ``main`` (the frame's BGR image, ``scale`` times larger) when there is one.

        With ``flip`` (default: the classifier's own setting), each face is also classified mirrored, in the
        same batched call, and the two score vectors are averaged (faces are near-symmetric; their errors are not).
        """
        x = self.prepare(gray, boxes, main, scale)
        if not (self.flip if flip is None else flip) or not len(x):
            return self.scores_for_input(x)
        p = self.scores_for_input(np.concatenate([x, x[:, :, ::-1]]))
        return (p[:len(x)] + p[len(x):]) / 2
