"""Annotated output for machines without a display: a video file, one image, or a folder of images."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2

from ..draw import annotate_bgr
from ..media import VIDEO_CODECS, WRITABLE_IMAGE_EXTS
from . import Sink

log = logging.getLogger(__name__)



class AnnotateSink(Sink):
    """``PATH.mp4``/``.avi``/``.mkv``: a video at the source's frame rate; ``PATH.jpg``/``.png``: the
    last frame as one image; an existing folder or a path ending in ``/``: one image per frame,
    named after the source file when there is one."""

    needs_image = True
    name = "annotate"

    def __init__(self, path: str, fps: float = 15.0, scores: bool = True):
        self.path = Path(path)
        self.fps, self.scores = fps, scores
        ext = self.path.suffix.lower()
        if path.endswith("/") or self.path.is_dir():
            self.mode = "folder"
            self.path.mkdir(parents=True, exist_ok=True)
        elif ext in VIDEO_CODECS:
            self.mode = "video"
        elif ext in WRITABLE_IMAGE_EXTS:
            self.mode = "image"
        else:
            raise ValueError(f"--annotate {path}: use a video (.mp4 .avi .mkv), an image (.jpg .png) or a folder/")
        if self.mode != "folder" and not self.path.parent.exists():
            raise ValueError(f"--annotate {path}: folder {self.path.parent} does not exist")
        self.writer = None
        self.written = 0

    def handle(self, event, frame):
        if frame.main is None:
            return
        img = annotate_bgr(frame.main, event, self.scores)
        if self.mode == "video":
            if self.writer is None:
                h, w = img.shape[:2]
                self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()]),
                                              self.fps, (w, h))
                if not self.writer.isOpened():
                    raise OSError(f"{self.path}: cannot open a video writer")
                self._size = (w, h)
            if (img.shape[1], img.shape[0]) != self._size:
                img = cv2.resize(img, self._size)
            self.writer.write(img)
        elif self.mode == "image":
            self._write(self.path, img)
        else:
            stem = Path(frame.name).stem if frame.name else f"frame_{frame.seq:06d}"
            self._write(self.path / f"{stem}.jpg", img)
        self.written += 1

    @staticmethod
    def _write(path: Path, img):
        ok, buf = cv2.imencode(path.suffix or ".jpg", img)
        if not ok:
            raise OSError(f"{path}: cannot encode")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.tobytes())
        tmp.replace(path)

    def close(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.written:
            log.info("annotated output: %s (%d frame%s)", self.path, self.written, "" if self.written == 1 else "s")
