"""Simulated ``pykms`` (kmsxx's Python bindings, py/pykms): one DRM card with an HDMI connector, for
picamera2's DRM preview.

The rules a preview can trip, from kmsxx and the kernel:
- ``AtomicReq.commit_sync`` / ``test`` return the ioctl's error code and never raise
  (kms++/src/atomicreq.cpp: ``return drmModeAtomicCommit(...)``); ``DrmObject.set_prop`` only prints
  "commit failed" (py/pykms/__init__.py ``__obj_set_prop``).
- Atomic commits need DRM master: while a desktop compositor holds it every commit returns -EACCES.
- A plane on a CRTC whose connector has no display has no mode to scan out: -EINVAL.
- ``Connector.connected()`` follows the HDMI hot-plug state (PISIM_HDMI).
"""
from __future__ import annotations

import enum
import errno
import os

import pisim
from pisim import kernel


class PixelFormat(enum.Enum):
    RGB888 = "RG24"
    BGR888 = "BG24"
    XRGB8888 = "XR24"
    XBGR8888 = "XB24"
    ARGB8888 = "AR24"
    ABGR8888 = "AB24"
    YUV420 = "YU12"
    YVU420 = "YV12"
    NV12 = "NV12"
    YUYV = "YUYV"


class PlaneType(enum.Enum):
    Overlay = 0
    Primary = 1
    Cursor = 2


_BPP = {"XB24": 4, "XR24": 4, "AB24": 4, "AR24": 4, "RG24": 3, "BG24": 3}


class Videomode:
    def __init__(self, w, h):
        self.hdisplay, self.vdisplay, self.name = w, h, f"{w}x{h}"


class DrmObject:
    def __init__(self, card, idx):
        self.card, self.idx, self.id = card, idx, 30 + idx

    def set_prop(self, prop, value):
        areq = AtomicReq(self.card)
        areq.add(self, prop, value)
        if areq.commit_sync() != 0:
            print("commit failed")


class Plane(DrmObject):
    def __init__(self, card, idx, type_):
        super().__init__(card, idx)
        self.type = type_
        self.formats = [f for f in PixelFormat]


class Crtc(DrmObject):
    def __init__(self, card, idx):
        super().__init__(card, idx)
        self.possible_planes = [Plane(card, idx * 4 + i, PlaneType.Primary if i == 0 else PlaneType.Overlay)
                                for i in range(4)]
        self.primary_plane = self.possible_planes[0]


class Connector(DrmObject):
    def __init__(self, card, idx, name, crtc):
        super().__init__(card, idx)
        self.fullname, self._crtc = name, crtc

    def connected(self):
        return pisim.env("PISIM_HDMI", "connected") == "connected"

    def get_default_mode(self):
        if not self.connected():
            raise RuntimeError("no modes")
        w, _, h = pisim.env("PISIM_HDMI_MODE", "1920x1080").partition("x")
        return Videomode(int(w), int(h))

    def get_possible_crtcs(self):
        return [self._crtc]

    def get_current_crtc(self):
        return self._crtc if self.connected() else None


class Card:
    def __init__(self, path="/dev/dri/card0", *a):
        if pisim.env("PISIM_HDMI", "connected") == "none":
            raise RuntimeError(f"Failed to open card {path}: No such file or directory")
        self.path, self.has_atomic = path, True
        self.crtcs = [Crtc(self, 0), Crtc(self, 1)]
        self.connectors = [Connector(self, 0, "HDMI-A-1", self.crtcs[0]), Connector(self, 1, "HDMI-A-2", self.crtcs[1])]
        self.planes = [p for c in self.crtcs for p in c.possible_planes]

    @property
    def get_first_connected_connector(self):
        return next((c for c in self.connectors if c.connected()), None)

    def disable_planes(self):
        pass


class ResourceManager:
    def __init__(self, card):
        self.card, self._taken = card, set()

    def reserve_crtc(self, connector):
        crtc = connector.get_possible_crtcs()[0]
        if crtc in self._taken:
            return None
        self._taken.add(crtc)
        return crtc

    def reserve_plane(self, crtc, type=PlaneType.Overlay, format=None):
        if pisim.env("PISIM_DRM_PLANES") == "taken":  # every plane in use by another client
            return None
        for p in crtc.possible_planes:
            if p.type == type and p not in self._taken:
                self._taken.add(p)
                return p
        return None

    def reserve_overlay_plane(self, crtc, format=None):
        return self.reserve_plane(crtc, PlaneType.Overlay, format)


class _Framebuffer:
    def __init__(self, card, width, height):
        self.card, self.width, self.height = card, width, height


class DumbFramebuffer(_Framebuffer):
    """A CPU-mapped scan-out buffer: CMA memory, freed with the object."""

    def __init__(self, card, width, height, fourcc):
        super().__init__(card, width, height)
        fourcc = fourcc.value if isinstance(fourcc, PixelFormat) else fourcc
        self.size = width * height * _BPP.get(fourcc, 4)
        self._fd = kernel.cma_alloc(self.size, "drm-dumb")
        pisim.log(event="dumb-fb", width=width, height=height, bytes=self.size)

    def fd(self, plane):
        return self._fd

    def __del__(self):
        try:
            kernel.cma_free(self._fd)
            os.close(self._fd)
        except Exception:
            pass


class DmabufFramebuffer(_Framebuffer):
    def __init__(self, card, width, height, fourcc, fds, pitches, offsets):
        super().__init__(card, width, height)
        for fd in fds:
            os.fstat(fd)  # a closed fd fails here as the import ioctl would


class AtomicReq:
    def __init__(self, card):
        self.card, self.planes = card, []

    def add(self, obj, prop, value=None):
        pass

    def add_plane(self, plane, fb, crtc, src=None, dst=None, zpos=None, params=None):
        self.planes.append((plane, fb, crtc))

    def _result(self) -> int:
        if pisim.env("PISIM_DRM_MASTER", "us") == "desktop":
            return -errno.EACCES
        for _plane, _fb, crtc in self.planes:
            conn = next(c for c in self.card.connectors if c._crtc is crtc)
            if not conn.connected():
                return -errno.EINVAL
        return 0

    def test(self, allow_modeset=False):
        return self._result()

    def commit_sync(self, allow_modeset=False):
        r = self._result()
        if self.planes:
            overlays = sum(isinstance(fb, DumbFramebuffer) for _p, fb, _c in self.planes)
            pisim.log(event="commit", planes=len(self.planes), overlays=overlays, result=r)
        return r

    def commit(self, data=0, allow_modeset=False):
        return self._result()
