"""Decoding camera frames: JPEG/PNG (visible), 16-bit TIFF or NumPy ``.npy`` (thermal), and files on disk.

The image's dimensions are read from its header before it is decoded, so a decompression bomb (a small
file that claims a huge image) is refused before it costs memory (``too_many_pixels``); a payload that is
not an image of an accepted kind is refused as ``not_an_image``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.vision.base import Frame
from engine import MAX_FRAME_PIXELS
from engine.extras import require

MAX_PIXELS = MAX_FRAME_PIXELS
MIN_SIDE_PX = 1
# Thermal cores are at most 1280x1024; a thermal "frame" of 40 MP took the hot-spot blur minutes (its radius
# grows with the width) while fires waited
MAX_THERMAL_PIXELS = 4_000_000


def pixel_limit(thermal: bool, max_pixels: int = MAX_PIXELS) -> int:
    """The most pixels a frame may have: ``max_pixels``, and no more than a thermal core has for a thermal one.

    >>> pixel_limit(False), pixel_limit(True)
    (40000000, 4000000)
    """
    return min(max_pixels, MAX_THERMAL_PIXELS) if thermal else max_pixels


MAX_ASPECT = 8  # a panorama of 4:1 is wide; 8:1 is no camera's frame
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".npy"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov"}


class FrameError(ValueError):
    """A payload that is not a usable frame; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def image_size(data: bytes) -> tuple[str, int, int]:
    """(kind, width, height) from the header of a JPEG, PNG, TIFF or .npy payload.

    >>> png = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + struct.pack(">II", 640, 360)
    >>> image_size(png)
    ('png', 640, 360)
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:2] == b"\xff\xd8":
        return ("jpeg", *_jpeg_size(data))
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ("tiff", *_tiff_size(data))
    if data[:6] == b"\x93NUMPY":
        shape = _npy_shape(data)
        return "npy", int(shape[1]), int(shape[0])
    raise FrameError("not_an_image", "not a JPEG, PNG, TIFF or .npy payload")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's frame header, walking its segments strictly: a stuffed ``FF 00`` or a
    scan before the frame header is no JPEG that a decoder would read the same way, so it is refused rather
    than sized by a guess that the decoder then contradicts."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise FrameError("not_an_image", f"JPEG with data between segments at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before the marker (JPEG allows any number): not a segment
            i += 1
            continue
        if marker in (0x00, 0xD8, 0xD9, 0xDA) or 0xD0 <= marker <= 0xD7:
            raise FrameError("not_an_image", f"JPEG with marker FF {marker:02X} before its frame header")
        if marker == 0x01:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise FrameError("not_an_image", f"JPEG segment FF {marker:02X} of length {length}")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    raise FrameError("not_an_image", "JPEG without a frame header")


def _tiff_size(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(end + "I", data[4:8])
        (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
        size: dict[int, int] = {}
        for k in range(count):
            tag, typ, _n = struct.unpack(end + "HHI", data[ifd + 2 + 12 * k : ifd + 10 + 12 * k])
            raw = data[ifd + 10 + 12 * k : ifd + 14 + 12 * k]
            value = struct.unpack(end + ("H" if typ == 3 else "I"), raw[:2] if typ == 3 else raw)[0]
            if tag in (256, 257):
                if tag in size:  # which one a decoder takes is its own choice: no guess here
                    raise FrameError("not_an_image", f"TIFF with its {'width' if tag == 256 else 'height'} tag twice")
                size[tag] = value
        return size.get(256, 0), size.get(257, 0)
    except struct.error as exc:
        raise FrameError("not_an_image", f"truncated TIFF header ({exc})") from None


def _npy_shape(data: bytes) -> tuple[int, ...]:
    """The shape of a ``.npy`` frame, read by NumPy's own header parser, of a plain number type (no record
    or sub-array type, whose real size the shape does not tell), and exactly as long as the payload: a
    header that claims a small shape cannot make ``np.load`` allocate a large one."""
    from numpy.lib import format as npy

    f = io.BytesIO(data)
    try:
        version = npy.read_magic(f)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"version {version}")
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, _fortran, dtype = read(f, max_header_size=1024)
    except Exception as exc:  # numpy's header parser raises what literal_eval and tokenize raise
        raise FrameError("not_an_image", f"bad .npy header ({type(exc).__name__})") from None
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in "uif" or dtype.itemsize > 8:
        raise FrameError("not_an_image", f".npy of type {str(dtype)[:100]}: send plain numbers (uint8/16, float32)")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] > 4):
        raise FrameError("not_an_image", f".npy of shape {shape}: a frame is HxW or HxWxC (C <= 4)")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if min(shape) > 0 else 0
    held = len(data) - f.tell()
    if size != held:
        raise FrameError("not_an_image", f".npy header says {size} bytes of data, the payload holds {held}")
    return tuple(int(v) for v in shape)


def checked_size(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """``image_size``, refused (``too_many_pixels``) beyond ``max_pixels``: what can be known of a frame
    before a byte of it is decoded.

    >>> png = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + struct.pack(">II", 9000, 9000)
    >>> checked_size(png)
    Traceback (most recent call last):
    ...
    engine.ingest.frames.FrameError: too_many_pixels: png of 9000x9000 pixels (limit 40000000)
    """
    kind, w, h = image_size(data)
    check_dimensions(kind, w, h, max_pixels)
    return kind, w, h


def check_dimensions(kind: str, w: int, h: int, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse a frame of ``w`` x ``h`` pixels that no camera sends (``checked_size``'s bounds, for a frame
    that is already decoded, such as one pulled from a camera's stream).

    >>> check_dimensions("rtsp", 1920, 1080)
    >>> check_dimensions("rtsp", 8000, 6000)
    Traceback (most recent call last):
    ...
    engine.ingest.frames.FrameError: too_many_pixels: rtsp of 8000x6000 pixels (limit 40000000)
    """
    if w <= 0 or h <= 0 or w * h > max_pixels:
        raise FrameError("too_many_pixels", f"{kind} of {w}x{h} pixels (limit {max_pixels})")
    if min(w, h) < MIN_SIDE_PX or max(w, h) > MAX_ASPECT * min(w, h):
        # no camera's frame: a 1x2,000,000 strip made the thermal blur run for minutes
        raise FrameError("not_an_image", f"{kind} of {w}x{h} pixels is no camera frame (sides of at least "
                                         f"{MIN_SIDE_PX} px, at most {MAX_ASPECT}:1)")  # fmt: skip


THERMAL_SCENE_C = (-90.0, 300.0)  # a scene's median temperature outside this is a calibration error


@cache
def opencv() -> Any:
    """OpenCV, from the ``cameras`` extra: a clear stop naming it when it is not installed."""
    require("cameras", "cv2", "decoding camera frames")
    import cv2

    return cv2


def decode(
    data: bytes, thermal: bool = False, gain: float = 1.0, offset: float = 0.0, max_pixels: int = MAX_PIXELS
) -> Any:
    """A visible frame as BGR uint8, or a thermal frame as float32 °C: integer counts become
    ``gain * counts + offset``, a float frame is °C already (counts with no calibration, gain 1 and offset
    0, stay relative counts). A frame in °C whose median is no scene temperature (-90 … 300 °C) is refused
    as ``implausible_temperature``: a wrong calibration must not reach the detectors silently (every pixel
    at -270 °C never alarms).

    >>> import cv2
    >>> ok, buf = cv2.imencode(".png", np.zeros((4, 6, 3), np.uint8))
    >>> decode(buf.tobytes()).shape
    (4, 6, 3)
    """
    cv2 = opencv()
    kind, _w, _h = checked_size(data, pixel_limit(thermal, max_pixels))
    try:
        if kind == "npy":
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED if thermal else cv2.IMREAD_COLOR)
    except (ValueError, OSError, EOFError, cv2.error) as exc:
        raise FrameError("not_an_image", f"{kind} payload that does not decode ({type(exc).__name__})") from None
    if arr is None:
        raise FrameError("not_an_image", f"{kind} payload that does not decode")
    if arr.ndim not in (2, 3) or arr.shape[0] * arr.shape[1] > max_pixels or (arr.ndim == 3 and arr.shape[2] > 4):
        raise FrameError("not_an_image", f"{kind} of shape {arr.shape} is not a frame")
    if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.floating):
        raise FrameError("not_an_image", f"{kind} of dtype {arr.dtype} is not a frame")
    # Visible frames are 8-bit pictures: any other array would reach the detectors as something else
    if not thermal and kind == "npy" and (arr.dtype != np.uint8 or not (arr.ndim == 2 or arr.shape[2] == 3)):
        raise FrameError("not_an_image", f"a visible .npy frame must be uint8 HxW or HxWx3, not {arr.dtype} "
                                             f"{arr.shape}")  # fmt: skip
    if thermal:
        # Counts (integers) are calibrated; a float frame is °C already (docs/contracts.md: frames).
        calibrated = np.issubdtype(arr.dtype, np.integer)
        scale, shift = (gain, offset) if calibrated else (1.0, 0.0)
        out: npt.NDArray[np.float32] = (arr.astype(np.float32) * scale + shift).astype(np.float32)
        out = out[:, :, 0] if out.ndim == 3 else out
        if not np.isfinite(out).all():  # an infinity in the evidence was a RED the PostgreSQL store refused
            raise FrameError("not_an_image", "a thermal frame holding NaN or infinite values; send finite numbers")
        in_celsius = not calibrated or (gain, offset) != (1.0, 0.0)  # uncalibrated counts are only relative
        median = float(np.median(out)) if in_celsius else 0.0
        if not THERMAL_SCENE_C[0] <= median <= THERMAL_SCENE_C[1]:
            how = f"counts x {gain:g} + {offset:g}" if calibrated else "a float frame, taken as °C"
            raise FrameError(
                "implausible_temperature",
                f"the scene's median is {median:.1f} °C ({how}): check the camera's gain and offset in config",
            )
        return out
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    return arr


def read_frames(
    paths: list[Path],
    thermal: bool = False,
    gain: float = 1.0,
    offset: float = 0.0,
    on_error: Callable[[Path, FrameError], None] | None = None,
) -> Iterator[Frame]:
    """Frames from still images, image folders (sorted by name) and video files, for ``gridwatch score``.

    Each file is its own camera (no temporal state across unrelated pictures); a video's frames share
    one camera and carry their frame number. A file that does not decode raises ``FrameError``, or, with
    ``on_error``, is handed to it and skipped.
    """
    cv2 = opencv()
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            yield from read_frames(files, thermal, gain, offset, on_error)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            cap = cv2.VideoCapture(str(path))
            fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
            k = 0
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                yield Frame("score", path.name, k / fps, img, source=f"{path}#{k}")
                k += 1
            cap.release()
        else:
            try:
                image = decode(path.read_bytes(), thermal, gain, offset)
            except FrameError as exc:
                if on_error is None:
                    raise FrameError(exc.reason, f"{path}: {exc}") from None
                on_error(path, exc)
                continue
            yield Frame("score", str(path), 0.0, image, source=str(path))
