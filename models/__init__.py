"""The shipped camera model (ONNX) and its card, installed with the package; the scripts beside them train
and evaluate it (they need the ``train`` extra and are never imported at runtime)."""
