"""FER2013 loaders: the Kaggle CSV (plain or .gz) and the image-folder layout.

No TensorFlow here: the runtime tests and the evaluation of ``.tflite`` files use it too.
"""
from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import LABELS

log = logging.getLogger(__name__)

SPLITS = ("Training", "PublicTest", "PrivateTest")
SIDE = 48
# The original pixels with the FER+ votes first; the older copy is histogram-equalised (see its README).
DEFAULT_NAMES = ("fer2013plus.csv.gz",)
DEFAULT_DIRS = (Path(__file__).resolve().parent.parent.parent / "shared" / "data",)
# FER+ vote columns in our label order (angry, disgust, fear, happy, sad, surprise, neutral); contempt,
# unknown and NF (not a face) are left out of the vote distribution.
FERPLUS_COLUMNS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


class DataError(ValueError):
    """The data set is missing or malformed; the message names the file and line."""


def cli(work: Callable[[], object]) -> int:
    """Run a command's body; a DataError becomes one 'error:' line and exit status 2, not a traceback."""
    try:
        work()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # uint8 [N, 48, 48]
    y: np.ndarray  # int64 [N], the FER2013 label
    # float32 [N, 7]: FER+ votes for the seven classes (contempt, unknown and not-a-face dropped), or None
    # when the source has no votes. A row may sum to 0 (all ten annotators said NF/unknown/contempt).
    votes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def ferplus_majority(self) -> np.ndarray:
        """Per face the class with the most FER+ votes (ties: the first in label order), or -1 where the
        face has no vote for any of the seven classes."""
        if self.votes is None:
            raise DataError("this data has no FER+ votes (use fer2013plus.csv.gz)")
        return np.where(self.votes.sum(1) > 0, self.votes.argmax(1), -1)


def default_data_path() -> Path | None:
    """``$FER2013``, else ``../shared/data/fer2013plus.csv.gz`` beside the checkout (or the working
    directory), else None."""
    env = os.environ.get("FER2013")
    if env:
        return Path(env)
    for d in (*DEFAULT_DIRS, Path.cwd().parent / "shared" / "data"):
        for name in DEFAULT_NAMES:
            if (d / name).is_file():
                return d / name
    return None


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    if path is None:
        found = default_data_path()
        if found is None:
            raise DataError(
                "no FER2013 data given and none found at ../shared/data/fer2013plus.csv.gz; "
                "pass --data PATH (the Kaggle fer2013.csv[.gz] or a folder with train/ and test/)"
            )
        return found
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    return p


def load(path: str | os.PathLike | None = None, splits=SPLITS, limit: int | None = None) -> dict[str, Split]:
    """Load FER2013 from a CSV or an image folder; returns ``{split: Split}`` for the requested splits.

    ``limit`` keeps at most that many rows per split (for smoke tests).
    """
    p = resolve_data_path(path)
    if p.is_dir():
        return _load_folder(p, splits, limit)
    return _load_csv(p, splits, limit)


def _open_text(p: Path):
    with open(p, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return open(p, encoding="utf-8", newline="")


def _load_csv(p: Path, splits, limit) -> dict[str, Split]:
    wanted = set(splits)
    xs: dict[str, list] = {s: [] for s in splits}
    ys: dict[str, list] = {s: [] for s in splits}
    vs: dict[str, list] = {s: [] for s in splits}
    try:
        fh = _open_text(p)
    except OSError as e:
        raise DataError(f"{p}: cannot open: {e}") from e
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{p}: empty file") from None
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: unreadable: {e}") from e
        cols = [h.strip().lower() for h in header]
        try:
            ie, ip, iu = cols.index("emotion"), cols.index("pixels"), cols.index("usage")
        except ValueError:
            raise DataError(f"{p}:1: header must have emotion,pixels,Usage columns, got {header!r}") from None
        iv = [cols.index(c) for c in FERPLUS_COLUMNS] if all(c in cols for c in FERPLUS_COLUMNS) else None
        line = 1
        try:
            for row in reader:
                line += 1
                if not row:
                    continue
                if len(row) != len(cols):
                    raise DataError(f"{p}:{line}: expected {len(cols)} fields, got {len(row)}")
                usage = row[iu].strip()
                if usage not in SPLITS:
                    raise DataError(f"{p}:{line}: unknown Usage {usage!r} (expected one of {', '.join(SPLITS)})")
                if usage not in wanted or (limit is not None and len(ys[usage]) >= limit):
                    continue
                try:
                    label = int(row[ie])
                except ValueError:
                    raise DataError(f"{p}:{line}: emotion {row[ie]!r} is not an integer") from None
                if not 0 <= label < len(LABELS):
                    raise DataError(f"{p}:{line}: emotion {label} out of range 0..{len(LABELS) - 1}")
                try:
                    px = np.array(row[ip].split(), dtype=np.int32)
                except ValueError:
                    raise DataError(f"{p}:{line}: pixels must be integers") from None
                if px.size != SIDE * SIDE:
                    raise DataError(f"{p}:{line}: expected {SIDE * SIDE} pixels, got {px.size}")
                if px.min() < 0 or px.max() > 255:
                    raise DataError(f"{p}:{line}: pixel values must be 0..255")
                if iv is not None:
                    try:
                        vs[usage].append([float(row[i] or 0) for i in iv])
                    except ValueError:
                        raise DataError(f"{p}:{line}: FER+ votes must be numbers") from None
                xs[usage].append(px.astype(np.uint8).reshape(SIDE, SIDE))
                ys[usage].append(label)
        except (OSError, EOFError, csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{p}:{line}: unreadable: {e}") from e
    out = {}
    for s in splits:
        if not ys[s]:
            raise DataError(f"{p}: no rows with Usage {s}")
        votes = np.asarray(vs[s], dtype=np.float32) if iv is not None else None
        out[s] = Split(np.stack(xs[s]), np.asarray(ys[s], dtype=np.int64), votes)
    return out


IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm"}


def _read_class_dir(d: Path) -> tuple[list[np.ndarray], list[int], list[str]]:
    import cv2

    xs, ys, names = [], [], []
    for cdir in sorted(x for x in d.iterdir() if x.is_dir()):
        name = cdir.name.lower()
        if name not in LABELS:
            raise DataError(f"{cdir}: unknown class folder (expected one of {', '.join(LABELS)})")
        for f in sorted(cdir.iterdir()):
            if f.suffix.lower() not in IMAGE_EXTS:
                continue
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise DataError(f"{f}: unreadable image")
            if img.shape != (SIDE, SIDE):
                img = cv2.resize(img, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
            xs.append(img)
            ys.append(LABELS.index(name))
            names.append(f.name)
    return xs, ys, names


def _load_folder(root: Path, splits, limit) -> dict[str, Split]:
    """``train/<class>/*`` is Training; ``test/<class>/*`` is split in two by sorted file name
    (even positions PublicTest, odd PrivateTest), because that release merges both test sets."""
    train_dir, test_dir = root / "train", root / "test"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise DataError(f"{root}: image-folder layout needs {d.name}/<class>/ folders")
    out = {}
    for s in splits:
        if s == "Training":
            xs, ys, _ = _read_class_dir(train_dir)
        else:
            xs, ys, _ = _read_class_dir(test_dir)
            keep = 0 if s == "PublicTest" else 1
            xs, ys = xs[keep::2], ys[keep::2]
        if limit is not None:
            xs, ys = xs[:limit], ys[:limit]
        if not ys:
            raise DataError(f"{root}: no images for {s}")
        out[s] = Split(np.stack(xs), np.asarray(ys, dtype=np.int64))
    return out
