"""The one place that knows which TFLite runtime is installed.

``ai_edge_litert`` (numpy 1.24-2.x, Python 3.10+, 64-bit) first, else ``tflite_runtime``
(the 32-bit Raspberry Pi OS wheel). Both expose the same ``Interpreter``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading

log = logging.getLogger(__name__)
_fd_lock = threading.Lock()


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


@contextlib.contextmanager
def _stderr_to_log():
    """The TFLite runtime prints from C++ straight to file descriptor 2 ("INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU." when the first tensors are allocated), past Python's logging and the journal's
    priorities. For that moment fd 2 goes to a file; what was written is then logged: INFO lines at debug,
    anything else as a warning. Other threads' writes in that moment are logged the same way, not lost."""
    with _fd_lock, tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    (log.debug if line.startswith("INFO: ") else log.warning)("%s", line)


def load_interpreter(path: str, threads: int = 1):
    """An interpreter for ``path`` with its tensors allocated, its start-up chatter routed to the log.
    ValueError when the file is not a model the runtime reads."""
    with _stderr_to_log():
        interp = interpreter_class()(model_path=path, num_threads=threads)
        interp.allocate_tensors()
    return interp
