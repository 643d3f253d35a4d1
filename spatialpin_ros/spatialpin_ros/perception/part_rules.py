"""Rules of :func:`~spatialpin_ros.perception.pieces.merge_nested` that read a piece's layout
as the camera sees it: one object's visible surface is its near side, so its footprint from the
visible points is biased toward the camera. Across the line of sight its width is the whole
object's; along it the hidden back is missing. These rules measure widths across the line of
sight and complete a round object's footprint backward by its width (symmetry), so that a part
on the object's axis (a bottle's cap, on the hidden half's edge) is seen inside it.

The camera's foot is the plane frame's origin (``support.SupportPlane``), so the line of sight
to a piece, seen from above, runs from (0, 0) through the piece's footprint centre.
"""

from __future__ import annotations

import cv2
import numpy as np

from spatialpin_ros.core.geometry import (column_means, grow_convex, inside_convex, quantiles,
                                          share)


def sight_axes(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (2,) along and across the line of sight, seen from above, to the points
    ``uv`` (N, 2; plane frame, the camera's foot at the origin). A camera right above them has
    no line of sight on the plane: along is then u."""
    c = column_means(uv)
    n = float(np.hypot(*c))
    along = c / n if n > 1e-6 else np.array([1.0, 0.0])
    return along, np.array([-along[1], along[0]])


def across(uv: np.ndarray, axis: np.ndarray, q: float = 0.05) -> tuple[float, float]:
    """The ``q`` and ``1 - q`` quantiles of the points' coordinate along ``axis``."""
    lo, hi = quantiles(uv @ axis, (q, 1.0 - q))
    return lo, hi


def completed_hull(uv: np.ndarray, along: np.ndarray, depth: float) -> np.ndarray:
    """The convex hull (K, 2) of the footprint ``uv`` and of its copy pushed ``depth`` metres
    away from the camera along ``along``: the footprint with its hidden back."""
    pts = np.concatenate([uv, uv + depth * along]).astype(np.float32)
    pts = np.ascontiguousarray(pts[:: max(1, len(pts) // 800)])   # cv2 takes no strided view
    return cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)


def is_neck(na: int, nb: int, top_a: float, qa: np.ndarray, qb: np.ndarray, low_b: float,
            cen_b: np.ndarray, rad_b: float, flat: float = 0.005, ring: float = 0.02,
            narrow: float = 0.5, centred: float = 0.6, margin: float = 0.005) -> bool:
    """Piece B is the neck or cap of piece A (a bottle's shoulder, a mustard bottle's cap):
    B has fewer points (``nb`` < ``na``) and starts at A's top (its lowest point ``low_b`` at
    most 1 cm under A's top ``top_a``); across the line of sight it is narrow (under ``narrow``
    of A's width) and centred on A (its middle within ``centred`` of A's half-width of A's
    middle); it lies inside A's footprint completed by its hidden back (grown by ``margin``);
    and A has no flat top around it: A's points within ``ring`` metres around B (``cen_b``,
    ``rad_b``: B's footprint centre and radius) do not lie on a plane at B's base (within
    ``flat``; where B's lowest visible point is above A's top, its base is hidden behind A's
    edge and lies at A's top at most). Something stacked on a box stands on its flat top and
    stays apart. ``qa``, ``qb``: the pieces' points (plane frame, metres)."""
    if na <= nb or top_a > low_b + 0.01 or len(qa) < 3:
        return False
    along, cross = sight_axes(qa[:, :2])
    a_lo, a_hi = across(qa[:, :2], cross)
    b_lo, b_hi = across(qb[:, :2], cross)
    wa = a_hi - a_lo
    if wa <= 0 or b_hi - b_lo > narrow * wa or abs(b_lo + b_hi - a_lo - a_hi) > centred * wa:
        return False
    hull = grow_convex(completed_hull(qa[:, :2], along, 0.5 * wa), margin)
    if len(hull) < 3 or share(inside_convex(hull, qb[:, :2])) < 0.8:
        return False
    d = np.hypot(*(qa[:, :2] - cen_b).T)
    around = qa[(d > rad_b) & (d < rad_b + ring), 2]
    base = min(low_b, top_a)        # B's base: where seen, else at A's top (hidden by its edge)
    return len(around) >= 5 and share(np.abs(around - base) < flat) < 0.5
