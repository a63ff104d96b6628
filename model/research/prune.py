"""Slim a trained res_teacher into res_slim by keeping its strongest channels.

    python -m model.research.prune --source model/runs/res/averaged.keras --out model/runs/slim/init.keras

Where res_slim is narrower (56 of 64 channels at 24x24), the residual stream keeps the channels
whose BatchNorm scales (|gamma| of the two layers that write into it) are largest, and the block's
inner conv its own strongest; every other weight is copied. The result is a starting point for a
short distillation fine-tuning (``model.train --recipe res_slim --init``), not a finished model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .. import tf_environment


def _strongest(gammas: list[np.ndarray], n: int) -> np.ndarray:
    score = np.sum([np.abs(g) for g in gammas], axis=0)
    return np.sort(np.argsort(-score, kind="stable")[:n])


def slim(source, target) -> dict[str, int]:
    """Copy ``source``'s weights into the narrower ``target`` (both res_teacher-shaped Keras models);
    returns the kept width per narrowed stage."""
    src = {layer.name: layer for layer in source.layers}
    ins: dict[str, np.ndarray] = {}   # layer -> kept input channels
    outs: dict[str, np.ndarray] = {}  # layer -> kept output channels (convs and their BatchNorms)
    kept = {}
    s = 1
    while f"s{s}in_conv" in src:
        full = src[f"s{s}in_conv"].filters
        width = target.get_layer(f"s{s}in_conv").filters
        if width != full:
            stream = _strongest([src[f"s{s}in_bn"].gamma.numpy(), src[f"s{s}r2_bn"].gamma.numpy()], width)
            inner = _strongest([src[f"s{s}r1_bn"].gamma.numpy()], width)
            for name in (f"s{s}in_conv", f"s{s}in_bn", f"s{s}r2_conv", f"s{s}r2_bn"):
                outs[name] = stream
            for name in (f"s{s}r1_conv", f"s{s}r1_bn"):
                outs[name] = inner
            ins[f"s{s}r1_conv"], ins[f"s{s}r2_conv"] = stream, inner
            ins[f"s{s + 1}in_conv" if f"s{s + 1}in_conv" in src else "scores"] = stream
            kept[f"s{s}"] = width
        s += 1
    for layer in target.layers:
        weights = src[layer.name].get_weights()
        if not weights:
            continue
        if layer.name in outs and layer.name.endswith("_bn"):
            weights = [w[outs[layer.name]] for w in weights]
        elif layer.name.endswith("_conv"):
            k = weights[0]
            if layer.name in ins:
                k = k[:, :, ins[layer.name], :]
            if layer.name in outs:
                k = k[..., outs[layer.name]]
            weights = [k]
        elif layer.name == "scores" and "scores" in ins:
            weights = [weights[0][ins["scores"]], weights[1]]
        layer.set_weights(weights)
    return kept


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.research.prune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="a trained res_teacher (.keras)")
    p.add_argument("--out", required=True, help="where the slimmed res_slim goes (.keras)")
    args = p.parse_args(argv)
    if not Path(args.source).is_file():
        raise SystemExit(f"--source: no such model: {args.source}")
    tf_environment()
    import keras

    from ..arch import count_macs, res_slim

    source = keras.models.load_model(args.source)
    target = res_slim()
    kept = slim(source, target)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    target.save(out)
    print(f"{out}: res_slim, {target.count_params():,} params, {count_macs(target) / 1e6:.1f} M MACs; "
          f"kept {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
