"""Stage 1 of geometric perception: the support plane (the table) and its extent.

The support is the large, roughly horizontal surface with things standing on it, below the
camera. It is never a wall:

* with a camera pose, gravity is known: only planes whose normal is within ``max_tilt_deg`` of
  world up are candidates;
* without one (a hand-held camera), up is unknown, but a camera above a table sees the table's
  normal pointing toward the top of the image or toward the camera (a downward-looking or
  top-down camera), while a wall seen by such a camera faces the bottom of the image or
  straight at it. Candidates are the planes whose camera-facing normal does not point down the
  image by more than ``min_image_up`` (cosine); they are ranked by support (inliers) weighted by
  how squarely they face the camera (a bin's floor seen from above beats its walls).

Among parallel candidates the highest (nearest the camera along the normal) wins when it holds
at least ``prefer_higher_ratio`` of the best's inliers: a table above the floor.

The plane's extent is the convex hull of its inliers in the plane frame, grown by
``extent_margin``: what stands outside it (walls, shelves, a monitor beyond the table's edge) is
not an object.

All geometry here is in the camera's optical frame (metres) unless a name says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from spatialpin_ros.core.errors import PerceptionError
from spatialpin_ros.core.geometry import (grow_convex, inside_convex, plane_from_points,
                                          plane_hypotheses, quantile, unit)


@dataclass
class SupportParams:
    """Support-plane search (metres, degrees)."""

    #: RANSAC hypotheses per plane, inlier distance, largest number of planes tried.
    ransac_iterations: int = 64
    plane_inlier: float = 0.008
    max_planes: int = 3
    #: A candidate plane needs at least this share of the sampled points.
    min_plane_share: float = 0.06
    #: With a camera pose: largest tilt of the support's normal from world up.
    max_tilt_deg: float = 25.0
    #: Without a camera pose: smallest cosine between the camera-facing normal and image up
    #: (-y of the optical frame); -0.35 admits a top-down camera tilted 20 degrees past vertical.
    min_image_up: float = -0.35
    #: A parallel candidate nearer the camera wins with this share of the best's inliers.
    prefer_higher_ratio: float = 0.3
    #: A parallel plane at least this much nearer the camera is a table over the floor.
    min_table_height: float = 0.3
    #: Points this far below a plane, inside its extent, are seen through it.
    see_through_depth: float = 0.03
    #: The extent (convex hull of the inliers) grows by this much.
    extent_margin: float = 0.03


@dataclass
class SupportPlane:
    """The support in the camera's optical frame.

    ``normal`` (3,) unit, pointing up (toward the camera's side); ``offset``: the plane is
    ``normal . x + offset = 0`` and the camera centre (the origin) lies ``offset`` metres above
    it. ``R`` (3, 3): plane frame axes (columns e1, e2, normal) in the optical frame; ``origin``
    (3,): the plane frame's origin (the camera's foot on the plane). ``hull`` (K, 2): the
    plane's extent in plane-frame (u, v) metres, grown by the margin. ``noise_k``: depth noise
    sigma(z) = noise_k z^2 from the plane's residuals (metres). ``inlier_share``: share of the
    sampled points on the plane. ``gravity``: True when up came from the camera pose.
    """

    normal: np.ndarray
    offset: float
    R: np.ndarray
    origin: np.ndarray
    hull: np.ndarray
    noise_k: float
    inlier_share: float
    gravity: bool

    def to_plane(self, P: np.ndarray) -> np.ndarray:
        """Optical-frame points (N, 3) -> plane frame (u, v, height)."""
        return (P - self.origin) @ self.R

    def inside(self, uv: np.ndarray) -> np.ndarray:
        """(N,) bool: plane-frame points (N, 2) inside the extent."""
        return inside_convex(self.hull, uv)


def _ransac(P: np.ndarray, S: np.ndarray, rng: np.random.Generator, iterations: int,
            inlier: float, accept) -> Optional[np.ndarray]:
    """Best plane (a, b, c, d), normal toward the camera (d > 0), among hypotheses whose normal
    ``accept`` admits; scored on the subsample ``S``, refined on ``P``."""
    n = len(P)
    if n < 3:
        return None
    nrm, a, ok = plane_hypotheses(P, rng, iterations)
    d = -np.einsum("ij,ij->i", nrm, a)
    flip = d < 0                                   # camera side: n . 0 + d > 0
    nrm[flip], d[flip] = -nrm[flip], -d[flip]
    ok &= accept(nrm)
    if not ok.any():
        return None
    nrm, d = nrm[ok], d[ok]
    dist = np.abs(S @ nrm.T + d)
    best = int(np.argmax((dist < inlier).sum(axis=0, dtype=np.int32)))   # inliers per plane
    plane = np.append(nrm[best], d[best])
    for _ in range(2):
        inl = np.abs(P @ plane[:3] + plane[3]) < inlier
        if inl.sum() < 3:
            break
        q = plane_from_points(P[inl], plane[:3])
        if q[3] < 0:
            q = -q
        plane = q
    return plane


def find_support(P: np.ndarray, up: Optional[np.ndarray], params: SupportParams,
                 rng: np.random.Generator, score_points: int = 1500) -> SupportPlane:
    """The support plane from sampled optical-frame points ``P`` (N, 3, finite). ``up``: world
    up in the optical frame when the camera pose is known, else None. Raises PerceptionError
    (with the reason) when no plane qualifies."""
    p = params
    n = len(P)
    if n < 50:
        raise PerceptionError(f"too few valid depth points ({n}) to find a support plane")
    if up is not None:
        up = unit(np.asarray(up, float))
        cos_t = math.cos(math.radians(p.max_tilt_deg))

        def accept(nrm):
            return nrm @ up > cos_t
    else:
        def accept(nrm):
            return -nrm[:, 1] >= p.min_image_up
    cands = []
    rest = np.ones(n, dtype=bool)
    for _ in range(p.max_planes):
        Q = P[rest]
        if len(Q) < max(50, p.min_plane_share * n):
            break
        S = Q if len(Q) <= score_points else Q[rng.choice(len(Q), score_points, replace=False)]
        plane = _ransac(Q, S, rng, p.ransac_iterations, p.plane_inlier, accept)
        if plane is None:
            break
        inl = np.abs(P @ plane[:3] + plane[3]) < p.plane_inlier
        if inl.sum() < p.min_plane_share * n:
            break
        if accept(plane[None, :3])[0]:
            cands.append((plane, inl))
        rest &= ~inl
    if not cands:
        where = ("within %.0f degrees of gravity" % p.max_tilt_deg if up is not None
                 else "facing up the image")
        raise PerceptionError(f"no support plane: no large plane {where} is in view (a wall, "
                              "the sky or the floor from too close?)")

    def score(c):
        plane, inl = c
        s = float(inl.sum())
        if up is not None:
            return s
        # without gravity: the camera looks down at its support, which faces it
        ray = unit(P[inl].mean(axis=0))
        return s * (0.25 + abs(float(plane[:3] @ ray)))
    # a solid support hides what is behind it: many points well below a plane, inside its
    # extent, mean the plane is not a surface (a plane through object tops or the far floor)
    cands = [c for c in cands if _see_through(P, c[0], c[1], p) < 0.5 * c[1].sum()]
    if not cands:
        raise PerceptionError("no support plane: every large plane in view has points seen "
                              "through it")
    cands.sort(key=score, reverse=True)
    best = cands[0]
    for c in cands[1:]:                            # a table standing on the visible floor
        if (c[0][:3] @ best[0][:3] > math.cos(math.radians(10))
                and c[0][3] < best[0][3] - p.min_table_height
                and c[1].sum() >= p.prefer_higher_ratio * best[1].sum()):
            best = c
    plane, inl = best
    nrm, off = plane[:3], float(plane[3])
    # plane frame: e1 = the viewing direction laid flat (or image up for a top-down camera)
    fwd = np.array([0.0, 0.0, 1.0]) - nrm[2] * nrm
    if np.linalg.norm(fwd) < 0.2:
        fwd = np.array([0.0, -1.0, 0.0]) - nrm[1] * nrm
    e1 = unit(fwd)
    e2 = np.cross(nrm, e1)
    R = np.stack([e1, e2, nrm], axis=1)
    origin = -off * nrm
    Pi = P[inl]
    z = Pi[:, 2]
    resid = np.abs(Pi @ nrm + off)
    noise_k = 1.4826 * quantile(resid / np.maximum(z, 0.1) ** 2, 0.5)
    uv = ((Pi - origin) @ R)[:, :2].astype(np.float32)
    hull = cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)
    hull = grow_convex(hull, p.extent_margin)
    return SupportPlane(normal=nrm, offset=off, R=R, origin=origin, hull=hull,
                        noise_k=float(noise_k), inlier_share=float(inl.mean()),
                        gravity=up is not None)


def _see_through(P: np.ndarray, plane: np.ndarray, inl: np.ndarray,
                 p: SupportParams) -> int:
    """How many points lie ``see_through_depth`` below ``plane`` inside its inliers' extent."""
    h = P @ plane[:3] + plane[3]
    below = h < -p.see_through_depth
    if not below.any():
        return 0
    nrm = plane[:3]
    e1 = unit(np.cross(nrm, [1.0, 0.0, 0.0]) if abs(nrm[0]) < 0.9 else np.cross(nrm, [0, 1.0, 0]))
    e2 = np.cross(nrm, e1)
    uv = np.stack([P @ e1, P @ e2], axis=1).astype(np.float32)
    hull = cv2.convexHull(uv[inl], clockwise=False).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3:
        return 0
    return int(np.count_nonzero(inside_convex(hull, uv[below].astype(np.float64))))




def support_extent(sup: SupportPlane, points: np.ndarray, height: np.ndarray,
                   params: SupportParams, focal: float) -> np.ndarray:
    """The support's own extent on the working grid, (h, w) bool: the largest connected region
    of plane pixels (stray inliers elsewhere, e.g. the floor or a far surface at the same
    height, do not count), with its holes (what stands on it) filled and grown by
    ``extent_margin``. Also replaces ``sup.hull`` by that region's hull in the plane frame
    (metres), grown by the margin."""
    near = np.abs(np.nan_to_num(height, nan=1.0)) < 1.5 * params.plane_inlier
    near = cv2.morphologyEx(near.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return extent_from_near(sup, points, near, params, focal)


def extent_from_near(sup: SupportPlane, points: np.ndarray, near: np.ndarray,
                     params: SupportParams, focal: float) -> np.ndarray:
    """:func:`support_extent` from its opened plane-pixel mask ``near`` ((h, w) uint8; the
    torch lifting computes it on the device): the components, holes, margin and hull."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=4)
    if n <= 1:
        return np.zeros(near.shape, dtype=bool)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    comp = lab == big
    # holes: what the region encloses (objects on it) is part of it
    h, w = comp.shape
    inv = (~comp).view(np.uint8)
    m, hl, hs, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    x, y, ww, hh = hs[:, 0], hs[:, 1], hs[:, 2], hs[:, 3]
    hole = (x > 0) & (y > 0) & (x + ww < w) & (y + hh < h)
    hole[0] = False
    filled = comp | hole[hl]
    idx = np.flatnonzero(comp)                   # the component's points, in row-major order
    flat = points.reshape(-1, points.shape[-1])
    zf = _nanmedian(flat[idx, 2]) if len(idx) else 1.0
    r = float(np.clip(params.extent_margin * focal / max(zf, 0.1), 1, 40))
    dist = cv2.distanceTransform((~filled).view(np.uint8), cv2.DIST_L2, 3)
    region = dist <= r
    P = flat[idx[:: max(1, len(idx) // 4000)]].astype(np.float64)
    uv = sup.to_plane(P)[:, :2].astype(np.float32)
    hull = cv2.convexHull(uv).reshape(-1, 2).astype(np.float64)
    sup.hull = grow_convex(hull, params.extent_margin)
    return region


def _nanmedian(z: np.ndarray) -> float:
    """``np.nanmedian(z)`` of a 1-D array; ``np.median`` (the same number, no NaN removal
    pass) when it holds no NaN."""
    return float(np.nanmedian(z) if np.isnan(z).any() else np.median(z))
