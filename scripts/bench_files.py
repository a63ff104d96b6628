#!/usr/bin/env python3
"""The file path's benchmark: faces found and wall time on recorded clips, printed, never asserted.

Three clips made from public sample images (scikit-image's astronaut and texture images, matplotlib's Grace
Hopper): four people moving in front of a textured background at 1920x1080 (faces 80-140 px) and at 3840x2160
(faces 120-280 px), and 1280x720 of texture and objects panned, with no face. Each goes through the installed
command line as a user would run it (``emotion-edge run --source CLIP``), once per configuration given.

    .venv/bin/python scripts/bench_files.py [--config NAME=FILE ...]

``--config old=c.toml`` adds a column for another configuration (``[camera] video_max_width = 640`` and
``[detector] every = 1`` give the file path as it was before 2026-12-02).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.bench import cpu_name  # noqa: E402


def _people(size: tuple[int, int], faces: tuple[int, ...], frames: int, path: Path) -> None:
    import matplotlib
    from skimage import data

    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    hopper = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    # Face width as a share of each photo's width, as the cascade boxes them.
    sources = [(astro, 97 / 512), (hopper, 200 / 512)]
    heads = []
    for i, f in enumerate(faces):
        img, share = sources[i % 2]
        s = f / (share * img.shape[1])
        heads.append(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
    w, h = size
    bg = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (w, h))
    k = w / 1920
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for t in range(frames):
        frame = bg.copy()
        for i, head in enumerate(heads):
            x = int(k * (100 + 450 * i + 40 * np.sin(t / 15 + i)))
            y = int(k * (300 + 30 * np.cos(t / 20 + i)))
            hh, ww = head.shape[:2]
            frame[y:y + hh, x:x + ww] = head[:h - y, :w - x]
        out.write(frame)
    out.release()


def _texture(path: Path) -> None:
    from skimage import data

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (1280, 720))
    for name in ("brick", "grass", "gravel", "coffee", "chelsea", "rocket", "coins", "moon", "camera", "page",
                 "hubble_deep_field", "immunohistochemistry"):
        img = np.asarray(getattr(data, name)())
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
        big = cv2.resize(img, (1600, 900))
        for t in range(30):
            out.write(np.ascontiguousarray(big[5 * t:5 * t + 720, 10 * t:10 * t + 1280]))
    out.release()


def run(clip: Path, config: str | None) -> tuple[int, int, float]:
    """Frames, face-frames and wall seconds of one run of the command line."""
    cmd = [shutil.which("emotion-edge") or str(Path(sys.executable).parent / "emotion-edge"), "run", "--source",
           str(clip)]
    if config:
        cmd += ["--config", config]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return len(events), sum(len(e["faces"]) for e in events), wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", default=[], metavar="NAME=FILE",
                   help="also run with this configuration file; repeat")
    args = p.parse_args()
    configs = [("default", None)] + [tuple(c.split("=", 1)) for c in args.config]
    with tempfile.TemporaryDirectory() as tmp:
        clips = [(Path(tmp) / "people1080.mp4", "1920x1080, 150 frames, 4 faces 80-140 px", 600),
                 (Path(tmp) / "people2160.mp4", "3840x2160, 90 frames, 4 faces 120-280 px", 360),
                 (Path(tmp) / "texture720.mp4", "1280x720, 360 frames of texture, no face", 0)]
        print("writing the clips ...", flush=True)
        _people((1920, 1080), (80, 90, 110, 140), 150, clips[0][0])
        _people((3840, 2160), (120, 160, 220, 280), 90, clips[1][0])
        _texture(clips[2][0])
        print(f"CPU: {cpu_name()}")
        for path, about, faces in clips:
            for name, cfg in configs:
                frames, found, wall = run(path, cfg)
                what = f"{found} of {faces} face-frames" if faces else f"{found} false face-frames"
                print(f"{about:<45} {name:<10} {what:<22} {wall:6.1f} s wall ({frames} frames)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
