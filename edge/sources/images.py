"""An image file, or a folder of images in sorted file-name order."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .base import FrameSource, SourceError, make_frame

log = logging.getLogger(__name__)

# A thumbnail's faces are smaller than the detector's smallest window (min_size, 40 px): its plane is enlarged
# to this width, so a 128-px photo's 24-px face is searched at about 90 px. Boxes stay in the photo's pixels.
STILL_MIN_WIDTH = 480

IMAGE_EXTS = {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
              ".pnm", ".jp2", ".sr", ".ras", ".exr", ".hdr", ".pic"}


def is_image_path(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def _read_image(path: Path) -> np.ndarray | None:
    # imdecode from bytes instead of imread: imread cannot open non-ASCII paths on every platform.
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if buf.size == 0:
        return None
    # IMREAD_COLOR applies the EXIF orientation: a phone's portrait photo stored sideways would
    # otherwise hide every face from the upright-face cascade. It also brings 16-bit files to 8 bits.
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


class ImageSource(FrameSource):
    """Recorded: every image once. A single unreadable file is an error; in a folder it is
    counted as a bad frame, logged and skipped."""

    independent = True

    def __init__(self, path: str | Path, max_width: int = 1024):
        super().__init__()
        self.path = Path(path)
        self.max_width = max_width
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.is_file() and is_image_path(p))
            if not self.files:
                raise SourceError(f"{self.path}: no image files in this folder")
            self.folder = True
            self.description = f"folder {self.path} ({len(self.files)} images)"
        elif self.path.is_file():
            self.files = [self.path]
            self.folder = False
            self.description = f"image {self.path}"
        else:
            raise SourceError(f"{self.path}: no such file or folder")
        self.total = len(self.files)
        self._i = 0

    def read(self):
        while self._i < len(self.files):
            f = self.files[self._i]
            self._i += 1
            img = _read_image(f)
            if img is None:
                if not self.folder:
                    raise SourceError(f"{f}: not a readable image")
                self.bad_frames += 1
                log.warning("%s: not a readable image, skipped", f.name)
                continue
            frame = make_frame(self._next_seq(), img, self.max_width, name=f.name if self.folder else None)
            h, w = frame.gray.shape
            k = min(STILL_MIN_WIDTH / w, max(1.0, self.max_width / h))  # a narrow strip is not made huge
            if k > 1.0:
                frame.gray = cv2.resize(frame.gray, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
            return frame
        return None
