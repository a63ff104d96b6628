"""Training, evaluation and the shipped int8 emotion model (installed as ``emotion_model``).

Only :mod:`.data` and the artifacts are needed at run time; training and float
evaluation import TensorFlow lazily, from the optional ``train`` extra.
"""

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
