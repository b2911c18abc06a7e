"""What a thermal frame's numbers are: degrees C or raw counts, from the camera's declaration and the payload.

A thermal camera declares its ``units`` in config: ``celsius`` (radiometric floats, or integer counts with a
``gain`` and ``offset`` that make them °C), ``counts`` (raw integer counts, only relative: judged against
the scene) or ``auto`` (integer frames with no calibration are counts, anything else °C). An integer frame
with no calibration on a camera declared in °C is refused (``thermal_units``): read as degrees, raw counts
of a few thousand are a scene on fire in every pixel. The integer or float kind is read from the payload's
header (a .npy's dtype, a TIFF's SampleFormat); JPEG and PNG are integers.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

from engine.config.models import CameraConfig
from engine.ingest.frames import FrameError, decode


def integer_samples(data: bytes) -> bool:
    """Whether a thermal payload holds integers (counts) rather than floats, from its header.

    >>> import io, numpy as np
    >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 2), np.uint16)); integer_samples(buf.getvalue())
    True
    >>> buf = io.BytesIO(); np.save(buf, np.zeros((2, 2), np.float32)); integer_samples(buf.getvalue())
    False
    """
    if data[:6] == b"\x93NUMPY":
        head = data[10:256].decode("latin1", "replace")
        descr = head.split("'descr':")[1].split(",")[0].strip(" '\"") if "'descr':" in head else ""
        return descr[1:2] in ("u", "i", "b") if len(descr) > 1 else True
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        end = "<" if data[:2] == b"II" else ">"
        try:
            (ifd,) = struct.unpack(end + "I", data[4:8])
            (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
            for k in range(count):
                (tag,) = struct.unpack(end + "H", data[ifd + 2 + 12 * k : ifd + 4 + 12 * k])
                if tag == 339:  # SampleFormat: 1 unsigned, 2 signed, 3 IEEE float
                    raw = data[ifd + 10 + 12 * k : ifd + 12 + 12 * k]
                    return int(struct.unpack(end + "H", raw)[0]) != 3
        except struct.error:
            return True
        return True
    return True


def frame_units(data: bytes, cam: CameraConfig) -> tuple[str, float, float]:
    """(units, gain, offset) to decode a thermal payload of camera ``cam`` with: ``celsius`` or ``counts``
    and the calibration to apply (none for counts). Raises ``FrameError("thermal_units")`` for raw integer
    counts on a camera declared in °C with no calibration.

    >>> import io, numpy as np
    >>> buf = io.BytesIO(); np.save(buf, np.full((2, 2), 3000, np.uint16)); counts = buf.getvalue()
    >>> frame_units(counts, CameraConfig(site="S", id="ir", kind="thermal"))
    ('counts', 1.0, 0.0)
    >>> frame_units(counts, CameraConfig(site="S", id="ir", kind="thermal", gain=0.01, offset=-273.15))
    ('celsius', 0.01, -273.15)
    >>> frame_units(counts, CameraConfig(site="S", id="ir", kind="thermal", units="celsius"))
    Traceback (most recent call last):
    ...
    engine.ingest.frames.FrameError: thermal_units: raw integer counts from a camera declared in °C ...
    """
    integer = integer_samples(data)
    calibrated = (cam.gain, cam.offset) != (1.0, 0.0)
    if cam.units == "counts":
        return "counts", 1.0, 0.0
    if integer and not calibrated:
        if cam.units == "celsius":
            raise FrameError(
                "thermal_units",
                "raw integer counts from a camera declared in °C with no gain and offset: give the camera's "
                "calibration (gain, offset) or declare units: counts",
            )
        return "counts", 1.0, 0.0
    return "celsius", cam.gain, cam.offset


def decode_camera_frame(data: bytes, cam: CameraConfig) -> tuple[Any, str]:
    """A camera's payload decoded as its config says, with its units (``celsius``/``counts``; "" for a
    visible frame); ``FrameError`` (a dead-letter reason) where it cannot be used."""
    if cam.kind != "thermal":
        return decode(data), ""
    units, gain, offset = frame_units(data, cam)
    return decode(data, thermal=True, gain=gain, offset=offset), units


class RefusedFrames:
    """Per camera, the frames refused lately (reason, count, last time): a readiness warning, so that a
    camera whose every frame is refused (a wrong calibration, counts sent as °C) is seen, not silent.

    >>> r = RefusedFrames()
    >>> r.note("S1", "ir-1", "thermal_units", 100.0); r.note("S1", "ir-1", "thermal_units", 160.0)
    >>> r.recent(200.0)
    {'S1/ir-1': {'reason': 'thermal_units', 'frames': 2, 'last_s_ago': 40.0}}
    >>> r.recent(200.0 + 3600.0)
    {}
    """

    def __init__(self, window_s: float = 900.0) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._by_camera: dict[str, tuple[str, int, float]] = {}

    def note(self, site: str, camera: str, reason: str, now: float) -> None:
        key = f"{site}/{camera}"
        with self._lock:
            _, count, last = self._by_camera.get(key, (reason, 0, now))
            count = count if now - last <= self.window_s else 0
            self._by_camera[key] = (reason, count + 1, now)
            if len(self._by_camera) > 10_000:  # bounded: the oldest camera goes
                del self._by_camera[min(self._by_camera, key=lambda k: self._by_camera[k][2])]

    def recent(self, now: float) -> dict[str, dict[str, Any]]:
        """Cameras with a frame refused in the last ``window_s``."""
        with self._lock:
            items = sorted(self._by_camera.items())
        return {
            k: {"reason": reason, "frames": count, "last_s_ago": round(now - last, 1)}
            for k, (reason, count, last) in items
            if now - last <= self.window_s
        }
