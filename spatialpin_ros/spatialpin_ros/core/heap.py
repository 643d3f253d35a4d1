"""Keeping freed memory for reuse (glibc's malloc). ROS-free; the standard library only.

A frame's perception makes many short-lived numpy arrays of 0.1-4 MB. glibc serves blocks over
its mmap threshold (128 KB at start) with fresh mappings and gives the top of its heap back to
the system once more than its trim threshold is free, so each frame faults the same pages in
again: on a virtual machine a page fault costs microseconds, and the real RGB-D frames took
about 700 faults each (a few ms). :func:`keep_freed_memory` raises both thresholds once per
process: freed blocks stay in the heap for the next frame. The results are unchanged; the
process keeps up to ``trim_threshold`` bytes of freed heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import sys

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

_kept = False


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Serve blocks up to ``mmap_threshold`` bytes from the heap and keep up to
    ``trim_threshold`` bytes of freed heap (glibc on Linux; elsewhere nothing changes). True
    when the thresholds are set (now or by an earlier call)."""
    global _kept
    if _kept or not sys.platform.startswith("linux"):
        return _kept
    try:
        mallopt = ctypes.CDLL(None).mallopt          # the C library the process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _kept = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                 and mallopt(M_TRIM_THRESHOLD, trim_threshold))
    return _kept
