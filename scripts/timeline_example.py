"""Make docs/timeline.png: a short two-person clip through `emotion-edge run --timeline`.

The astronaut (scikit-image) is there throughout; Grace Hopper (matplotlib's sample photo) walks in after
two seconds and leans her head. Run: .venv/bin/python scripts/timeline_example.py [OUT.png]
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from skimage import data

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "timeline.png"
    astro = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (400, 400))
    sample = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
    hopper = cv2.imread(sample)
    hopper = cv2.resize(hopper, (340, 400))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "two.mp4"
        vw = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 15, (960, 540))
        for i in range(90):
            frame = np.full((540, 960, 3), 120, np.uint8)
            frame[70:470, 40:440] = astro
            if i >= 30:
                lean = 22 * np.sin(np.pi * (i - 30) / 60)
                m = cv2.getRotationMatrix2D((170, 200), lean, 1.0)
                frame[70:470, 560:900] = cv2.warpAffine(hopper, m, (340, 400), borderMode=cv2.BORDER_REFLECT)
            vw.write(frame)
        vw.release()
        r = subprocess.run([sys.executable, "-m", "edge", "run", "--source", str(clip), "--events", "none",
                            "--timeline", str(out)], capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
