"""FER2013-label accuracy against FER+-majority accuracy for single models and their score averages, with the
target drawn in: where the two label sets let a model sit.

    python -m model.research.frontier --data ../shared/data/fer2013plus.csv.gz --split PrivateTest \\
        --model accurate=model/emotion_int8.tflite --model fast=model/emotion_fast_int8.tflite \\
        --model other=runs/x/emotion_int8.tflite ... --json frontier.json --out frontier.png
    python -m model.research.frontier --json model/figures/frontier.json --out model/figures/frontier.png

With ``--model`` every model and every average of two to four of them is scored (int8, single pass, each
through the preprocessing its ``.json`` names) and written to ``--json``; without, the figure is drawn from an
existing JSON. A name ending in ``*`` marks a shipped model.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

TARGET = {"fer2013": 0.71, "ferplus": 0.80}


def score_models(models: dict[str, str], split, max_members: int = 4) -> list[dict]:
    from ..evaluate import tflite_scores

    majority = split.ferplus_majority()
    voted = majority >= 0

    def row(name, kind, p):
        pred = p.argmax(1)
        return {"name": name, "kind": kind, "fer2013": round(float((pred == split.y).mean()), 4),
                "ferplus": round(float((pred[voted] == majority[voted]).mean()), 4)}

    scores = {}
    rows = []
    for name, path in models.items():
        scores[name] = tflite_scores(path, split.x, flip=False)
        rows.append(row(name.rstrip("*"), "shipped" if name.endswith("*") else "single", scores[name]))
        print(f"{rows[-1]['name']}: FER2013 {rows[-1]['fer2013']:.1%}, FER+ {rows[-1]['ferplus']:.1%}", flush=True)
    for k in range(2, min(max_members, len(models)) + 1):
        for members in itertools.combinations(models, k):
            p = np.mean([scores[m] for m in members], axis=0)
            rows.append(row(" + ".join(m.rstrip("*") for m in members), "ensemble", p))
    return rows


def plot(table: dict, path: Path) -> None:
    from ..evaluate import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    target = table["target"]
    tx, ty = target["fer2013"] * 100, target["ferplus"] * 100
    rows = table["models"]
    xs = [r["fer2013"] * 100 for r in rows] + [tx]
    ys = [r["ferplus"] * 100 for r in rows] + [ty]
    x0, x1, y0, y1 = min(xs) - 1.5, max(xs) + 1.5, min(ys) - 1.5, max(ys) + 1.5
    # Lines of equal mean of the two accuracies: the selection criterion the card fixes.
    for c in range(int(min(xs) + min(ys)) // 2 - 1, int(tx + ty) // 2 + 2):
        ax.plot([x0, x1], [2 * c - x0, 2 * c - x1], color="0.85", lw=0.7, zorder=0)
        if y0 < 2 * c - x1 < y1:
            ax.text(x1, 2 * c - x1, f" mean {c}", fontsize=6, color="0.6", va="center")
    ax.fill_between([tx, x1], ty, y1, color="tab:red", alpha=0.08, lw=0)
    ax.plot([tx], [ty], marker="+", color="tab:red", markersize=12)
    ax.annotate("target", (tx, ty), xytext=(6, -12), textcoords="offset points", fontsize=8, color="tab:red")
    ens = [r for r in rows if r["kind"] == "ensemble"]
    ax.scatter([r["fer2013"] * 100 for r in ens], [r["ferplus"] * 100 for r in ens], s=10, color="0.55",
               label=f"averages of 2-4 models ({len(ens)})")
    for kind, marker, color, size in (("single", "o", "tab:blue", 36), ("shipped", "*", "tab:red", 140)):
        some = [r for r in rows if r["kind"] == kind]
        ax.scatter([r["fer2013"] * 100 for r in some], [r["ferplus"] * 100 for r in some], s=size,
                   marker=marker, color=color, label="single models" if kind == "single" else "shipped", zorder=3)
        for r in some:
            ax.annotate(r["name"], (r["fer2013"] * 100, r["ferplus"] * 100), xytext=(5, 3),
                        textcoords="offset points", fontsize=7)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(f"FER2013-label accuracy, % ({table['split']}, int8, one pass)")
    ax.set_ylabel("FER+-majority accuracy, %")
    ax.set_title("The two label sets pull apart: no model or average reaches the target corner", fontsize=10)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="an int8 model to score (NAME ending in * marks a shipped one); repeat")
    p.add_argument("--data", help="FER2013 with FER+ votes (fer2013plus.csv.gz)")
    p.add_argument("--split", default="PrivateTest", choices=("PublicTest", "PrivateTest"))
    p.add_argument("--json", required=True, help="where the numbers are written (with --model) or read")
    p.add_argument("--out", help="the figure (PNG)")
    args = p.parse_args(argv)
    if args.model:
        from .. import data as fer

        models = {}
        for spec in args.model:
            name, sep, path = spec.partition("=")
            if not sep or not Path(path).is_file():
                p.error(f"--model {spec!r}: expected NAME=PATH to an existing model file")
            models[name] = path
        split = fer.load(args.data, splits=(args.split,))[args.split]
        if split.votes is None:
            p.error(f"{args.data or 'the default data'}: no FER+ votes in it (use fer2013plus.csv.gz)")
        table = {"about": "FER2013-label and FER+-majority accuracy, int8, single pass, each model through its own "
                          "preprocessing; averages: the members' scores averaged (python -m model.research.frontier)",
                 "split": args.split, "target": TARGET, "models": score_models(models, split)}
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    else:
        path = Path(args.json)
        if not path.is_file():
            p.error(f"--json {path}: no such file (give --model to score models)")
        table = json.loads(path.read_text())
    if args.out:
        plot(table, Path(args.out))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
