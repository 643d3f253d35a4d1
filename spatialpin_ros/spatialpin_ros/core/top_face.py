"""An object's top face as its own points show it (ROS-free): is the top flat and solid, and
where is it? The stacking rules (``core.stacking``) read it, so that nothing is stacked on a
hollow top (a cup, a mug or a bowl perceived as a solid cylinder), on a narrow top (a bottle's
cap) or on an uneven one (a toy), whatever shape the fitted box says.

From the object's world points and their heights above the support:

* the **top height** is a high quantile (``TOP_QUANTILE``) of the heights (robust to a few
  outliers of depth noise);
* the points are binned into square cells (``CELL`` on a side, in the horizontal plane); a cell
  is a **top cell** when its highest point lies within ``BAND`` of the top height. One cell of
  gaps (sparse sampling, depth dropouts) is closed;
* the top face's **polygon** is the convex hull of the top cells (world x, y; grown by half a
  cell to the cells' edges); its **solid share** is the share of the cells inside that polygon
  that are top cells. A flat solid top (a box, a can) fills its outline (0.9 or more); a rim
  (a cup, a bowl) is a ring around cells that are lower or that the camera cannot see into, and
  a small share.

``TopFace.supports`` says whether the top may carry anything (flat and solid); the polygon is
then the area that carries it (``core.stacking`` uses it in place of the box's footprint).
An object with too few points has no ``TopFace`` (``None``): the rules fall back to its box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

#: Side (m) of the square cells the points are binned into.
CELL = 0.006
#: A cell whose highest point is within this (m) of the top height is part of the top face.
BAND = 0.01
#: Quantile of the heights taken as the top height.
TOP_QUANTILE = 0.98
#: Fewest points (and top cells) for a descriptor.
MIN_POINTS = 30
MIN_TOP_CELLS = 4
#: Least solid share of a top that may carry something.
MIN_SOLID = 0.7


def _rot(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class TopFace:
    """The perceived top face: ``height`` (m above the support), ``polygon`` (K, 2) its
    convex outline (m) in the object's own horizontal frame -- relative to its box's centre,
    along its box's yaw, so that it moves with the object (``outline_at``) --, ``solid`` the
    share (0..1) of the cells inside the outline seen at the top height, ``cells`` how many
    top cells, ``points`` how many points described it. ``describe_top`` gives the outline in
    world x, y; ``about`` turns it into the object's frame."""

    height: float
    polygon: np.ndarray = field(repr=False)
    solid: float
    cells: int
    points: int

    @property
    def area(self) -> float:
        """Area (m^2) of the outline."""
        p = self.polygon
        x, y = p[:, 0], p[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    @property
    def width(self) -> float:
        """The outline's narrowest width (m): its smallest extent over all directions."""
        p = self.polygon
        best = math.inf
        for i in range(len(p)):
            e = p[(i + 1) % len(p)] - p[i]
            n = float(np.hypot(*e))
            if n < 1e-9:
                continue
            d = (p - p[i]) @ np.array([-e[1], e[0]]) / n
            best = min(best, float(d.max() - d.min()))
        return 0.0 if not math.isfinite(best) else best

    def about(self, center_xy, yaw: float) -> "TopFace":
        """This top face with a world outline expressed about an object's centre (x, y) and
        yaw."""
        return replace(self, polygon=(np.asarray(self.polygon, float)
                                      - np.asarray(center_xy, float)[:2]) @ _rot(yaw))

    def outline_at(self, center_xy, yaw: float) -> np.ndarray:
        """The outline (K, 2) in world x, y for the object at centre (x, y) and yaw."""
        return np.asarray(self.polygon, float) @ _rot(yaw).T + np.asarray(center_xy,
                                                                           float)[:2]

    def supports(self, min_solid: float = MIN_SOLID) -> bool:
        """Whether the top is flat and solid enough to carry something."""
        return self.solid >= min_solid


def describe_top(points: np.ndarray, heights: np.ndarray, cell: float = CELL,
                 band: float = BAND) -> TopFace | None:
    """The top face of an object from its world points (N, 3) and their heights (N,) above the
    support (metres); None with too few points (see the module doc)."""
    P = np.asarray(points, dtype=float).reshape(-1, 3)
    h = np.asarray(heights, dtype=float).reshape(-1)
    ok = np.isfinite(h) & np.all(np.isfinite(P), axis=1)
    P, h = P[ok], h[ok]
    if len(P) < MIN_POINTS:
        return None
    top = float(np.quantile(h, TOP_QUANTILE))
    ij = np.floor(P[:, :2] / cell).astype(np.int64)
    lo = ij.min(axis=0)
    ij -= lo - 1                                     # a free cell around the grid
    shape = tuple(int(v) for v in ij.max(axis=0) + 2)
    if shape[0] * shape[1] > 400_000:                # not one object: no descriptor
        return None
    hmax = np.full(shape, -np.inf)
    np.maximum.at(hmax, (ij[:, 0], ij[:, 1]), h)
    seen = np.isfinite(hmax)
    is_top = (hmax >= top - band).astype(np.uint8)
    # Close one-cell gaps of the top (sampling, dropouts), never over a cell seen lower.
    closed = cv2.morphologyEx(is_top, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8),
                              borderType=cv2.BORDER_CONSTANT, borderValue=0)
    is_top = (closed.astype(bool) & ~(seen & (hmax < top - band))) | is_top.astype(bool)
    rc = np.argwhere(is_top)
    if len(rc) < MIN_TOP_CELLS:
        return None
    hull = cv2.convexHull(rc[:, ::-1].astype(np.int32))          # (x=col, y=row) order
    inside = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    inside = inside.astype(bool) | is_top
    solid = float(is_top.sum()) / float(inside.sum())
    corners = hull.reshape(-1, 2)[:, ::-1].astype(float)          # back to (i, j)
    c = corners.mean(axis=0)
    d = corners - c
    n = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    grown = corners + 0.5 * d / n                                 # about to the cells' edges
    poly = (grown + lo - 1 + 0.5) * cell
    return TopFace(height=round(top, 4), polygon=poly, solid=round(solid, 3),
                   cells=int(is_top.sum()), points=int(len(P)))
