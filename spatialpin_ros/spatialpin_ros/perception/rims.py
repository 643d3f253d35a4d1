"""One rim cut into pieces: the walls of a tray, the rim of a plate, joined again by
:func:`~spatialpin_ros.perception.pieces.merge_nested`; and the rim tests it shares (a thin
top band, two arcs of one circle).

Depth noise and the folds where a wall meets a floor cut a tray's walls, or a plate's rim, into
pieces. Each piece alone is a plausible object (a low bar, a short arc); together their top
bands trace one closed outline around an empty middle, seen from above: the rim of one dish.
Solid objects side by side never do that: their tops are faces that fill the middle (two boxes,
a row of cans), or two rims that meet in it (two cups touching). So the pieces of a group that
touch at one height, rim-like (low, or thin-topped: walls), of one colour (mean colours closer
than the colour split's contrast: one material, printed or not), are one object when the union
of their top bands

* lies all around its centre (in ``sectors`` of 12 directions),
* keeps away from the middle (under ``hollow`` of the band within half the band's radius),
* and is compact: its minimum-area rectangle no narrower than ``compact`` of its length, which
  lies between ``min_size`` and ``max_size``.

A lower piece inside the rim (its floor, when the floor rises above the foreground's height)
joins it too, unless of another colour (fruit on a plate). A textured block lying against a
plate's rim at the rim's height is of another colour, and stays apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
from scipy.cluster.hierarchy import DisjointSet

from spatialpin_ros.core.geometry import (column_bounds, grow_convex, inside_convex, quantile,
                                          rect_from_points, robust_circle, share)


@dataclass
class RimParams:
    """The rim test (metres)."""

    #: Pieces no higher than this are rim-like (a plate's rim); higher ones must be thin-topped.
    low: float = 0.035
    #: Touching pieces whose tops differ by at most this are at one height.
    level: float = 0.01
    sectors: int = 9
    hollow: float = 0.1
    compact: float = 0.6
    min_size: float = 0.06
    max_size: float = 0.45
    #: A floor inside the rim: at least ``inside`` of its points within the band's hull grown
    #: by ``grow``, its top at least ``below`` under the rim's.
    inside: float = 0.8
    grow: float = 0.01
    below: float = 0.005


def rim_band(q: np.ndarray, top: float) -> np.ndarray:
    """The points' footprint (K, 2) in the rim's top band: within ``min(0.015, max(0.006,
    0.35 top))`` metres of the rim's top ``top`` (a shallow rim's crest is narrow)."""
    band = min(0.015, max(0.006, 0.35 * top))
    return q[q[:, 2] > top - band, :2]


def is_ring(uv: np.ndarray, p: RimParams) -> bool:
    """The band footprint ``uv`` (K, 2) traces one closed outline around an empty middle."""
    if len(uv) < 20:
        return False
    size = rect_from_points(uv.astype(np.float32))[1]
    if not (p.min_size <= max(size) <= p.max_size) or min(size) < p.compact * max(size):
        return False
    hull = cv2.convexHull(uv.astype(np.float32))
    m = cv2.moments(hull)
    if m["m00"] <= 0:
        return False
    d = uv - np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]])
    r = np.hypot(d[:, 0], d[:, 1])
    if share(r < 0.5 * quantile(r, 0.9)) >= p.hollow:
        return False
    return len(np.unique((np.degrees(np.arctan2(d[:, 1], d[:, 0])) // 30).astype(int))) \
        >= p.sectors


def rim_groups(tops: Sequence[float], sub: Sequence[np.ndarray], near: dict[int, set[int]],
               rimlike: Callable[[int], bool], unlike: Callable[[int, int], bool],
               p: RimParams = RimParams()) -> list[set[int]]:
    """Groups (sets of piece indices, two or more) that are one rim, each with the floors
    inside it. ``tops``: each piece's top; ``sub``: its points (plane frame); ``near``: the
    pieces each touches; ``rimlike(i)``: piece i is thin-topped (a wall's rim seen from above);
    ``unlike(i, j)``: two different colours (``pieces.colours_differ``)."""
    n = len(tops)
    memo: dict[int, bool] = {}

    def member(i: int) -> bool:       # rim-like; the thin-top test only where it is needed
        if i not in memo:
            memo[i] = tops[i] <= p.low or rimlike(i)
        return memo[i]
    sets = DisjointSet(range(n))
    for i in range(n):
        for j in near[i]:
            if (j > i and abs(tops[i] - tops[j]) <= p.level and member(i) and member(j)
                    and not unlike(i, j)):
                sets.merge(i, j)
    out = []
    for ks in sorted((sorted(c) for c in sets.subsets() if len(c) >= 2), key=min):
        top = float(np.median([tops[k] for k in ks]))
        uv = np.concatenate([rim_band(sub[k], top) for k in ks])
        if not is_ring(uv, p):
            continue
        group = set(ks)
        hull = grow_convex(cv2.convexHull(uv.astype(np.float32)).reshape(-1, 2).astype(float),
                           p.grow)
        for k in set().union(*(near[m] for m in ks)) - group:
            touching = [m for m in ks if k in near[m]]
            if (tops[k] <= top - p.below
                    and share(inside_convex(hull, sub[k][:, :2])) >= p.inside
                    and not any(unlike(k, m) for m in touching)):
                group.add(k)
        out.append(group)
    return out


def piece_thin(pc, band: float = 0.01) -> bool:
    """:func:`thin_top` of a piece's points (a ``pieces.Piece``: its ``Q`` and ``top``),
    computed once per piece and band (cached in its ``thin``)."""
    if band not in pc.thin:
        pc.thin[band] = thin_top(pc.Q, pc.top, band)
    return pc.thin[band]


def thin_top(q: np.ndarray, top: float, band: float = 0.01, max_width: float = 0.04,
             cell: float = 0.004) -> bool:
    """The piece's top band (points ``q`` within ``band`` metres of its top ``top``) is a wall's
    rim seen from above: no disc ``max_width`` metres across fits in it (the band rasterised on
    a ``cell``-metre grid, its widest inscribed disc by a distance transform). An arc, a straight
    wall and a tray's corner are thin; a solid object's top is a face as wide as the object, and
    a tabletop block's is rarely narrower than 4 cm."""
    b = q[q[:, 2] > top - band, :2]
    if len(b) < 5:
        return True
    ij = np.floor((b - column_bounds(b)[0]) / cell).astype(np.int32) + 1
    grid = np.zeros(tuple(column_bounds(ij)[1] + 2), np.uint8)
    grid[ij[:, 0], ij[:, 1]] = 1
    grid = cv2.copyMakeBorder(cv2.morphologyEx(grid, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)),
                              1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)     # np.pad's zeros
    inscribed = float(cv2.distanceTransform(grid, cv2.DIST_L2, 3).max())   # cells, a radius
    return 2 * inscribed * cell < max_width


def rim_arcs(A, B, qa: np.ndarray, qb: np.ndarray,
              max_residual: float = 0.005, band: float = 0.015) -> bool:
    """Two touching pieces are arcs of one rim: tops at the same height and their top bands
    (``band`` metres deep, less for a shallow rim) on one circle (radius 2-20 cm): a bowl's,
    a cup's or a plate's rim cut into arcs by folds. Two cans side by side do not fit one
    circle."""
    if abs(A.top - B.top) > 0.01:
        return False
    # a shallow rim (a plate's) has a narrow crest: the band follows the height
    band = min(band, max(0.006, 0.35 * min(A.top, B.top)))
    ba, bb = qa[qa[:, 2] > A.top - band, :2], qb[qb[:, 2] > B.top - band, :2]
    if (len(ba) < 8 or len(bb) < 8 or not piece_thin(A, min(band, 0.01))
            or not piece_thin(B, min(band, 0.01))):
        return False
    fit = robust_circle(np.concatenate([ba, bb]), 0.004)
    if fit is None:
        return False
    c, r, res = fit
    if not (0.02 < r < 0.2) or res > max_residual:
        return False
    tol = 3 * max_residual
    return bool(share(np.abs(np.hypot(*(ba - c).T) - r) < tol) > 0.8
                and share(np.abs(np.hypot(*(bb - c).T) - r) < tol) > 0.8
                # a rim is hollow: its top bands keep away from the circle's middle
                and share(np.hypot(*(np.concatenate([ba, bb]) - c).T) < 0.5 * r) < 0.1)
