"""Start a Keras network from a shipped int8 TFLite model's weights.

A run's Keras checkpoints are not kept in the repository (only the TFLite models are), so
fine-tuning a shipped model, e.g. distilling an ensemble into one of its members, starts from the
dequantized int8 weights. The converter folded each BatchNorm into its conv's bias; the BatchNorm
layers are rebuilt so the network computes the same function in both modes: moving statistics set
to the measured statistics of the conv outputs on Training, gamma and beta chosen to undo them.
Training-mode batch statistics are then close to the moving ones, so fine-tuning starts from the
model's accuracy instead of from a scrambled network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _tflite_layers(path: str | Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(op, dequantized weight, dequantized bias) of each CONV_2D / FULLY_CONNECTED, in graph order."""
    from edge.tflite import interpreter_class

    it = interpreter_class()(model_path=str(path))
    it.allocate_tensors()
    details = {t["index"]: t for t in it.get_tensor_details()}

    def value(i):
        t = details[i]
        q = t["quantization_parameters"]
        raw = it.get_tensor(i)
        if raw.dtype == np.float32 or not len(q["scales"]):
            return raw.astype(np.float32)
        # Per-channel along the quantized dimension (output channels for weights and biases).
        shape = [1] * raw.ndim
        shape[q["quantized_dimension"]] = -1
        return ((raw.astype(np.float64) - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)).astype(np.float32)

    out = []
    for op in it._get_ops_details():
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            _, w, b = op["inputs"][:3]
            weight = value(w)
            # -1: an op without a bias (the converter drops all-zero ones); TFLite weights are [out, ...].
            out.append((op["op_name"], weight, value(b) if b >= 0 else np.zeros(weight.shape[0], np.float32)))
    return out


def _layer_shapes(model) -> list[tuple[str, tuple]]:
    import keras

    kinds = ((keras.layers.Conv2D, "CONV_2D"), (keras.layers.Dense, "FULLY_CONNECTED"))
    return [(name, tuple(layer.kernel.shape)) for cls, name in kinds for layer in model.layers if isinstance(layer, cls)]


def _tflite_shapes(src) -> list[tuple[str, tuple]]:
    # TFLite stores conv kernels [out, kh, kw, in] and dense kernels [out, in].
    return [(op, tuple(np.moveaxis(w, 0, -1).shape) if op == "CONV_2D" else tuple(w.T.shape)) for op, w, _ in src]


def keras_from_tflite(path: str | Path, calib_x: np.ndarray):
    """A Keras network computing what the int8 TFLite model at ``path`` computes (to float
    precision), its architecture found among ``arch.ARCHS`` by the layer shapes; frozen."""
    from .arch import ARCHS

    src = _tflite_layers(path)
    have = _tflite_shapes(src)
    for make in ARCHS.values():
        model = make()
        # Only conv -> BatchNorm networks can be rebuilt (the thesis CNN cannot).
        if _layer_shapes(model) == have and any(layer.name.endswith("_bn") for layer in model.layers):
            load_tflite_weights(model, path, calib_x, src)
            model.trainable = False
            return model
    raise SystemExit(f"{path}: its layers {have} match none of the networks {sorted(ARCHS)}")


def load_tflite_weights(model, path: str | Path, calib_x: np.ndarray, src=None) -> None:
    """Set ``model`` (a network from ``arch.ARCHS``: conv without bias -> BatchNorm -> ReLU blocks
    and a dense head) to the weights of the TFLite model at ``path``. ``calib_x``: uint8 faces
    [N,48,48] whose conv-output statistics become the BatchNorm statistics. ``src``: the model's
    layers when the caller has already read them."""
    import keras

    src = src or _tflite_layers(path)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    want, have = _layer_shapes(model), _tflite_shapes(src)
    if want != have:
        raise SystemExit(f"--init {path}: its layers {have} do not match the network {model.name}'s {want}")

    blocks = []  # (conv, its BatchNorm, the folded bias)
    for conv, (_, w, b) in zip(convs, src):
        conv.kernel.assign(np.moveaxis(w, 0, -1))
        bn = model.get_layer(conv.name.replace("_conv", "_bn"))
        blocks.append((conv, bn, b))
        # Identity BatchNorm plus the folded bias, until the statistics are measured below.
        bn.gamma.assign(np.ones_like(b))
        bn.beta.assign(b)
        bn.moving_mean.assign(np.zeros_like(b))
        bn.moving_variance.assign(np.full_like(b, 1.0 - bn.epsilon))
    for d, (_, w, b) in zip(dense, src[len(convs):]):
        d.kernel.assign(w.T)
        d.bias.assign(b)

    # Each conv's output depends on the BatchNorms before it, which compute x + b until reassigned here.
    probe = keras.Model(model.input, [conv.output for conv, _, _ in blocks])
    acts = probe.predict(calib_x[..., None].astype(np.float32), batch_size=256, verbose=0)
    for (_, bn, b), a in zip(blocks, acts):
        mean = a.mean(axis=(0, 1, 2))
        var = a.var(axis=(0, 1, 2))
        std = np.sqrt(var + bn.epsilon)
        # gamma * (x - mean) / std + beta == x + b  for gamma = std, beta = mean + b.
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(var)
        bn.gamma.assign(std)
        bn.beta.assign(mean + b)
