"""An image file, or a folder of images in sorted file-name order."""
from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np

from ..files import IMAGE_MAX_BYTES, FileRefused, read_bounded
from ..media import CONVERT_HINT, is_image_path, is_unreadable_image
from .base import FrameSource, SourceError, make_frame, plane_width

log = logging.getLogger(__name__)

# A thumbnail's faces are smaller than the detector's smallest window (min_size, 40 px): its plane is enlarged
# to this width, so a 128-px photo's 24-px face is searched at about 90 px. Boxes stay in the photo's pixels.
STILL_MIN_WIDTH = 480


class TooLarge(ValueError):
    pass


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, JPEG, GIF, BMP or WebP file, without decoding; None
    for other formats or a header that does not say."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 13:  # a real GIF has at least its screen descriptor
        return struct.unpack("<HH", head[6:10])
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = head[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", head[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            b = int.from_bytes(head[21:25], "little")
            return (b & 0x3FFF) + 1, ((b >> 14) & 0x3FFF) + 1
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                return None
            marker = head[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = struct.unpack(">H", head[i + 2:i + 4])[0]
            # Start-of-frame markers (baseline, progressive, ...) hold the size; DHT, JPG and DAC do not.
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", head[i + 5:i + 9])
                return w, h
            i += 2 + length
    return None


def _read_image(path: Path, max_pixels: int = 0) -> np.ndarray | None:
    # imdecode from bytes instead of imread: imread cannot open non-ASCII paths on every platform.
    try:
        buf = np.frombuffer(read_bounded(path, IMAGE_MAX_BYTES), dtype=np.uint8)
    except FileRefused as e:
        raise TooLarge(str(e).split(": ", 1)[-1]) from None
    except OSError:
        return None
    if buf.size == 0:
        return None
    if max_pixels:
        # JPEG headers can be long (EXIF thumbnails): the first 256 KB hold the frame header in practice.
        size = header_size(buf[:262144].tobytes())
        if size and size[0] * size[1] > max_pixels:
            raise TooLarge(f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP is over the "
                           f"{max_pixels / 1e6:g} MP limit ([camera] max_pixels)")
    # IMREAD_COLOR applies the EXIF orientation: a phone's portrait photo stored sideways would
    # otherwise hide every face from the upright-face cascade. It also brings 16-bit files to 8 bits.
    try:
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError) as e:  # a codec OpenCV disables (OpenEXR), a size it refuses: this file only
        raise TooLarge(_opencv_reason(e)) from None


def _opencv_reason(e: Exception) -> str:
    """OpenCV's error in one short phrase (its text carries a source path and a line number)."""
    text = str(e)
    if "CV_IO_MAX_IMAGE_PIXELS" in text:
        return "its header claims more pixels than OpenCV's limit (OPENCV_IO_MAX_IMAGE_PIXELS)"
    if isinstance(e, MemoryError):
        return "too large to decode here"
    reason = re.sub(r"(?s).*?error: \(-?\d+:[^)]*\)\s*", "", text).split(". ")[0].strip()
    return f"OpenCV cannot decode it ({reason[:100]})"


class ImageSource(FrameSource):
    """Recorded: every image once. A single unreadable file is an error; in a folder it is
    counted as a bad frame, logged and skipped."""

    independent = True

    def __init__(self, path: str | Path, max_width: int = 1024, max_pixels: int = 64_000_000):
        super().__init__()
        self.path = Path(path)
        self.max_width, self.max_pixels = max_width, max_pixels
        # OpenCV's own limit (read once, at the first decode) backs up formats whose header is not read here.
        os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(max_pixels))
        if self.path.is_dir():
            entries = [p for p in self.path.iterdir() if p.is_file()]
            self.files = sorted(p for p in entries if is_image_path(p))
            heic = sum(map(is_unreadable_image, entries))
            if heic:
                # Photos the user expects to see in the results: counted as bad, and said once, with the fix.
                self.bad_frames += heic
                log.warning("%d photo(s) skipped: %s", heic, CONVERT_HINT)
            if not self.files:
                raise SourceError(f"{self.path}: no image files in this folder" + (f" ({CONVERT_HINT})" if heic else ""))
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
            try:
                img = _read_image(f, self.max_pixels)
            except TooLarge as e:
                if not self.folder:
                    raise SourceError(f"{f}: {e}") from None
                self.bad_frames += 1
                log.warning("%s: %s, skipped", f.name, e)
                continue
            if img is None:
                if not self.folder:
                    raise SourceError(f"{f}: not a readable image")
                self.bad_frames += 1
                log.warning("%s: not a readable image, skipped", f.name)
                continue
            plane_w = plane_width(img.shape[1], img.shape[0], self.max_width, 3 / 4)
            frame = make_frame(self._next_seq(), img, plane_w, name=f.name if self.folder else None)
            h, w = frame.gray.shape
            k = min(STILL_MIN_WIDTH / w, max(1.0, self.max_width / h))  # a narrow strip is not made huge
            if k > 1.0:
                frame.gray = cv2.resize(frame.gray, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
            return frame
        return None
