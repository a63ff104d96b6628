"""After a clip or a folder: which emotions each face showed, as log lines and, on request, a timeline picture.

Drawn with OpenCV, like the overlay, so the Pi needs no plotting library. Memory grows with frames x faces, so
it is made for recorded sources; a live run with ``--timeline`` stops recording (and says so) at ``MAX_RECORDS``.
"""
from __future__ import annotations

import collections
import logging
from pathlib import Path

import cv2
import numpy as np

from ..draw import FONT, colour
from ..media import WRITABLE_IMAGE_EXTS
from . import Sink

log = logging.getLogger(__name__)

MAX_RECORDS = 500_000  # (frame, face, emotion) triples, about 50 MB: two faces through 2.3 hours at 30 fps
MAX_ROWS = 8  # faces drawn, those seen in the most frames


class TimelineSink(Sink):
    name = "timeline"

    def __init__(self, path: str | None, labels, fps: float = 0.0, per_face: bool = True):
        """``fps``: the clip's rate, for a time axis in seconds (0: frame numbers). ``per_face``: one row per
        tracked face (a clip); False for a folder of photos, whose faces are unrelated: every face counts in the
        summary, and the picture has one row, each photo's largest face."""
        if path and Path(path).suffix.lower() not in WRITABLE_IMAGE_EXTS:
            raise ValueError(f"--timeline {path}: the picture must be one of {' '.join(WRITABLE_IMAGE_EXTS)}")
        if path and not Path(path).resolve().parent.is_dir():
            raise OSError(f"{Path(path).parent}: no such folder for --timeline")
        self.path, self.labels, self.fps, self.per_face = path, tuple(labels), fps, per_face
        self.records: list[tuple[int, int, int]] = []  # (seq, face id or 0, label index)
        self.frames = 0
        self.padded = 0  # faces found only on the padded plane (photos that are all face)
        self.last_seq = 0
        self._full = False

    def handle(self, event, frame):
        self.frames += 1
        self.last_seq = event.seq
        self.padded += sum(f.padded for f in event.faces)
        for f in event.faces:
            if len(self.records) >= MAX_RECORDS:
                if not self._full:
                    log.warning("timeline: %d records kept, later frames are not recorded", MAX_RECORDS)
                    self._full = True
                return
            self.records.append((event.seq, f.id if self.per_face else 0, self.labels.index(f.emotion)))

    def close(self):
        for line in summary_lines(self.records, self.labels, self.frames, self.fps, self.per_face):
            log.info("%s", line)
        if self.padded:
            log.info("summary: %d face%s filled the photo and %s found with a border added around it", self.padded,
                     "" if self.padded == 1 else "s", "was" if self.padded == 1 else "were")
        if self.path:
            img = timeline_image(self.records, self.labels, max(self.last_seq, 1), self.fps, self.per_face)
            if not cv2.imwrite(str(self.path), img):
                raise OSError(f"{self.path}: could not write the timeline picture")
            log.info("timeline written to %s", self.path)


def _when(seq: int, fps: float) -> str:
    return f"{(seq - 1) / fps:.1f} s" if fps else f"frame {seq}"


def _shares(counts: collections.Counter, labels, top: int = 3) -> str:
    n = sum(counts.values())
    return ", ".join(f"{labels[k]} {100 * c / n:.0f} %" for k, c in counts.most_common(top))


def summary_lines(records, labels, frames: int, fps: float, per_face: bool) -> list[str]:
    """One line for all faces, then one per face (clips), most seen first."""
    if not frames:
        return []
    unit = "frames" if per_face else "photos"
    if not records:
        return [f"summary: no face in {frames} {unit if frames != 1 else unit[:-1]}"]
    overall = collections.Counter(k for _, _, k in records)
    with_face = len({s for s, _, _ in records})
    count = "faces" if per_face else f"{len(records)} face{'s' if len(records) != 1 else ''}"
    lines = [f"summary: {count} in {with_face} of {frames} {unit}; {_shares(overall, labels, 7)}"]
    if per_face:
        by_face: dict[int, list] = collections.defaultdict(list)
        for s, i, k in records:
            by_face[i].append((s, k))
        ranked = sorted(by_face.items(), key=lambda kv: -len(kv[1]))
        listed = [(i, seen) for i, seen in ranked if len(seen) >= brief_limit(frames)][:MAX_ROWS] or ranked[:1]
        for i, seen in listed:
            n = len(seen)
            lines.append(f"face {i}: {n} frame{'s' if n != 1 else ''}, {_when(seen[0][0], fps)} to "
                         f"{_when(seen[-1][0], fps)}; {_shares(collections.Counter(k for _, k in seen), labels)}")
        if len(ranked) > len(listed):
            lines.append(f"... and {len(ranked) - len(listed)} more face(s) seen in fewer frames")
    return lines


def brief_limit(frames: int) -> int:
    """Faces seen in fewer frames than this are not listed or drawn: a passing false detection, mostly."""
    return max(3, int(0.02 * frames))


def timeline_image(records, labels, last_seq: int, fps: float, per_face: bool) -> np.ndarray:
    """A row per face (the most seen first), coloured by its emotion frame by frame, a time axis, a legend."""
    width, left, right, row_h, top = 1200, 90, 40, 34, 16
    counts = collections.Counter(i for _, i, _ in records)
    rows = [i for i, c in counts.most_common(MAX_ROWS) if c >= brief_limit(last_seq)]
    rows = rows or [i for i, _ in counts.most_common(1)] or [0]
    height = top + len(rows) * row_h + 72
    img = np.full((height, width, 3), 255, np.uint8)
    plot_w = width - left - right

    def x_of(seq: float) -> int:
        return left + int(round((seq - 1) / max(last_seq, 1) * plot_w))

    row_of = {i: r for r, i in enumerate(rows)}
    drawn = set()  # (frame, row): a folder's row shows each photo's first face, the largest
    for r, i in enumerate(rows):
        y = top + r * row_h
        cv2.rectangle(img, (left, y + 4), (left + plot_w, y + row_h - 4), (246, 246, 246), -1)
        cv2.rectangle(img, (left, y + 4), (left + plot_w, y + row_h - 4), (205, 205, 205), 1)
        name = f"face {i}" if per_face else "largest"
        cv2.putText(img, name, (8, y + row_h // 2 + 5), FONT, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
    for s, i, k in records:
        r = row_of.get(i)
        if r is None or (s, r) in drawn:
            continue
        drawn.add((s, r))
        y = top + r * row_h
        cv2.rectangle(img, (x_of(s), y + 4), (max(x_of(s + 1) - 1, x_of(s)), y + row_h - 4),
                      colour(labels[k], "bgr"), -1)
    # Time axis: about eight ticks at round values.
    axis_y = top + len(rows) * row_h + 6
    cv2.line(img, (left, axis_y), (left + plot_w, axis_y), (80, 80, 80), 1)
    span = (last_seq / fps) if fps else last_seq
    step = _nice_step(span / 8) if fps else max(1.0, _nice_step(span / 8))  # whole frame numbers
    t = 0.0
    while t <= span + 1e-9:
        seq = t * fps + 1 if fps else t + 1
        x = x_of(seq)
        cv2.line(img, (x, axis_y), (x, axis_y + 5), (80, 80, 80), 1)
        text = (f"{t:g} s" if fps else f"{int(t)}")
        cv2.putText(img, text, (x - 10, axis_y + 20), FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
        t += step
    # Legend: the seven colours of the overlay.
    x, y = left, axis_y + 50
    for lab in labels:
        cv2.rectangle(img, (x, y - 12), (x + 16, y + 2), colour(lab, "bgr"), -1)
        cv2.putText(img, lab, (x + 22, y), FONT, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
        x += 30 + cv2.getTextSize(lab, FONT, 0.5, 1)[0][0] + 20
    return img


def _nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw``."""
    if raw <= 0:
        return 1.0
    p = 10 ** np.floor(np.log10(raw))
    for m in (1, 2, 5, 10):
        if m * p >= raw:
            return float(m * p)
    return float(10 * p)
