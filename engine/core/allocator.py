"""glibc's allocator set for batch work, so a busy engine does not fault its batch buffers in afresh.

The detectors allocate temporaries of a few hundred kilobytes to a few megabytes per batch. glibc serves
blocks above its mmap threshold with fresh ``mmap`` calls and returns freed heap above its trim
threshold to the kernel, so each batch's buffers are page-faulted in anew: on 65,000 devices the first
hour of readings ran at half the speed of the second (detect_sensors benchmark) until glibc's own
threshold had crept up. Fixing both thresholds keeps the buffers in the heap from the first batch, at
the cost of holding up to ``trim_threshold`` of freed memory. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = 16 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Set glibc's mmap and trim thresholds; True where the allocator took both."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
