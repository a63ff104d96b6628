"""Network definitions (TensorFlow/Keras; imported only by training and float evaluation)."""
from __future__ import annotations

import keras
from keras import layers


def _conv_bn(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def vgg_gap(num_classes: int = 7, dropout: float = 0.4,
            plan=((32, 2), (64, 2), (128, 3), (256, 2)), spatial_drop: float = 0.1,
            name: str = "vgg_gap") -> keras.Model:
    """VGG-style 2-2-3-2 convs at 32-64-128-256 channels, BN + ReLU, global average pooling.

    About 1.3 M parameters and 140 M MACs per 48x48 face; the extra conv sits at 12x12
    where it is cheap and where expression parts (mouth, brows) span a few cells.
    """
    inp = keras.Input((48, 48, 1), name="gray")
    # The model contract takes raw 0..255 pixels; normalisation lives here.
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inp)
    for b, (f, n) in enumerate(plan, 1):
        for i in range(1, n + 1):
            x = _conv_bn(x, f, f"b{b}c{i}")
        if b < len(plan):
            x = layers.MaxPooling2D(name=f"b{b}_pool")(x)
            x = layers.SpatialDropout2D(spatial_drop * b, name=f"b{b}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="head_drop")(x)
    # float32 even under a mixed policy: softmax and the loss need more than bf16's 8 bits.
    out = layers.Dense(num_classes, activation="softmax", name="scores", dtype="float32")(x)
    return keras.Model(inp, out, name=name)


def vgg_wide(num_classes: int = 7) -> keras.Model:
    """vgg_gap with MACs moved from 48x48 to 6x6: one conv at full resolution instead of two pays
    for 320 channels in the last block (132 M MACs, 1.7 M parameters, 14 % faster to train), and
    half the dropout, because vgg_gap's augmented training accuracy only reached its PublicTest
    accuracy at the end of 60 epochs."""
    return vgg_gap(num_classes, dropout=0.25, plan=((32, 1), (64, 2), (128, 3), (320, 2)),
                   spatial_drop=0.05, name="vgg_wide")


def res_teacher(num_classes: int = 7, widths=(64, 128, 256), name: str = "res_teacher", stem: int = 32) -> keras.Model:
    """A residual network as a third teacher, different in kind from the two VGG-style ones: their
    ensemble gains little from more networks like themselves. A stem conv at 48x48, then per stage
    a max-pool, a conv that widens and one two-conv residual block (160 M MACs: a teacher only,
    over the shipped model's budget)."""
    inp = keras.Input((48, 48, 1), name="gray")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inp)
    x = _conv_bn(x, stem, "stem")
    for s, f in enumerate(widths, 1):
        x = layers.MaxPooling2D(name=f"s{s}_pool")(x)
        x = _conv_bn(x, f, f"s{s}in")
        y = _conv_bn(x, f, f"s{s}r1")
        y = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"s{s}r2_conv")(y)
        y = layers.BatchNormalization(name=f"s{s}r2_bn")(y)
        x = layers.ReLU(name=f"s{s}_out")(layers.Add(name=f"s{s}_add")([x, y]))
        x = layers.SpatialDropout2D(0.05 * s, name=f"s{s}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.25, name="head_drop")(x)
    out = layers.Dense(num_classes, activation="softmax", name="scores", dtype="float32")(x)
    return keras.Model(inp, out, name=name)


def res_slim(num_classes: int = 7) -> keras.Model:
    """res_teacher with 56 instead of 64 channels at 24x24, where a channel costs most: 147 M MACs,
    inside the Pi budget. Either pruned from the trained teacher (``python -m model.research.prune``) and
    fine-tuned, or trained from scratch: 46 epochs tie the VGG-style soup, longer schedules (64, 96
    epochs, the last quarter averaged) beat it; which one ships is in model/card.json."""
    return res_teacher(num_classes, widths=(56, 128, 256), name="res_slim")


def res_fast(num_classes: int = 7) -> keras.Model:
    """res_teacher at about a quarter of res_slim's cost (stem 16, stages 28-64-128): 37 M MACs, for CPUs
    where res_slim's 147 M take too long per face (a Pi 4 core: about 7 ms instead of 25)."""
    return res_teacher(num_classes, widths=(28, 64, 128), name="res_fast", stem=16)


def vgg_half(num_classes: int = 7) -> keras.Model:
    """vgg_wide at about 0.7x the width (24-48-88-224 channels): 66.6 M MACs, 0.84 M parameters.
    Half of a pair (see ``pair``), and on its own a model at about half the shipped one's cost per face."""
    return vgg_gap(num_classes, dropout=0.25, plan=((24, 1), (48, 2), (88, 3), (224, 2)),
                   spatial_drop=0.05, name="vgg_half")


def res_half(num_classes: int = 7) -> keras.Model:
    """res_teacher at about 0.7x the width (stem 24, stages 40-88-180): 72.8 M MACs, 0.94 M
    parameters. The other half of a pair: a residual network beside a VGG-style one, because
    teachers A and C, different in kind, ensembled better than A and B (70.35 vs 69.6 % PrivateTest)."""
    return res_teacher(num_classes, widths=(40, 88, 180), name="res_half", stem=24)


def pair(members: list[keras.Model], name: str = "pair") -> keras.Model:
    """Trained networks as one graph that averages their scores: an ensemble in a single forward
    pass, whose cost is the members' sum. Each member keeps its own weights and BatchNorm."""
    inp = keras.Input((48, 48, 1), name="gray")
    out = layers.Average(name="scores", dtype="float32")([m(inp) for m in members])
    return keras.Model(inp, out, name=name)


def thesis_cnn(num_classes: int = 7) -> keras.Model:
    """The thesis network as published: four 'valid' conv/pool stages 64-128-256-256, dense 128-64-7."""
    inp = keras.Input((48, 48, 1), name="gray")
    x = layers.Rescaling(1 / 255.0, name="normalise")(inp)
    for f in (64, 128, 256, 256):
        x = layers.Conv2D(f, 3, padding="valid", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dense(64, activation="relu")(x)
    out = layers.Dense(num_classes, activation="softmax", name="scores")(x)
    return keras.Model(inp, out, name="thesis_cnn")


ARCHS = {"vgg_gap": vgg_gap, "vgg_wide": vgg_wide, "res_teacher": res_teacher, "res_slim": res_slim, "res_fast": res_fast,
         "vgg_half": vgg_half, "res_half": res_half, "thesis": thesis_cnn}


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates for one 48x48 face (conv and dense layers; BN folds into conv)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        elif isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += h * w * kh * kw * c_in * c_out
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)
