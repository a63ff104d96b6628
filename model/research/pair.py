"""Join separately trained networks into one graph that averages their scores, and export it.

    python -m model.train --recipe vgg_half --out runs/vgg_half --keep-from 34
    python -m model.train --recipe res_half --out runs/res_half --keep-from 34
    python -m model.average --run runs/vgg_half --from-epoch 34      # (and res_half)
    python -m model.research.pair --member runs/vgg_half --member runs/res_half --out runs/pair

Two networks trained apart make different mistakes; averaging their scores is the ensemble that
lifted every pair of our full-size networks by about a point. Inside one graph it is a single
forward pass whose cost is the members' sum, so two half-size members fit the budget of one
full-size network. A member is a run directory (the model its weight averaging exported, else its
best epoch) or a ``.keras`` file. Each member and the pair are scored on PublicTest; PrivateTest is
left to ``model.evaluate``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import data as fer
from .. import tf_environment


def member_checkpoint(path: Path) -> Path:
    """The float checkpoint a run stands for: what ``model.average`` exported, else its best epoch."""
    if path.suffix == ".keras":
        return path
    chosen = path / "average.json"
    if chosen.is_file() and json.loads(chosen.read_text()).get("exported") == "averaged":
        return path / "averaged.keras"
    return path / "best.keras"


def load_member(keras, path: Path, index: int):
    """A member as a float32 graph of its architecture (found by the network's name), renamed to be
    unique within the pair."""
    from ..arch import ARCHS
    from ..train import float32_model

    ckpt = member_checkpoint(path)
    if not ckpt.is_file():
        raise fer.DataError(f"--member {path}: no such model: {ckpt}")
    trained = keras.models.load_model(ckpt)
    if trained.name not in ARCHS:
        raise fer.DataError(f"--member {path}: network {trained.name!r} is not one of {sorted(ARCHS)}")
    net = float32_model(keras, trained.name, trained)
    return keras.Model(net.input, net.output, name=f"m{index}_{trained.name}")


def make_pair(members: list[Path], out: Path, data_path=None, limit: int | None = None, seed: int = 1) -> dict:
    tf_environment()
    import keras

    from ..arch import count_macs, pair
    from ..average import keras_criterion
    from ..train import export_run

    t = time.monotonic()
    nets = [load_member(keras, p, i) for i, p in enumerate(members, 1)]
    d = fer.load(data_path, splits=("Training", "PublicTest"), limit=limit)
    tr, va = d["Training"], d["PublicTest"]
    result = {"members": []}
    for path, net in zip(members, nets):
        acc, macs = keras_criterion(net, va.x, va, False), count_macs(net)
        result["members"].append({"model": str(member_checkpoint(path)), "network": net.name, "macs": macs,
                                  "params": net.count_params(), "public_test": round(acc, 4)})
        print(f"member {net.name}: {macs / 1e6:.1f} M MACs, {net.count_params():,} params, "
              f"PublicTest {acc:.4f} float", flush=True)
    joined = pair(nets)
    acc = keras_criterion(joined, va.x, va, False)
    result.update(macs=count_macs(joined), params=joined.count_params(), public_test=round(acc, 4))
    print(f"pair: {result['macs'] / 1e6:.1f} M MACs, {result['params']:,} params, PublicTest {acc:.4f} float "
          f"({time.monotonic() - t:.0f}s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    joined.save(out / "pair.keras")
    export_run(joined, tr.x, seed, out)
    result["int8_bytes"] = (out / "emotion_int8.tflite").stat().st_size
    (out / "pair.json").write_text(json.dumps(result, indent=1))
    print(f"exported {out / 'emotion_int8.tflite'} ({result['int8_bytes']:,} bytes)", flush=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.research.pair", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--member", action="append", default=[], required=True,
                   help="a training run directory or a .keras model (repeat; at least two)")
    p.add_argument("--out", required=True, help="where the joined model goes")
    p.add_argument("--data", help="fer2013plus.csv.gz, fer2013.csv[.gz] or image folder "
                   "(default: ../shared/data/fer2013plus.csv.gz)")
    p.add_argument("--limit", type=int, help="at most this many rows per split (smoke tests)")
    p.add_argument("--seed", type=int, default=1, help="picks the quantization's representative images")
    args = p.parse_args(argv)
    if len(args.member) < 2:
        print("error: a pair needs at least two --member models", file=sys.stderr)
        return 2
    return fer.cli(lambda: make_pair([Path(m) for m in args.member], Path(args.out), args.data, args.limit,
                                     args.seed))


if __name__ == "__main__":
    sys.exit(main())
