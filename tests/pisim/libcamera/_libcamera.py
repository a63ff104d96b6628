"""Simulated libcamera Python bindings (src/py/libcamera/py_main.cpp and friends) over the Raspberry Pi
pipeline handlers (src/libcamera/pipeline/rpi/{common,vc4,pisp}), for the real picamera2 to run on.

Only the surface picamera2 uses is here, with the behaviour it relies on; every rule that a test can
trip names where it comes from. Frames are a photo or clip (pisim.source_path) seen through the chosen
sensor mode's crop, scaled by the "ISP" into each output stream.
"""
from __future__ import annotations

import enum
import fcntl
import itertools
import mmap
import os
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pisim
from pisim import kernel
from pisim.sensors import SENSORS, Mode, camera_id

# --- geometry and formats (py_geometry.cpp, py_transform.cpp, py_color_space.cpp) --------------------


class Size:
    def __init__(self, width=0, height=0):
        self.width, self.height = int(width), int(height)

    def to_tuple(self):
        return (self.width, self.height)

    def __eq__(self, o):
        return isinstance(o, Size) and self.to_tuple() == o.to_tuple()

    def __hash__(self):
        return hash(self.to_tuple())

    def __repr__(self):
        return f"{self.width}x{self.height}"


class Rectangle:
    def __init__(self, x=0, y=0, width=0, height=0):
        self.x, self.y, self.width, self.height = int(x), int(y), int(width), int(height)

    @property
    def size(self):
        return Size(self.width, self.height)

    def to_tuple(self):
        return (self.x, self.y, self.width, self.height)

    def __eq__(self, o):
        return isinstance(o, Rectangle) and self.to_tuple() == o.to_tuple()

    def __hash__(self):
        return hash(self.to_tuple())

    def __repr__(self):
        return f"({self.x}, {self.y})/{self.width}x{self.height}"


# Bytes per pixel of the first plane, and whether the format is YUV 4:2:0 (src/libcamera/formats.cpp).
_FORMATS = {
    "XRGB8888": (4, "rgb"), "XBGR8888": (4, "rgb"), "RGB888": (3, "rgb"), "BGR888": (3, "rgb"),
    "YUV420": (1, "yuv420"), "YVU420": (1, "yuv420"), "NV12": (1, "nv12"), "NV21": (1, "nv12"),
    "YUYV": (2, "yuyv"), "MJPEG": (0, "mjpeg"),
}


class PixelFormat:
    def __init__(self, name=""):
        self.name = str(name)

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<libcamera.PixelFormat '{self.name}'>"

    def __eq__(self, o):
        return str(self) == str(o)

    def __hash__(self):
        return hash(self.name)

    @property
    def is_raw(self):
        return self.name.startswith(("SRGGB", "SBGGR", "SGRBG", "SGBRG", "R8", "R10", "R12", "R16"))


class Transform:
    def __init__(self, other=None, hflip=0, vflip=0, transpose=0, rotation=0):
        if isinstance(other, Transform):
            hflip, vflip, transpose = other.hflip, other.vflip, other.transpose
        self.hflip, self.vflip, self.transpose = bool(hflip), bool(vflip), bool(transpose)

    def _key(self):
        return (self.hflip, self.vflip, self.transpose)

    def __eq__(self, o):
        return isinstance(o, Transform) and self._key() == o._key()

    def __hash__(self):
        return hash(self._key())

    # transform.cpp transformToString
    def __str__(self):
        return {(0, 0, 0): "identity", (1, 0, 0): "hflip", (0, 1, 0): "vflip", (1, 1, 0): "hvflip",
                (0, 0, 1): "transpose", (1, 0, 1): "rot270", (0, 1, 1): "rot90",
                (1, 1, 1): "rot180transpose"}[tuple(map(int, self._key()))]

    def __repr__(self):
        return f"<libcamera.Transform '{self}'>"


class Orientation(enum.Enum):
    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate90 = 7
    Rotate270Mirror = 8


class ColorSpace:
    class Primaries(enum.Enum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(enum.Enum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

    class YcbcrEncoding(enum.Enum):
        Null = 0
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(enum.Enum):
        Full = 0
        Limited = 1

    def __init__(self, primaries=None, transferFunction=None, ycbcrEncoding=None, range=None):
        if isinstance(primaries, ColorSpace):
            o = primaries
            primaries, transferFunction, ycbcrEncoding, range = o.primaries, o.transferFunction, o.ycbcrEncoding, o.range
        self.primaries, self.transferFunction = primaries, transferFunction
        self.ycbcrEncoding, self.range = ycbcrEncoding, range

    def _key(self):
        return (self.primaries, self.transferFunction, self.ycbcrEncoding, self.range)

    def __eq__(self, o):
        return isinstance(o, ColorSpace) and self._key() == o._key()

    def __hash__(self):
        return hash(self._key())

    # color_space.cpp ColorSpace::toString: the well-known names, else the four fields.
    def __str__(self):
        for name in ("Raw", "Srgb", "Sycc", "Smpte170m", "Rec709", "Rec2020"):
            if self == getattr(ColorSpace, name)():
                return {"Srgb": "sRGB", "Sycc": "sYCC", "Smpte170m": "SMPTE170M"}.get(name, name)
        return "/".join(str(v).split(".")[-1] for v in self._key())

    __repr__ = __str__

    @staticmethod
    def Raw():
        return ColorSpace(ColorSpace.Primaries.Raw, ColorSpace.TransferFunction.Linear,
                          ColorSpace.YcbcrEncoding.Null, ColorSpace.Range.Full)

    @staticmethod
    def Srgb():
        return ColorSpace(ColorSpace.Primaries.Rec709, ColorSpace.TransferFunction.Srgb,
                          ColorSpace.YcbcrEncoding.Null, ColorSpace.Range.Full)

    @staticmethod
    def Sycc():
        return ColorSpace(ColorSpace.Primaries.Rec709, ColorSpace.TransferFunction.Srgb,
                          ColorSpace.YcbcrEncoding.Rec601, ColorSpace.Range.Full)

    @staticmethod
    def Smpte170m():
        return ColorSpace(ColorSpace.Primaries.Smpte170m, ColorSpace.TransferFunction.Rec709,
                          ColorSpace.YcbcrEncoding.Rec601, ColorSpace.Range.Limited)

    @staticmethod
    def Rec709():
        return ColorSpace(ColorSpace.Primaries.Rec709, ColorSpace.TransferFunction.Rec709,
                          ColorSpace.YcbcrEncoding.Rec709, ColorSpace.Range.Limited)

    @staticmethod
    def Rec2020():
        return ColorSpace(ColorSpace.Primaries.Rec2020, ColorSpace.TransferFunction.Rec709,
                          ColorSpace.YcbcrEncoding.Rec2020, ColorSpace.Range.Limited)


# --- controls and properties (py_controls_generated.cpp, control_ids_*.yaml) ----------------------------

class ControlType(enum.Enum):
    None_ = 0
    Bool = 1
    Byte = 2
    Integer32 = 3
    Integer64 = 4
    Float = 5
    String = 6
    Rectangle = 7
    Size = 8
    Point = 9


class ControlId:
    _ids = itertools.count(1)

    def __init__(self, name, type_=ControlType.Integer32):
        self.name, self.type, self.id = name, type_, next(ControlId._ids)
        self.vendor, self.isArray, self.size = "libcamera", False, 0

    def __repr__(self):
        return f"libcamera.ControlId({self.id}, {self.name})"

    __str__ = lambda self: self.name  # noqa: E731


class ControlInfo:
    def __init__(self, min, max, default=None):
        self.min, self.max, self.default = min, max, default

    def __repr__(self):
        return f"libcamera.ControlInfo({self.min}..{self.max}, {self.default})"


_T = ControlType
controls = SimpleNamespace(**{n: ControlId(n, t) for n, t in [
    ("AeEnable", _T.Bool), ("AeMeteringMode", _T.Integer32), ("AeExposureMode", _T.Integer32),
    ("ExposureValue", _T.Float), ("ExposureTime", _T.Integer32), ("ExposureTimeMode", _T.Integer32),
    ("AnalogueGain", _T.Float), ("AnalogueGainMode", _T.Integer32), ("Brightness", _T.Float),
    ("Contrast", _T.Float), ("Saturation", _T.Float), ("Sharpness", _T.Float), ("AwbEnable", _T.Bool),
    ("AwbMode", _T.Integer32), ("ColourGains", _T.Float), ("ScalerCrop", _T.Rectangle),
    ("FrameDurationLimits", _T.Integer64), ("NoiseReductionMode", _T.Integer32), ("AfMode", _T.Integer32),
    ("LensPosition", _T.Float),
    # metadata only
    ("SensorTimestamp", _T.Integer64), ("FrameDuration", _T.Integer64), ("DigitalGain", _T.Float),
    ("Lux", _T.Float), ("ColourTemperature", _T.Integer32), ("SensorBlackLevels", _T.Integer32),
]})
controls.draft = SimpleNamespace(NoiseReductionModeEnum=enum.IntEnum(
    "NoiseReductionModeEnum", {"Off": 0, "Fast": 1, "HighQuality": 2, "Minimal": 3, "ZSL": 4}))
controls.ExposureTimeModeEnum = enum.IntEnum("ExposureTimeModeEnum", {"Auto": 0, "Manual": 1})
controls.AnalogueGainModeEnum = enum.IntEnum("AnalogueGainModeEnum", {"Auto": 0, "Manual": 1})

properties = SimpleNamespace(**{n: ControlId(n, t) for n, t in [
    ("Model", _T.String), ("Location", _T.Integer32), ("Rotation", _T.Integer32),
    ("PixelArraySize", _T.Size), ("PixelArrayActiveAreas", _T.Rectangle), ("ScalerCropMaximum", _T.Rectangle),
    ("ColorFilterArrangement", _T.Integer32), ("UnitCellSize", _T.Size), ("SystemDevices", _T.Integer64),
]})
properties.draft = SimpleNamespace(ColorFilterArrangementEnum=enum.IntEnum(
    "ColorFilterArrangementEnum", {"RGGB": 0, "GRBG": 1, "GBRG": 2, "BGGR": 3, "RGB": 4, "MONO": 5}))


# --- streams and configurations ----------------------------------------------------------------------

class StreamRole(enum.Enum):
    Raw = 0
    StillCapture = 1
    VideoRecording = 2
    Viewfinder = 3


class StreamFormats:
    def __init__(self, table: dict[str, list[tuple[int, int]]]):
        self._table = table

    @property
    def pixel_formats(self):
        return [PixelFormat(f) for f in self._table]

    def sizes(self, pix):
        return [Size(*s) for s in self._table.get(str(pix), [])]

    def range(self, pix):
        sizes = self._table.get(str(pix), [])
        return SimpleNamespace(min=Size(*min(sizes)), max=Size(*max(sizes))) if sizes else None


class Stream:
    def __init__(self, cfg):
        self._cfg = cfg

    @property
    def configuration(self):
        return self._cfg


class StreamConfiguration:
    def __init__(self, size, fmt, formats, color_space=None, buffer_count=4):
        self.size, self.pixel_format, self.formats = size, fmt, formats
        self.stride, self.frame_size, self.buffer_count, self.color_space = 0, 0, buffer_count, color_space
        self.stream = Stream(self)

    def __str__(self):
        return f"{self.size}-{self.pixel_format}"


class SensorConfiguration:
    def __init__(self):
        self.bit_depth, self.output_size = 0, Size()
        self.analog_crop, self.binning, self.skipping = Rectangle(), (1, 1), (1, 1, 1, 1)

    def is_valid(self):
        return self.bit_depth > 0 and self.output_size.width > 0 and self.output_size.height > 0


def _align(v, a):
    return (v + a - 1) // a * a


def stride_and_frame(fmt: str, size: Size, pisp: bool, raw_depth: int = 0) -> tuple[int, int]:
    """Hardware line strides. VC4's ISP aligns planes to 32 bytes and PiSP's back end to 64
    (picamera2.py Picamera2.align_stream, "matches the hardware behaviour"); a YUV 4:2:0 chroma plane is
    half the luma stride, so the luma stride carries twice the alignment (pisp.cpp computeOptimalStride:
    "double the U/V stride for the Y-plane")."""
    w, h = size.width, size.height
    align = 64 if pisp else 32
    if raw_depth:  # CSI-2 packed: 4 pixels in 5 bytes at 10 bits, 2 in 3 at 12; unpacked 8-bit one byte
        line = w if raw_depth == 8 else (w * 5 // 4 if raw_depth == 10 else w * 3 // 2)
        stride = _align(line, 32)
        return stride, stride * h
    bpp, kind = _FORMATS[fmt]
    if kind == "yuv420":
        stride = _align(w, 2 * align)
        return stride, stride * h * 3 // 2
    if kind == "nv12":
        stride = _align(w, align)
        return stride, stride * h * 3 // 2
    if kind == "mjpeg":
        return 0, w * h * 3
    stride = _align(w * bpp, align)
    return stride, stride * h


class CameraConfiguration:
    class Status(enum.Enum):
        Valid = 0
        Adjusted = 1
        Invalid = 2

    def __init__(self, camera, cfgs):
        self._camera, self._cfgs = camera, cfgs
        self.sensor_config = None
        self.orientation = Orientation.Rotate0
        self.mode: Mode | None = None

    def __iter__(self):
        return iter(self._cfgs)

    def __len__(self):
        return len(self._cfgs)

    @property
    def size(self):
        return len(self._cfgs)

    @property
    def empty(self):
        return not self._cfgs

    def at(self, i):
        if not 0 <= i < len(self._cfgs):
            raise IndexError("Index out of range")
        return self._cfgs[i]

    def validate(self):
        return self._camera._validate(self)


# --- buffers and requests --------------------------------------------------------------------------------

class FrameMetadata:
    class Status(enum.Enum):
        Success = 0
        Error = 1
        Cancelled = 2

    def __init__(self, n_planes):
        self.status, self.sequence, self.timestamp = FrameMetadata.Status.Success, 0, 0
        self.planes = [SimpleNamespace(bytes_used=0) for _ in range(n_planes)]


class FrameBuffer:
    class Plane:
        def __init__(self):
            self.fd, self.offset, self.length = -1, 0, 0

    def __init__(self, planes, cookie=0):
        self.planes = list(planes)
        self.metadata = FrameMetadata(len(self.planes))
        self.cookie = cookie
        for p, mp in zip(self.planes, self.metadata.planes):
            mp.bytes_used = p.length


class FrameBufferAllocator:
    """Buffers allocated by libcamera itself (picamera2's LibcameraAllocator): memfds from the same CMA."""

    def __init__(self, camera):
        self._bufs = {}

    def allocate(self, stream):
        cfg = stream.configuration
        bufs = []
        for _ in range(cfg.buffer_count):
            p = FrameBuffer.Plane()
            p.fd, p.length = kernel.cma_alloc(cfg.frame_size, "libcamera"), cfg.frame_size
            bufs.append(FrameBuffer([p]))
        self._bufs[stream] = bufs
        return len(bufs)

    @property
    def allocated(self):
        return bool(self._bufs)

    def buffers(self, stream):
        return self._bufs[stream]


class Request:
    class Status(enum.Enum):
        Pending = 0
        Complete = 1
        Cancelled = 2

    class ReuseFlag(enum.Enum):
        Default = 0
        ReuseBuffers = 1

    def __init__(self, camera, cookie):
        self._camera, self.cookie = camera, cookie
        self.status, self.sequence = Request.Status.Pending, 0
        self.buffers: dict[Stream, FrameBuffer] = {}
        self.controls: dict = {}
        self.metadata: dict = {}

    def add_buffer(self, stream, buffer):
        if stream in self.buffers:
            raise RuntimeError("Failed to add buffer: File exists")
        self.buffers[stream] = buffer

    def set_control(self, cid, value):
        if cid not in self._camera._control_infos():
            # camera.cpp Camera::queueRequest -> validator: a control the camera does not list is refused.
            raise RuntimeError(f"Control {cid.name} not supported")
        self.controls[cid] = value

    @property
    def has_pending_buffers(self):
        return self.status == Request.Status.Pending

    def reuse(self, flags=None):
        self.status, self.controls, self.metadata = Request.Status.Pending, {}, {}


# --- the camera and its manager ---------------------------------------------------------------------------

class Camera:
    def __init__(self, manager, name: str, index: int):
        self._mgr, self._name, self._sensor = manager, name, SENSORS[name]
        self.id = camera_id(name, index, pisim.is_pisp())
        self._lock_file = None
        self._state = "available"  # available -> acquired -> configured -> running (camera.cpp)
        self._config: CameraConfiguration | None = None
        self._mode: Mode | None = None
        self._queue: list[Request] = []
        self._qlock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._duration_us = 33333
        self._sequence = 0
        self._maps: dict[int, mmap.mmap] = {}
        self._source = None

    def __repr__(self):
        return f"<libcamera.Camera '{self.id}'>"

    # properties and controls (the RPi IPA advertises these per sensor mode)
    @property
    def properties(self):
        s, p = self._sensor, properties
        out = {p.Model: s.model, p.Location: 2, p.Rotation: 0,
               p.PixelArraySize: Size(*s.array), p.PixelArrayActiveAreas: [Rectangle(0, 0, *s.array)],
               p.ScalerCropMaximum: Rectangle(0, 0, *s.array), p.SystemDevices: [0]}
        if not s.uvc:  # a raw Bayer sensor; picamera2 tells Pi cameras from USB ones by this property
            out[p.ColorFilterArrangement] = p.draft.ColorFilterArrangementEnum.RGGB
        return out

    def _control_infos(self):
        c, s = controls, self._sensor
        if s.uvc:  # uvcvideo.cpp: what the webcam's V4L2 controls map to
            return {c.Brightness: ControlInfo(-1.0, 1.0, 0.0), c.Contrast: ControlInfo(0.0, 2.0, 1.0),
                    c.Saturation: ControlInfo(0.0, 2.0, 1.0), c.AeEnable: ControlInfo(False, True, True),
                    c.ExposureTime: ControlInfo(100, 500000, 20000)}
        mode = self._mode or max(s.modes, key=lambda m: m.size[0] * m.size[1])
        min_dur = int(round(1e6 / mode.fps))
        infos = {
            c.AeEnable: ControlInfo(False, True, True), c.ExposureValue: ControlInfo(-8.0, 8.0, 0.0),
            c.ExposureTime: ControlInfo(26, 112015443, 20000), c.ExposureTimeMode: ControlInfo(0, 1, 0),
            c.AnalogueGain: ControlInfo(1.0, 16.0, 1.0), c.AnalogueGainMode: ControlInfo(0, 1, 0),
            c.Brightness: ControlInfo(-1.0, 1.0, 0.0), c.Contrast: ControlInfo(0.0, 32.0, 1.0),
            c.Saturation: ControlInfo(0.0, 32.0, 1.0), c.Sharpness: ControlInfo(0.0, 16.0, 1.0),
            c.AwbEnable: ControlInfo(False, True, True), c.AwbMode: ControlInfo(0, 7, 0),
            c.ColourGains: ControlInfo(0.0, 32.0, 0.0),
            c.ScalerCrop: ControlInfo(Rectangle(0, 0, 64, 64), Rectangle(*mode.crop), Rectangle(*mode.crop)),
            c.FrameDurationLimits: ControlInfo(min_dur, 1_000_000_000, min_dur),
            c.NoiseReductionMode: ControlInfo(0, 4, 0),
        }
        if s.autofocus:
            infos[c.AfMode] = ControlInfo(0, 2, 0)
            infos[c.LensPosition] = ControlInfo(0.0, 15.0, 1.0)
        return infos

    @property
    def controls(self):
        return self._control_infos()

    @property
    def streams(self):
        return {c.stream for c in self._config} if self._config else set()

    # camera.cpp: one process owns a camera (acquire), enforced by the media device lock across processes.
    def acquire(self):
        if self._lock_file is not None:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        f = open(pisim.lockdir() / (self.id.strip("/").replace("/", "_") + ".lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise RuntimeError("Failed to acquire camera: Device or resource busy") from None
        self._lock_file, self._state = f, "acquired"

    def release(self):
        if self._state == "running":
            raise RuntimeError("Failed to release camera: Device or resource busy")
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self._state = "available"

    def generate_configuration(self, roles):
        s = self._sensor
        if s.uvc:  # uvcvideo.cpp: one stream whatever is asked, in the webcam's own formats
            fmts = StreamFormats({f: list(sz) for f, sz in s.uvc_formats.items()})
            return CameraConfiguration(self, [StreamConfiguration(Size(640, 480), PixelFormat("YUYV"), fmts)])
        raw_table: dict[str, list] = {}
        for m in s.modes:
            raw_table.setdefault(m.fmt, []).append(m.size)
        out_table = {f: [(64, 64), s.array] for f in _FORMATS if f not in ("YUYV", "MJPEG")}
        cfgs = []
        for role in roles:
            if role == StreamRole.Raw:
                big = max(s.modes, key=lambda m: m.size[0] * m.size[1])
                cfgs.append(StreamConfiguration(Size(*big.size), PixelFormat(big.fmt), StreamFormats(raw_table),
                                                ColorSpace.Raw()))
            else:
                cfgs.append(StreamConfiguration(Size(1920, 1080), PixelFormat("YUV420"), StreamFormats(out_table),
                                                ColorSpace.Sycc()))
        return CameraConfiguration(self, cfgs)

    # pipeline_base.cpp RPiCameraConfiguration::validate (+ vc4.cpp / pisp.cpp platformValidate)
    def _validate(self, config: CameraConfiguration):
        S = CameraConfiguration.Status
        status = S.Valid
        if config.empty:
            return S.Invalid
        pisp = pisim.is_pisp()
        if self._sensor.uvc:
            if len(config) > 1:  # uvcvideo.cpp validate: "config_.resize(1)"
                del config._cfgs[1:]
                status = S.Adjusted
            cfg = config.at(0)
            if str(cfg.pixel_format) not in self._sensor.uvc_formats:
                cfg.pixel_format, status = PixelFormat("YUYV"), S.Adjusted
            cfg.stride, cfg.frame_size = stride_and_frame(str(cfg.pixel_format), cfg.size, False)
            return status
        raws = [c for c in config if c.pixel_format.is_raw]
        outs = sorted((c for c in config if not c.pixel_format.is_raw), key=lambda c: -c.size.width * c.size.height)
        # "Can only output 1 RAW stream, or 2 YUV/RGB streams."
        if len(raws) > 1 or len(outs) > 2:
            return S.Invalid
        for c in outs:
            if str(c.pixel_format) not in _FORMATS or str(c.pixel_format) in ("YUYV", "MJPEG"):
                return S.Invalid
        if config.sensor_config is not None:
            sc = config.sensor_config
            if not sc.is_valid():
                return S.Invalid  # "Invalid sensor configuration request"
            want, depth = sc.output_size.to_tuple(), sc.bit_depth
        elif raws:
            want, depth = raws[0].size.to_tuple(), Mode(str(raws[0].pixel_format), (0, 0), 0, (0,) * 4).bit_depth
        else:
            want, depth = outs[0].size.to_tuple(), 12
        mode = self._best_mode(want, depth)
        if config.sensor_config is not None and (mode.size != want or mode.bit_depth != depth):
            return S.Invalid  # "Invalid sensor configuration: bitDepth/size mismatch"
        config.mode = mode
        for r in raws:  # the raw stream is the sensor mode
            if r.size.to_tuple() != mode.size or str(r.pixel_format) != mode.fmt:
                r.size, r.pixel_format, status = Size(*mode.size), PixelFormat(mode.fmt), S.Adjusted
            r.color_space = ColorSpace.Raw()
            r.stride, r.frame_size = stride_and_frame(mode.fmt, r.size, pisp, mode.bit_depth)
        # "one stream must be equal or smaller than the other in all dimensions" (vc4 and pisp)
        for c in outs:
            w, h = min(c.size.width, outs[0].size.width), min(c.size.height, outs[0].size.height)
            if (w, h) != c.size.to_tuple():
                c.size, status = Size(w, h), S.Adjusted
            # the ISP's output sizes are even (V4L2 format alignment): odd sizes are rounded down
            if c.size.width % 2 or c.size.height % 2:
                c.size, status = Size(c.size.width & ~1, c.size.height & ~1), S.Adjusted
        # validateColorSpaces: one YUV colour space for all output streams; RGB streams get its full-range form
        yuv = next((c.color_space for c in outs if c.color_space is not None and c.color_space != ColorSpace.Raw()),
                   None) or ColorSpace.Sycc()
        rgb = ColorSpace(yuv)
        rgb.ycbcrEncoding, rgb.range = ColorSpace.YcbcrEncoding.Null, ColorSpace.Range.Full
        for c in outs:
            fmt = str(c.pixel_format)
            target = rgb if _FORMATS[fmt][1] == "rgb" else yuv
            if c.color_space != target:
                if c.color_space is not None and c.color_space != yuv:
                    status = S.Adjusted
                c.color_space = target
            stride, frame = stride_and_frame(fmt, c.size, pisp)
            if c.stride and c.stride > stride:  # an application may ask for a wider stride, not a narrower one
                frame = frame // stride * c.stride
                stride = c.stride
            c.stride, c.frame_size = stride, frame
        return status

    def _best_mode(self, size, depth) -> Mode:
        """CameraData::findBestFormat (pipeline_base.cpp): the mode scoring picamera2 copies."""
        def score(m):
            def sf(desired, actual):
                d = desired - actual
                return -d / 4 if d < 0 else d * 2
            ar, mar = size[0] / size[1], m.size[0] / m.size[1]
            return (sf(size[0], m.size[0]) + sf(size[1], m.size[1]) + 1500 * sf(ar, mar)
                    + 500 * abs(depth - m.bit_depth))
        return min(self._sensor.modes, key=score)

    def configure(self, config):
        if self._state not in ("acquired", "configured"):
            raise RuntimeError("Failed to configure camera: Operation not permitted")
        if config.validate() == CameraConfiguration.Status.Invalid:
            raise RuntimeError("Failed to configure camera: Invalid argument")
        self._config, self._mode, self._state = config, config.mode, "configured"
        if config.mode is not None:
            pisim.log(event="sensor-mode", camera=self.id, size=list(config.mode.size), crop=list(config.mode.crop))
        return 0

    def create_request(self, cookie=0):
        if self._state not in ("configured", "running"):
            return None
        return Request(self, cookie)

    def queue_request(self, req):
        if self._state != "running":
            raise RuntimeError("Failed to queue request: Operation not permitted")
        for stream in req.buffers:
            if stream not in self.streams:
                raise RuntimeError("Failed to queue request: Invalid argument")
        with self._qlock:
            self._queue.append(req)

    def start(self, controls=None):
        if self._state != "configured":
            raise RuntimeError("Failed to start camera: Operation not permitted")
        self._apply(controls or {})
        self._state, self._stop = "running", threading.Event()
        self._source = _Source(pisim.source_path())
        self._thread = threading.Thread(target=self._run, name=f"libcamera-{self._name}", daemon=True)
        self._thread.start()

    def stop(self):
        if self._state != "running":
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._state = "configured"
        # Camera::stop completes every pending request as cancelled (pipeline_handler.cpp)
        with self._qlock:
            pending, self._queue = self._queue, []
        for req in pending:
            req.status = Request.Status.Cancelled
            for fb in req.buffers.values():
                fb.metadata.status = FrameMetadata.Status.Cancelled
            self._mgr._complete(req)
        for m in self._maps.values():
            m.close()
        self._maps.clear()

    def _apply(self, ctrls):
        for cid, v in ctrls.items():
            if getattr(cid, "name", "") == "FrameDurationLimits":
                lo = v[0] if isinstance(v, (tuple, list)) else v
                self._duration_us = max(int(lo), int(round(1e6 / self._mode.fps)) if self._mode else 0)

    # the sensor and the ISP
    def _run(self):
        frames = pisim.env("PISIM_FRAMES")
        limit = int(frames) if frames else None
        next_t = time.monotonic()
        while not self._stop.is_set():
            next_t += self._duration_us / 1e6
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if limit is not None and self._sequence >= limit:
                if self._sequence == limit:
                    self._sequence += 1
                    pisim.log(event="stalled", camera=self.id, frames=limit)
                continue  # the sensor stopped sending (loose cable): requests stay queued
            with self._qlock:
                req = self._queue.pop(0) if self._queue else None
            self._sequence += 1
            if req is None:
                continue  # no buffer to fill: the frame is dropped, as the pipeline does
            self._apply(req.controls)
            picture = self._source.next()
            for stream, fb in req.buffers.items():
                self._fill(stream.configuration, fb, picture)
                fb.metadata.status, fb.metadata.sequence = FrameMetadata.Status.Success, self._sequence
            ts = time.monotonic_ns()
            c = controls
            req.metadata = {c.SensorTimestamp: ts, c.FrameDuration: self._duration_us, c.ExposureTime: 20000,
                            c.AnalogueGain: 2.0, c.DigitalGain: 1.0, c.Lux: 400.0, c.ColourTemperature: 4500}
            if self._mode is not None:
                req.metadata[c.ScalerCrop] = Rectangle(*self._mode.crop)
            req.sequence, req.status = self._sequence, Request.Status.Complete
            self._mgr._complete(req)

    def _view(self, picture: np.ndarray) -> np.ndarray:
        """What the sensor mode sees: the scene spans the pixel array; a mode crops it."""
        s = self._sensor
        aw, ah = s.array
        h, w = picture.shape[:2]
        # the scene: the picture in the middle of a grey room of the array's aspect ratio, so the full
        # field of view shows all of it and a cropped mode its middle
        if w * ah > h * aw:
            nh = w * ah // aw
            top = (nh - h) // 2
            picture = cv2.copyMakeBorder(picture, top, nh - h - top, 0, 0, cv2.BORDER_CONSTANT, value=(90, 90, 90))
        else:
            nw = h * aw // ah
            left = (nw - w) // 2
            picture = cv2.copyMakeBorder(picture, 0, 0, left, nw - w - left, cv2.BORDER_CONSTANT, value=(90, 90, 90))
        if self._mode is None:
            return picture
        ph, pw = picture.shape[:2]
        x, y, cw, ch = self._mode.crop
        return picture[y * ph // ah:(y + ch) * ph // ah, x * pw // aw:(x + cw) * pw // aw]

    def _fill(self, cfg, fb, picture):
        fd = fb.planes[0].fd
        m = self._maps.get(fd)
        if m is None or m.closed:
            m = self._maps[fd] = mmap.mmap(fd, fb.planes[0].length or cfg.frame_size)
        fmt, w, h, stride = str(cfg.pixel_format), cfg.size.width, cfg.size.height, cfg.stride
        if cfg.pixel_format.is_raw:
            return
        view = self._view(picture)
        # the ISP keeps the output's aspect ratio: a centred crop of the mode's field, then a scale
        vh, vw = view.shape[:2]
        if vw * h > vh * w:
            nw = vh * w // h
            view = view[:, (vw - nw) // 2:(vw - nw) // 2 + nw]
        else:
            nh = vw * h // w
            view = view[(vh - nh) // 2:(vh - nh) // 2 + nh]
        img = cv2.resize(view, (w, h), interpolation=cv2.INTER_AREA)
        buf = np.frombuffer(m, dtype=np.uint8)
        kind = _FORMATS[fmt][1]
        if kind == "rgb":
            bpp = _FORMATS[fmt][0]
            px = img if fmt in ("BGR888", "XRGB8888") else img[:, :, ::-1]  # XRGB8888 is B, G, R, X in memory
            if bpp == 4:
                px = np.dstack([px, np.full((h, w), 255, np.uint8)])
            rows = buf[:stride * h].reshape(h, stride)
            rows[:, :w * bpp] = px.reshape(h, w * bpp)
        elif kind in ("yuv420", "nv12"):
            y = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            if cfg.color_space is not None and cfg.color_space.range == ColorSpace.Range.Limited:
                y = (16 + y.astype(np.uint16) * 219 // 255).astype(np.uint8)
            rows = buf[:stride * h].reshape(h, stride)
            rows[:, :w] = y
            buf[stride * h:cfg.frame_size] = 128


class _Source:
    """The scene: a photo (always the same) or a clip (looped), in BGR."""

    def __init__(self, path):
        self.path = str(path)
        self.cap = None
        img = cv2.imread(self.path)
        if img is not None:
            self.still = img
            return
        self.still = None
        self.cap = cv2.VideoCapture(self.path)
        if not self.cap.isOpened():
            raise RuntimeError(f"pisim: cannot read {self.path}")

    def next(self):
        if self.still is not None:
            return self.still
        ok, frame = self.cap.read()
        if not ok:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        return frame


class CameraManager:
    _instance = None
    version = "v0.5.2+sim"

    def __init__(self):
        self._ready: list[Request] = []
        self._lock = threading.Lock()
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        names = pisim.camera_names()
        # libcamera lists cameras in the order pipeline handlers match: USB webcams (uvcvideo) may come
        # before the Pi's own; picamera2 sorts its own list, so its index is not libcamera's.
        order = sorted(range(len(names)), key=lambda i: not SENSORS[names[i]].uvc)
        self.cameras = [Camera(self, names[i], i) for i in order]

    @staticmethod
    def singleton():
        if CameraManager._instance is None:
            CameraManager._instance = CameraManager()
        return CameraManager._instance

    def get(self, id_):
        for c in self.cameras:
            if c.id == id_:
                return c
        raise RuntimeError(f"Camera {id_} not found")

    find = get

    @property
    def event_fd(self):
        return self._efd

    def _complete(self, req):
        with self._lock:
            self._ready.append(req)
        os.eventfd_write(self._efd, 1)

    def get_ready_requests(self):
        """py_camera_manager.cpp getReadyRequests: clears the event fd, hands over completed requests."""
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            pass
        with self._lock:
            ready, self._ready = self._ready, []
        return ready


__all__ = ["Camera", "CameraConfiguration", "CameraManager", "ColorSpace", "ControlId", "ControlInfo", "ControlType",
           "FrameBuffer", "FrameBufferAllocator", "FrameMetadata", "Orientation", "PixelFormat", "Rectangle", "Request",
           "SensorConfiguration", "Size", "Stream", "StreamConfiguration", "StreamFormats", "StreamRole", "Transform",
           "controls", "properties"]
