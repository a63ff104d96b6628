"""Simulated ``libcamera`` (see _libcamera.py): the real bindings are a C++ extension named _libcamera
re-exported by a small package, and picamera2 reaches into both names."""
from . import _libcamera  # noqa: F401
from ._libcamera import *  # noqa: F401,F403
from ._libcamera import controls, properties  # noqa: F401
