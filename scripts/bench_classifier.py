#!/usr/bin/env python3
"""Milliseconds per face of a .tflite emotion model with the project's runtime.

    python scripts/bench_classifier.py [--model PATH] [--threads 1] [--repeat 500]

Prints one line per batch size (1, 2, 4, 8 faces per call). Numbers, not assertions: speed
targets live here, not in the tests.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from edge.classify import Classifier
from edge.tflite import runtime_name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=500)
    args = p.parse_args()
    clf = Classifier(args.model, threads=args.threads)
    rng = np.random.default_rng(0)
    print(f"{clf.path.name} ({clf.path.stat().st_size / 1024:.0f} KiB), runtime {runtime_name()}, "
          f"{args.threads} thread(s)")
    for n in (1, 2, 4, 8):
        x = clf.prepare(rng.integers(0, 255, (200, 200), dtype=np.uint8),
                        [(10 + 20 * i, 10 + 10 * i, 48, 48) for i in range(n)])
        for _ in range(20):
            clf.scores_for_input(x)
        t = time.perf_counter()
        for _ in range(args.repeat):
            clf.scores_for_input(x)
        dt = (time.perf_counter() - t) / args.repeat
        print(f"  batch {n}: {1000 * dt:.3f} ms per call, {1000 * dt / n:.3f} ms per face")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
