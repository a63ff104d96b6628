"""File kinds by extension: one table for every reader (photo folders, --source) and writer (--annotate,
--timeline)."""
from __future__ import annotations

from pathlib import Path

# Picture extensions OpenCV reads; those marked True it also writes in every build (annotated copies,
# timelines). The read-only ones are formats people rarely expect as output.
IMAGE_EXTS = {".jpg": True, ".jpeg": True, ".png": True, ".bmp": True, ".tif": True, ".tiff": True,
              ".webp": True, ".jpe": False, ".dib": False, ".pgm": False, ".ppm": False, ".pbm": False,
              ".pnm": False, ".jp2": False, ".sr": False, ".ras": False, ".exr": False, ".hdr": False,
              ".pic": False, ".avif": False}
# Phone photo formats OpenCV cannot read: named, so that they are not taken for videos or passed over in silence.
UNREADABLE_IMAGE_EXTS = (".heic", ".heif")
CONVERT_HINT = "OpenCV cannot read HEIC/HEIF photos: convert them to JPEG first (heif-convert, from libheif-examples)"
WRITABLE_IMAGE_EXTS = tuple(ext for ext, writable in IMAGE_EXTS.items() if writable)
# Video containers an annotated copy can be, with the codec OpenCV writes them with.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}


def is_image_path(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def is_unreadable_image(p: Path) -> bool:
    return p.suffix.lower() in UNREADABLE_IMAGE_EXTS
