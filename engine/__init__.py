"""gridwatch: a streaming alert engine for geohazard and fire monitoring."""

import os

# OpenCV reads its decoding limit once, when it is first imported: an image whose header claims more
# pixels than this is refused by the decoder itself, even where a crafted header got past our own check
# (engine/ingest/frames.py, MAX_PIXELS).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "40000000")

__version__ = "0.1.0"
