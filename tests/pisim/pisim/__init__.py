"""A simulated Raspberry Pi below the real picamera2: the board, its cameras and its display.

The tests run the real picamera2 (from PyPI). What it talks to is simulated here, one layer down:
``libcamera`` (the Python bindings of the Raspberry Pi pipeline handlers), ``pykms`` (kmsxx's bindings)
and the few kernel devices picamera2 opens itself (the dma-heap, ``/dev/video*`` for the platform,
``/dev/dri/card*``). Each rule names the source it is taken from.

Everything is chosen by environment variables, so a CLI subprocess sees the same Pi as the test:

  PISIM_BOARD      pi4 (VC4 ISP, the default), pi5 (PiSP), zero2w (VC4, 512 MB: short of CMA)
  PISIM_CAMERAS    comma list of sensors in connector order: imx708 (v3, default), imx219 (v2),
                   imx477 (HQ), uvc (a USB webcam); empty for none
  PISIM_SOURCE     a photo or clip the sensors "see" (default: the packaged astronaut photo)
  PISIM_FRAMES     frames a camera delivers, then it stops delivering (a loose ribbon cable)
  PISIM_LOCKDIR    folder for the cross-process camera locks (libcamera: one process per camera)
  PISIM_HDMI       connected (default) | disconnected | none (no DRM card at all)
  PISIM_HDMI_MODE  the connected display's mode (default 1920x1080)
  PISIM_DRM_MASTER us (default) | desktop: a compositor holds DRM master, every atomic commit of ours
                   fails with EACCES (kmsxx returns the code; nothing raises)
  PISIM_DRM_PLANES taken: every plane is in use by another client (the preview's plane reservation fails
                   on picamera2's event-loop thread)
  PISIM_LOG        append one JSON line per notable event (plane commits, mode choices) to this file
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # the repository


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def board() -> str:
    b = env("PISIM_BOARD", "pi4")
    if b not in ("pi4", "pi5", "zero2w"):
        raise ValueError(f"PISIM_BOARD={b!r}: pi4, pi5 or zero2w")
    return b


def is_pisp() -> bool:
    return board() == "pi5"


def camera_names() -> list[str]:
    raw = env("PISIM_CAMERAS", "imx708")
    return [n.strip() for n in raw.split(",") if n.strip()]


def source_path() -> Path:
    return Path(env("PISIM_SOURCE") or ROOT / "edge" / "sources" / "astronaut.jpg")


def lockdir() -> Path:
    p = Path(env("PISIM_LOCKDIR") or f"/tmp/pisim-locks-{os.getuid()}")
    p.mkdir(parents=True, exist_ok=True)
    return p


def log(**kw) -> None:
    path = env("PISIM_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(kw) + "\n")


def install() -> None:
    """Put the simulated kernel devices under picamera2 as it imports (sitecustomize calls this)."""
    from . import kernel

    kernel.install()
    sys.modules.setdefault("pisim", sys.modules[__name__])
