"""gridwatch: a streaming alert engine for geohazard and fire monitoring."""

import os

MAX_FRAME_PIXELS = 40_000_000
"""The largest camera frame decoded (engine/ingest/frames.py checks the header against it)."""

# OpenCV reads its decoding limit once, when it is first imported: an image whose header claims more
# pixels than this is refused by the decoder itself, even where a crafted header got past our own check.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))

__version__ = "0.1.0"
