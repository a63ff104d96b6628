"""Training, evaluation and the shipped int8 emotion model (installed as ``emotion_model``).

Only :mod:`.data` and the artifacts are needed at run time; training and float
evaluation import TensorFlow lazily, from the optional ``train`` extra.
"""

import os

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def tf_environment() -> None:
    """Call before the first TensorFlow import. TensorFlow turns its oneDNN kernels on by itself
    only on CPUs with AVX-512-class features; on an AVX2-only CPU (an AMD Zen 3 here) they halve
    the time of a training epoch. A value the user set is kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
