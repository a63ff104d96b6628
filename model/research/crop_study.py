"""Which crop around a Haar box matches FER2013's framing?

FER2013 faces are registered tightly (brows to chin, most of the face width). The runtime
crops Haar boxes. This study pastes PublicTest faces, enlarged, into larger frames (the
surroundings continued by reflection), runs the runtime's Haar detector on them exactly as
the pipeline does, and measures:

* the geometry: how the Haar box relates to the true 48x48 face region (size ratio, offset);
* the accuracy of the shipped classifier on crops of the Haar box at several margins,
  next to its accuracy on the original faces (the ceiling).

    python -m model.research.crop_study --out model/figures
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from .. import data as fer

MARGINS = (-0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
UP = 4  # 48 px faces become 192 px, a typical near-camera face at 640x480
PAD = 144


def paste(face: np.ndarray) -> np.ndarray:
    big = cv2.resize(face, (48 * UP, 48 * UP), interpolation=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(big, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT_101)


def study(model: str | None, data_path, limit: int | None, out: Path | None) -> dict:
    from edge.classify import Classifier
    from edge.config import Config
    from edge.detect import HaarDetector
    from edge.preprocess import face_patch
    from edge.sources.base import gray_plane

    cfg = Config()
    det = HaarDetector(cfg.detector)
    clf = Classifier(model, threads=2)
    split = fer.load(data_path, splits=("PublicTest",), limit=limit)["PublicTest"]
    side = 48 * UP + 2 * PAD
    true_box = np.array([PAD, PAD, 48 * UP, 48 * UP], np.float64)
    found, boxes, idx = 0, [], []
    t = time.monotonic()
    for i, face in enumerate(split.x):
        canvas = paste(face)
        plane = gray_plane(canvas, cfg.camera.lores_width, cfg.camera.lores_height)  # what the runtime detects on
        s = side / plane.shape[1]
        b = det.detect(plane)
        if not len(b):
            continue
        centre = np.array([side / 2, side / 2])
        cand = b[:, :4].astype(np.float64) * s  # upright search: the roll column is 0
        d = np.linalg.norm(cand[:, :2] + cand[:, 2:4] / 2 - centre, axis=1)
        k = int(np.argmin(d))
        if d[k] > 48 * UP / 2:
            continue
        found += 1
        boxes.append(cand[k])
        idx.append(i)
        if (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(split)} faces, {found} detected ({time.monotonic() - t:.0f}s)", flush=True)
    boxes = np.array(boxes)
    idx = np.array(idx)
    ratio = true_box[2] / boxes[:, 2]
    dx = (boxes[:, 0] + boxes[:, 2] / 2 - (true_box[0] + true_box[2] / 2)) / boxes[:, 2]
    dy = (boxes[:, 1] + boxes[:, 3] / 2 - (true_box[1] + true_box[3] / 2)) / boxes[:, 3]
    ideal_margin = (ratio - 1) / 2
    y = split.y[idx]

    def acc(patches):
        p = clf.scores_for_input(clf.model_input(patches))  # stretched and quantized like the runtime
        return float((p.argmax(1) == y).mean())

    ceiling = acc(split.x[idx])
    per_margin = {}
    for m in MARGINS:
        patches = np.stack([face_patch(paste(split.x[i]), b, m) for i, b in zip(idx, boxes)])
        per_margin[m] = acc(patches)
        print(f"  margin {m:+.2f}: accuracy {per_margin[m]:.4f} (original faces {ceiling:.4f})", flush=True)
    best = max(per_margin, key=per_margin.get)
    res = {"faces": len(split), "detected": found, "detection_rate": round(found / len(split), 4),
           "true_over_haar_size": {"median": round(float(np.median(ratio)), 3),
                                   "p10": round(float(np.percentile(ratio, 10)), 3),
                                   "p90": round(float(np.percentile(ratio, 90)), 3)},
           "ideal_margin_median": round(float(np.median(ideal_margin)), 3),
           "centre_offset_median": {"x": round(float(np.median(dx)), 3), "y": round(float(np.median(dy)), 3)},
           "accuracy_original_faces": round(ceiling, 4),
           "accuracy_by_margin": {f"{m:+.2f}": round(v, 4) for m, v in per_margin.items()},
           "best_margin": best}
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "crop_study.json").write_text(json.dumps(res, indent=1))
        _plot(res, per_margin, ceiling, out / "crop_margin.png")
    return res


def _plot(res, per_margin, ceiling, path):
    from ..evaluate import pyplot

    plt = pyplot()

    ms = sorted(per_margin)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(ms, [100 * per_margin[m] for m in ms], "o-", label="Haar box + margin (runtime crop)")
    ax.axhline(100 * ceiling, color="grey", ls="--", label="original FER2013 crop (ceiling)")
    ax.axvline(res["ideal_margin_median"], color="tab:orange", ls=":", label="geometric match (median)")
    ax.set_xlabel("margin per side, fraction of the Haar box")
    ax.set_ylabel("PublicTest accuracy, %")
    ax.set_title(f"Crop margin vs accuracy ({res['detected']} Haar-detected PublicTest faces)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.research.crop_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=".tflite (default: the shipped model)")
    p.add_argument("--data")
    p.add_argument("--limit", type=int)
    p.add_argument("--out", help="folder for crop_study.json and crop_margin.png")
    args = p.parse_args(argv)
    return fer.cli(lambda: print(json.dumps(
        study(args.model, args.data, args.limit, Path(args.out) if args.out else None), indent=1)))


if __name__ == "__main__":
    sys.exit(main())
