"""Smoke and fire in visible frames: the camera plugin base, a colour-and-flicker baseline, an ONNX model."""
