"""The kernel devices picamera2 opens itself, simulated where it opens them.

picamera2 talks to three device nodes without going through libcamera:
- the dma-heap (picamera2/dma_heap.py: ``DmaHeap`` opens /dev/dma_heap/vidbuf_cached or linux,cma and
  allocates with DMA_HEAP_IOCTL_ALLOC; allocators/dmaallocator.py brackets every CPU access with
  DMA_BUF_IOCTL_SYNC). Here the heap is a plain file and each buffer a memfd, which mmaps as a dmabuf does.
- /dev/video* (picamera2/platform.py probes VIDIOC_QUERYCAP for "pispbe" to tell a Pi 5 from VC4 boards).
- /dev/dri/card* (previews/drm_preview.py globs them before opening one with pykms).

Those modules are patched as they are imported (a meta-path hook), nothing else in picamera2 is touched.
"""
from __future__ import annotations

import fcntl as _real_fcntl
import importlib.abc
import importlib.machinery
import os
import sys
import threading

from . import board, env, log

_lock = threading.Lock()
_buffers: dict[int, int] = {}  # memfd -> size, for the sync ioctl and the CMA budget
HEAP_PATH = f"/tmp/pisim-dma-heap-{os.getuid()}"

# CMA the camera may take (bytes). Zero 2 W: 512 MB of RAM, and Raspberry Pi OS's vc4-kms-v3d overlay
# reserves a smaller CMA pool there than on the larger boards; a budget, not a measurement.
CMA_BYTES = {"pi4": 512 << 20, "pi5": 512 << 20, "zero2w": 96 << 20}


def _prune() -> None:
    """Forget buffers whose fd was closed (picamera2's allocator closes them with os.close)."""
    for fd in list(_buffers):
        try:
            alive = os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
        except OSError:
            alive = False
        if not alive:
            del _buffers[fd]


def cma_in_use() -> int:
    with _lock:
        _prune()
        return sum(_buffers.values())


def cma_alloc(size: int, name: str) -> int:
    with _lock:
        _prune()
        if sum(_buffers.values()) + size > CMA_BYTES[board()]:
            log(event="cma-exhausted", name=name, size=size)
            raise OSError(12, "Cannot allocate memory (CMA exhausted)")
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        _buffers[fd] = size
        return fd


def cma_free(fd: int) -> None:
    with _lock:
        _buffers.pop(fd, None)


class _Fcntl:
    """``fcntl`` as the dma-heap modules see it: the dma ioctls on simulated fds, the real call otherwise."""

    def __getattr__(self, name):
        return getattr(_real_fcntl, name)

    def ioctl(self, fd, request, arg=0, mutate_flag=True):
        from picamera2 import dma_heap as dh

        if request == dh.DMA_HEAP_IOCTL_ALLOC:
            arg.fd = cma_alloc(int(arg.len), "dma-heap")
            return 0
        if request == dh.DMA_BUF_SET_NAME:
            return b""
        if request == dh.DMA_BUF_IOCTL_SYNC:
            if fd not in _buffers:
                raise OSError(25, "Inappropriate ioctl for device")
            return 0
        return _real_fcntl.ioctl(fd, request, arg, mutate_flag)


class _Glob:
    """``glob`` as the DRM preview sees it: /dev/dri/card0 exists when the board has a DRM card."""

    def glob(self, pattern, *a, **kw):
        if pattern.startswith("/dev/dri/card"):
            return [] if env("PISIM_HDMI", "connected") == "none" else ["/dev/dri/card0"]
        import glob as real

        return real.glob(pattern, *a, **kw)


def _patch(name: str, module) -> None:
    if name == "picamera2.dma_heap":
        if not os.path.exists(HEAP_PATH):
            open(HEAP_PATH, "a").close()
        module.heapNames = [HEAP_PATH]
        module.fcntl = _Fcntl()
    elif name == "picamera2.allocators.dmaallocator":
        module.fcntl = _Fcntl()
    elif name == "picamera2.platform":
        module._platform = module.Platform.PISP if board() == "pi5" else module.Platform.VC4
    elif name == "picamera2.previews.drm_preview":
        module.glob = _Glob()


_TARGETS = {"picamera2.dma_heap", "picamera2.allocators.dmaallocator", "picamera2.platform",
            "picamera2.previews.drm_preview"}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, name):
        self.inner, self.name = inner, name

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _patch(self.name, module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in _TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, name)
        return spec


def install() -> None:
    # one finder, this module's (a test that reimports pisim replaces the previous one)
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_Finder"]
    sys.meta_path.insert(0, _Finder())
