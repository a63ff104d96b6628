"""emotion-edge: faces and their emotions from a camera, live, on a Raspberry Pi."""
import os as _os

# OpenCV reads these once, when cv2 is first imported, and every part of the program imports this package
# first. Its own warnings ("[ WARN:0@0.038] global cap_v4l.cpp ... VIDEOIO ...") would otherwise come before
# our one clear line about the same failure; a user who wants them sets OPENCV_LOG_LEVEL.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
# OpenCV's own pixel limit, a second line behind the header checks of edge/sources/images.py; it is read at
# import, so it is set here ([camera] max_pixels' default; a larger setting there is capped by this).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(64_000_000))

__version__ = "0.1.0"
