"""emotion-edge: faces and their emotions from a camera, live, on a Raspberry Pi."""

__version__ = "0.1.0"
