"""The one place that knows which TFLite runtime is installed.

``ai_edge_litert`` (numpy 1.24-2.x, Python 3.10+, 64-bit) first, else ``tflite_runtime``
(the 32-bit Raspberry Pi OS wheel). Both expose the same ``Interpreter``.
"""
from __future__ import annotations


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ImportError(
                "no TFLite runtime: pip install ai-edge-litert (64-bit) or tflite-runtime (32-bit ARM)"
            ) from None
    return Interpreter


def runtime_name() -> str:
    mod = interpreter_class().__module__
    return mod.split(".")[0]
