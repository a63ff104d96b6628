"""The cameras a Pi user plugs in, as libcamera describes them.

Sensor modes (raw format, output size, frame rate, crop within the pixel array) are those the
Raspberry Pi pipeline handler reports for each sensor, as printed by picamera2's ``sensor_modes`` (and
``rpicam-hello --list-cameras``) in the Raspberry Pi camera documentation and picamera2's manual.
Ids follow the device-tree paths libcamera uses on a Pi 4 (VC4, i2c0mux) and a Pi 5 (PiSP, RP1).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mode:
    fmt: str                      # raw pixel format, e.g. SRGGB10_CSI2P
    size: tuple[int, int]
    fps: float
    crop: tuple[int, int, int, int]  # (x, y, w, h) in the pixel array: what the mode sees

    @property
    def bit_depth(self) -> int:
        return int("".join(c for c in self.fmt.split("_")[0] if c.isdigit()))


@dataclass(frozen=True)
class Sensor:
    model: str
    array: tuple[int, int]       # PixelArraySize
    modes: tuple[Mode, ...]
    autofocus: bool = False
    uvc: bool = False
    uvc_formats: dict = field(default_factory=dict)  # pixel format -> sizes, for a USB webcam


def _full(w, h):
    return (0, 0, w, h)


SENSORS = {
    # Camera Module 3: the 1536x864 mode is binned and cropped (120 fps), 2304x1296 binned full field.
    "imx708": Sensor("imx708", (4608, 2592), (
        Mode("SRGGB10_CSI2P", (1536, 864), 120.13, (768, 432, 3072, 1728)),
        Mode("SRGGB10_CSI2P", (2304, 1296), 56.03, _full(4608, 2592)),
        Mode("SRGGB10_CSI2P", (4608, 2592), 14.35, _full(4608, 2592)),
    ), autofocus=True),
    # Camera Module 2: 640x480 and 1920x1080 are crops; 1640x1232 is the binned full field.
    "imx219": Sensor("imx219", (3280, 2464), (
        Mode("SRGGB10_CSI2P", (640, 480), 103.33, (1000, 752, 1280, 960)),
        Mode("SRGGB10_CSI2P", (1640, 1232), 41.85, _full(3280, 2464)),
        Mode("SRGGB10_CSI2P", (1920, 1080), 47.57, (680, 692, 1920, 1080)),
        Mode("SRGGB10_CSI2P", (3280, 2464), 21.19, _full(3280, 2464)),
        Mode("SRGGB8", (640, 480), 103.33, (1000, 752, 1280, 960)),
        Mode("SRGGB8", (1640, 1232), 41.85, _full(3280, 2464)),
        Mode("SRGGB8", (1920, 1080), 47.57, (680, 692, 1920, 1080)),
        Mode("SRGGB8", (3280, 2464), 21.19, _full(3280, 2464)),
    )),
    # HQ camera: 1332x990 is a cropped, binned 120 fps mode; 2028x1080 crops the height.
    "imx477": Sensor("imx477", (4056, 3040), (
        Mode("SRGGB10_CSI2P", (1332, 990), 120.05, (696, 528, 2664, 1980)),
        Mode("SRGGB12_CSI2P", (2028, 1080), 50.03, (0, 440, 4056, 2160)),
        Mode("SRGGB12_CSI2P", (2028, 1520), 40.01, _full(4056, 3040)),
        Mode("SRGGB12_CSI2P", (4056, 3040), 10.0, _full(4056, 3040)),
    )),
    "uvc": Sensor("USB Camera", (1920, 1080), (), uvc=True,
                  uvc_formats={"YUYV": ((640, 480), (1280, 720)), "MJPEG": ((640, 480), (1280, 720), (1920, 1080))}),
}


def camera_id(name: str, index: int, pisp: bool) -> str:
    """libcamera's camera id: the sensor's device-tree path (its I2C bus and address)."""
    if SENSORS[name].uvc:
        return ("/base/axi/pcie@120000/rp1/usb@200000-1:1.0-046d:0825" if pisp
                else "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:0825")
    address = {"imx708": "1a", "imx219": "10", "imx477": "1a"}[name]
    if pisp:  # Pi 5: CAM/DISP 0 on i2c@88000, CAM/DISP 1 on i2c@80000
        bus = ("i2c@88000", "i2c@80000")[index % 2]
        return f"/base/axi/pcie@120000/rp1/{bus}/{name}@{address}"
    return f"/base/soc/i2c0mux/i2c@1/{name}@{address}"
