"""Average the weights of a run's last epochs (stochastic weight averaging, after the fact).

    python -m model.train --recipe vgg_gap_long --out runs/x --keep-from 45
    python -m model.average --run runs/x

Near the end of a cosine schedule the weights wander around a flat minimum; their mean often
sits nearer its centre than any single epoch. The averaged network's BatchNorm statistics
are recomputed on Training (layer by layer, no augmentation), then it is scored on
PublicTest next to the run's best checkpoint, and exported in its place only if it is better
there: PrivateTest is never looked at.

With ``--also`` the snapshots of further runs join the average ("model soup"). That only makes
sense for runs that started from the same weights and stayed near them, such as fine-tuning
runs of one recipe with different seeds; the result goes to ``--out``:

    python -m model.average --run runs/ft --also runs/ft_seed2 --from-epoch 4 --out runs/soup
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from . import data as fer
from . import tf_environment


def snapshots(run: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in (run / "snap").glob("epoch_*.keras")
             if (m := re.fullmatch(r"epoch_(\d+)\.keras", p.name))]
    return sorted(found)


def keras_criterion(model, x: np.ndarray, split, ferplus: bool) -> float:
    """A float Keras model's score on one split (a ``data.Split``, its faces ``x`` through the run's photometric
    step, as in training) by the run's own criterion: FER2013-label accuracy, or its mean with FER+-majority
    accuracy when the run trained on FER+ votes."""
    p = model.predict(x[..., None].astype(np.float32), batch_size=512, verbose=0).argmax(1)
    acc = float((p == split.y).mean())
    if not ferplus:
        return acc
    major = split.ferplus_majority()
    keep = major >= 0
    return (acc + float((p[keep] == major[keep]).mean())) / 2


def recalibrate_bn(keras, model, x: np.ndarray, batch: int = 1024) -> None:
    """Exact Training-set mean and variance at each BatchNorm input, in network order, so each
    layer sees inputs normalised by the already recalibrated layers before it."""
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        feed = keras.Model(model.input, layer.input)
        s1 = s2 = 0.0
        n = 0
        for i in range(0, len(x), batch):
            o = feed.predict(x[i:i + batch], verbose=0).astype(np.float64)
            s1 = s1 + o.sum(axis=(0, 1, 2))
            s2 = s2 + (o * o).sum(axis=(0, 1, 2))
            n += o.shape[0] * o.shape[1] * o.shape[2]
        mean = s1 / n
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(s2 / n - mean * mean, 0.0).astype(np.float32))


def average(run: Path, data_path=None, limit: int | None = None, first: int = 0, seed: int = 1,
            also: list[Path] = (), out: Path | None = None) -> dict:
    tf_environment()
    import keras

    from edge.preprocess import photometric

    from .train import export_run, float32_model

    out = out or run
    state = json.loads((run / "state.json").read_text())
    for r in also:
        if json.loads((r / "state.json").read_text())["recipe"] != state["recipe"]:
            raise fer.DataError(f"{r}: a different recipe from {run}; only runs of one recipe can be averaged")
    snaps = []
    for r in (run, *also):
        mine = [(e, p) for e, p in snapshots(r) if e >= first]
        if not mine:
            raise fer.DataError(f"{r / 'snap'}: no epoch snapshots from epoch {first} (train with --keep-from)")
        snaps += mine
    arch = state["recipe"]["arch"]
    # Runs from before these keys: no photometric step, FER2013 labels only.
    preprocess, ferplus = state["recipe"].get("preprocess", "none"), bool(state["recipe"].get("ferplus"))
    t = time.monotonic()
    d = fer.load(data_path, splits=("Training", "PublicTest"), limit=limit)
    tr, va = d["Training"], d["PublicTest"]

    best = float32_model(keras, arch, run / "best.keras")
    weights = [keras.models.load_model(p).get_weights() for _, p in snaps]
    model = keras.models.clone_model(best)
    model.set_weights([np.mean([w[i] for w in weights], axis=0) for i in range(len(weights[0]))])
    recalibrate_bn(keras, model, photometric(tr.x, preprocess)[..., None].astype(np.float32))
    va_x = photometric(va.x, preprocess)
    acc_avg, acc_best = (keras_criterion(m, va_x, va, ferplus) for m in (model, best))
    epochs = sorted({e for e, _ in snaps})
    use = acc_avg > acc_best
    runs = f" of {1 + len(also)} runs" if also else ""
    print(f"averaged epochs {epochs[0]}-{epochs[-1]}{runs} ({len(snaps)}): PublicTest {acc_avg:.4f}; "
          f"best single epoch {acc_best:.4f} -> exporting the {'average' if use else 'best epoch'} "
          f"({time.monotonic() - t:.0f}s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "averaged.keras")
    result = {"epochs": epochs, "criterion": "mean of FER2013 and FER+ majority" if ferplus else "FER2013",
              "public_test_averaged": round(acc_avg, 4),
              "public_test_best_epoch": round(acc_best, 4), "exported": "averaged" if use else "best"}
    if also:
        result["runs"] = [str(r) for r in (run, *also)]
    export_run(model if use else best, tr.x, seed, out, preprocess)
    (out / "average.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.average", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a training run directory with snap/epoch_N.keras files")
    p.add_argument("--from-epoch", type=int, default=0, help="average snapshots from this epoch on (default: all)")
    p.add_argument("--data", help="fer2013plus.csv.gz, fer2013.csv[.gz] or image folder "
                   "(default: ../shared/data/fer2013plus.csv.gz)")
    p.add_argument("--limit", type=int, help="at most this many rows per split (smoke tests)")
    p.add_argument("--seed", type=int, default=1, help="picks the quantization's representative images")
    p.add_argument("--also", action="append", default=[],
                   help="another run of the same recipe and starting weights whose snapshots join the average "
                        "(repeatable)")
    p.add_argument("--out", help="where the averaged model goes (default: the --run directory)")
    args = p.parse_args(argv)
    run, also = Path(args.run), [Path(a) for a in args.also]
    for r in (run, *also):
        if not (r / "state.json").is_file():
            print(f"error: {r}: not a training run (no state.json)", file=sys.stderr)
            return 2
    if also and not args.out:
        print("error: --also needs --out, so the first run's own average is not overwritten", file=sys.stderr)
        return 2
    return fer.cli(lambda: average(run, args.data, args.limit, args.from_epoch, args.seed, also,
                                   Path(args.out) if args.out else None))


if __name__ == "__main__":
    sys.exit(main())
