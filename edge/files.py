"""Every file the program reads or writes by a name a user gave it goes through here: regular files only
(a FIFO nobody writes would block for ever, /dev/zero never ends), read with a size bound checked before
reading, so one hostile path is one clear error."""
from __future__ import annotations

import os
import stat
from pathlib import Path

# Bounds for what a user's file may be: a config or a password is small; a photo is bounded by pixels later.
CONFIG_MAX_BYTES = 1 << 20
SECRET_MAX_BYTES = 64 << 10
IMAGE_MAX_BYTES = 512 << 20


class FileRefused(OSError):
    """Not a regular file, or over its size bound; the message says which."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def read_bounded(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Opened without blocking (a FIFO would wait for
    a writer), then checked on the open descriptor (no race with a swap of the path)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"{path}: {_kind(st.st_mode)}, not a file")
        if st.st_size > limit:
            raise FileRefused(f"{path}: {st.st_size / 1e6:.1f} MB, over the {limit / 1e6:g} MB this file may be")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:  # grew while being read
                raise FileRefused(f"{path}: over the {limit / 1e6:g} MB this file may be")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_output(path: str | os.PathLike, inputs=()) -> None:
    """An output path that is safe to write: not a FIFO or socket (open() would block for ever), not a
    folder, and not one of the inputs (writing would truncate what is being read)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise FileRefused(f"{path}: {_kind(st.st_mode)}: cannot write the output there")
    for i in inputs:
        try:
            if st is not None and os.path.samefile(p, i):
                raise FileRefused(f"{path}: is the input {i}: it would be overwritten")
        except OSError as e:
            if isinstance(e, FileRefused):
                raise
