#!/usr/bin/env python3
"""Write a folder of sample photos made from public sample images (scikit-image's astronaut, matplotlib's
Grace Hopper): whole, cropped tight, darkened, blurred, small, turned. For comparisons across machines
(scripts/arm64-root.sh) and quick looks; needs the test extra.

    .venv/bin/python scripts/sample_photos.py OUT_FOLDER
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from skimage import data


def photos() -> dict[str, np.ndarray]:
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    hopper = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    out = {}
    for name, img in (("astronaut", astronaut), ("hopper", hopper)):
        h, w = img.shape[:2]
        out[f"{name}.jpg"] = img
        out[f"{name}_dark.jpg"] = (img * 0.35).astype(np.uint8)
        out[f"{name}_blur.jpg"] = cv2.GaussianBlur(img, (0, 0), 2.0)
        out[f"{name}_small.jpg"] = cv2.resize(img, (w // 3, h // 3), interpolation=cv2.INTER_AREA)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 18, 1.0)
        out[f"{name}_turned.jpg"] = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return out


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    folder = Path(args[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in photos().items():
        cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return 0


if __name__ == "__main__":
    sys.exit(main())
