"""Does a depth image look like metres? A check of its scale before perception.

Depth in the wrong unit is not an unreadable image, yet perception cannot use it: 16-bit depth
100x too small (a driver's depth scale set wrong, centimetres scaled down) puts the whole table a
centimetre from the camera, and the scene comes out "ok" with no objects; millimetres published as
32FC1 put it kilometres away. The median of the valid depth tells them apart from any real
RGB-D view: no depth camera measures a scene whose median is closer than about 0.1 m (the D435's
minimum range), and none sees a tabletop 50 m away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Default nearest plausible median depth (m) of a real RGB-D view.
MIN_MEDIAN_DEPTH_M = 0.1
#: Farthest plausible median depth (m) of a real RGB-D view.
MAX_MEDIAN_DEPTH_M = 50.0
#: Every n-th pixel in each direction is enough for a median.
STRIDE = 4


@dataclass(frozen=True)
class DepthScaleCheck:
    """Outcome of :func:`check_depth_scale`: ``ok``, the median of the valid depth in metres
    (NaN when no pixel is valid: that is for perception to report) and, when not ok, the reason."""

    ok: bool
    median_m: float
    reason: str = ""


def check_depth_scale(depth: np.ndarray, min_median_m: float = MIN_MEDIAN_DEPTH_M,
                      max_median_m: float = MAX_MEDIAN_DEPTH_M) -> DepthScaleCheck:
    """Check that the median valid (finite, > 0) depth of ``depth`` (metres) lies within
    [``min_median_m``, ``max_median_m``]; ``min_median_m`` 0 checks the upper bound only. A
    depth image with no valid pixel passes (no depth is reported by perception itself)."""
    d = np.asarray(depth)[::STRIDE, ::STRIDE]
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        return DepthScaleCheck(True, math.nan)
    med = float(np.median(d))
    if min_median_m > 0 and med < min_median_m:
        return DepthScaleCheck(False, med, (
            f"depth scale looks wrong: the median valid depth is {med:.4f} m, nearer than "
            f"{min_median_m:g} m (no depth camera measures a scene that close); is 16UC1 depth "
            f"scaled to millimetres, 32FC1 to metres? (depth_min_median_m sets the bound)"))
    if med > max_median_m:
        return DepthScaleCheck(False, med, (
            f"depth scale looks wrong: the median valid depth is {med:.0f} m, farther than "
            f"{max_median_m:g} m: millimetres published as 32FC1? (32FC1 depth is metres, 16UC1 "
            "millimetres)"))
    return DepthScaleCheck(True, med)
