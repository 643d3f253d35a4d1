"""Two objects never fill the same space: fitted candidates whose boxes overlap heavily are one
object seen as two pieces (a bowl's inside and its outer wall, a printed box's face and its
label), joined and fitted again.

Physical objects do not interpenetrate, so when most of the smaller candidate's box (the
intersection over the smaller volume, footprints and height ranges) lies inside another's, the
two are pieces of one object. The exceptions are kept apart:
- something inside a container (fruit in a bowl): the larger one is a container and the
  smaller one's lowest visible point is above the container's floor (``floor`` metres over
  its lowest point); a piece of the container's own wall reaches down to what it stands on;
- something standing on a tray or plate: it rises from above the other's lowest point to above
  its top (a piece of one object does not stand out of it);
- two uniformly and clearly differently coloured pieces (an apple on a white plate);
- an object stacked on another: their height ranges barely overlap, so the share stays small.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from spatialpin_ros.perception.pieces import Piece, _unlike
from spatialpin_ros.perception.shapes import ShapeFit


def shared_share(a: ShapeFit, b: ShapeFit) -> float:
    """The share (0..1) of the smaller fitted box (footprint x [low, top], metres) that lies
    inside the other."""
    dz = min(a.top, b.top) - max(a.low, b.low)
    if dz <= 0:
        return 0.0
    reach = (math.hypot(*a.size_uv) + math.hypot(*b.size_uv)) / 2
    if math.dist(a.center_uv, b.center_uv) >= reach:
        return 0.0
    origin = a.center_uv
    ra = ((a.rect() - origin) * 1000).astype(np.float32).reshape(-1, 1, 2)   # mm: cv2 is float32
    rb = ((b.rect() - origin) * 1000).astype(np.float32).reshape(-1, 1, 2)
    area = max(float(cv2.intersectConvexConvex(ra, rb)[0]), 0.0) / 1e6
    va = float(np.prod(a.size_uv)) * max(a.top - a.low, 1e-3)
    vb = float(np.prod(b.size_uv)) * max(b.top - b.low, 1e-3)
    return area * dz / max(min(va, vb), 1e-9)


def join_overlapping(pieces: list[Piece], fits: list[ShapeFit], share: float,
                     refit: Callable[[Piece], ShapeFit], contrast: float, spread: float
                     ) -> dict[int, int]:
    """Join, in place, pairs of ``pieces`` whose ``fits`` share at least ``share`` of the
    smaller box (largest share first; the joined piece is fitted again with ``refit``), except
    the module's exceptions. Returns {joined label: kept label}; the joined entries are removed
    from both lists."""
    joined: dict[int, int] = {}
    shares = {(i, j): shared_share(fits[i], fits[j])
              for i in range(len(fits)) for j in range(i + 1, len(fits))}
    while True:
        best, pair = share, None
        for (i, j), s in shares.items():
            if s >= best and not _apart(pieces[i], pieces[j], fits[i], fits[j],
                                        contrast, spread):
                best, pair = s, (i, j)
        if pair is None:
            return joined
        i, j = pair
        if len(pieces[j].Q) > len(pieces[i].Q):
            i, j = j, i
        A, B = pieces[i], pieces[j]
        A.absorb([B])
        fits[i] = refit(A)
        joined[B.label] = A.label
        for k, v in joined.items():          # earlier joins into B follow it into A
            if v == B.label:
                joined[k] = A.label
        del pieces[j], fits[j]
        shares = {(a - (a > j), b - (b > j)): v for (a, b), v in shares.items()
                  if j not in (a, b) and i not in (a, b)}
        i -= i > j
        for k in range(len(fits)):
            if k != i:
                shares[(min(i, k), max(i, k))] = shared_share(fits[min(i, k)], fits[max(i, k)])


def _apart(A: Piece, B: Piece, fa: ShapeFit, fb: ShapeFit, contrast: float,
           spread: float, floor: float = 0.01) -> bool:
    """The module's exceptions: inside a container, or two clearly different colours."""
    big, small = (fa, fb) if math.prod(fa.size_uv) * (fa.top - fa.low) >= math.prod(
        fb.size_uv) * (fb.top - fb.low) else (fb, fa)
    above_floor = small.low > big.low + floor
    return ((above_floor and (big.container or small.top > big.top + floor))
            or _unlike(A, B, contrast, spread))
